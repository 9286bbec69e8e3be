package artifact

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Unpack extracts the gzip'd tar read from r into dir, which must be empty
// or not exist yet (it is then created, with its parents). Only regular
// files (mode 0755 if any executable bit is set, else 0644) and directories
// (0755) are written; every other entry type, and every name that is not a
// clean relative path, is rejected with an error matching ErrInvalid.
//
// On any error, whatever was extracted is removed again (and dir itself if
// Unpack created it). Errors that do not match ErrInvalid are I/O failures
// of r or of the file system.
func Unpack(r io.Reader, dir string, lim Limits) (info *Info, err error) {
	created, err := prepareDir(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cleanup(dir, created)
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	defer root.Close()
	x := &extractor{root: root, dirs: map[string]bool{}}
	return scan(r, lim, x.visit)
}

// ReadManifest reads the gzip'd tar from r to its end without extracting it
// and returns the contents of hearth.yaml at its root. It validates the
// archive exactly as Unpack does, so an archive ReadManifest accepts will
// unpack, short of file-system errors.
func ReadManifest(r io.Reader, lim Limits) ([]byte, error) {
	info, err := scan(r, lim, nil)
	if err != nil {
		return nil, err
	}
	return info.Manifest, nil
}

// prepareDir makes sure dir exists and is empty, reporting whether it
// created it.
func prepareDir(dir string) (created bool, err error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("artifact: %w", err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("artifact: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	switch {
	case len(names) > 0:
		return false, fmt.Errorf("artifact: unpack into %s: directory is not empty", dir)
	case err != nil && !errors.Is(err, io.EOF):
		return false, fmt.Errorf("artifact: unpack into %s: %w", dir, err)
	}
	return false, nil
}

// cleanup removes what a failed Unpack left in dir.
func cleanup(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(dir + string(os.PathSeparator) + e.Name())
	}
}

// extractor writes validated entries beneath root. All file-system access
// goes through root, so even a bug in name validation cannot write outside
// the target directory or follow a symlink out of it.
type extractor struct {
	root *os.Root
	dirs map[string]bool // directories created so far
}

func (x *extractor) visit(e entry, body io.Reader) error {
	if err := x.mkdirAll(path.Dir(e.name)); err != nil {
		return err
	}
	if e.dir {
		return x.mkdirAll(e.name)
	}
	// O_EXCL: never write through something that already exists.
	f, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(e.mode))
	if err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	_, err = io.Copy(f, body)
	if err == nil {
		err = f.Chmod(fs.FileMode(e.mode)) // exact mode, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("artifact: writing %s: %w", e.name, err)
	}
	return nil
}

// mkdirAll creates name and its missing parents with mode 0755.
func (x *extractor) mkdirAll(name string) error {
	if name == "." || name == "" || x.dirs[name] {
		return nil
	}
	if err := x.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := x.root.Mkdir(name, 0o755); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	if err := x.root.Chmod(name, 0o755); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	x.dirs[name] = true
	return nil
}
