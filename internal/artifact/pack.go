package artifact

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Pack writes dir as a gzip'd tar to w. The archive is deterministic: the
// same directory contents always pack to the same bytes (entries in sorted
// order, modification times at the Unix epoch, owner 0:0, modes normalised
// to 0755 for directories and executables and 0644 for other files).
//
// Only regular files and directories are packed; directories named .git are
// skipped. A symlink is packed as what it points to, if that lies inside dir;
// a symlink that points outside dir, dangles or loops is an error, as is any
// other file type or a name Unpack would reject. On error, w holds a partial
// archive.
func Pack(dir string, w io.Writer) error {
	realRoot, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("artifact: pack: %w", err)
	}
	st, err := os.Stat(realRoot)
	if err != nil {
		return fmt.Errorf("artifact: pack: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("artifact: pack: %s is not a directory", dir)
	}
	// Zero header (no name, no mtime); BestSpeed because a deploy is
	// waiting and compiled modules compress little better at higher levels.
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	p := &packer{tw: tw, root: realRoot}
	if err := p.dir(realRoot, "", []string{realRoot}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("artifact: pack: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("artifact: pack: %w", err)
	}
	return nil
}

type packer struct {
	tw   *tar.Writer
	root string // dir with symlinks resolved
}

// epoch is the modification time of every entry.
var epoch = time.Unix(0, 0)

// dir packs the directory at src under the archive name prefix ("" for the
// root). stack holds the resolved paths of the directories being packed, to
// detect symlink loops.
func (p *packer) dir(src, prefix string, stack []string) error {
	entries, err := os.ReadDir(src) // sorted by name
	if err != nil {
		return fmt.Errorf("artifact: pack: %w", err)
	}
	for _, de := range entries {
		if de.Name() == ".git" {
			continue
		}
		name := de.Name()
		if prefix != "" {
			name = prefix + "/" + name
		}
		if _, err := cleanName(name); err != nil {
			return fmt.Errorf("artifact: pack: %q: %s", name, err.(*Error).Problem)
		}
		path := filepath.Join(src, de.Name())
		if de.Type()&fs.ModeSymlink != 0 {
			if path, err = p.resolve(path, name); err != nil {
				return err
			}
		}
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("artifact: pack: %w", err)
		}
		switch {
		case fi.IsDir():
			if slices.Contains(stack, path) {
				return fmt.Errorf("artifact: pack: %s: symlink loop", name)
			}
			if err := p.header(name+"/", tar.TypeDir, 0o755, 0); err != nil {
				return err
			}
			if err := p.dir(path, name, append(stack, path)); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := p.file(path, name, fi); err != nil {
				return err
			}
		default:
			return fmt.Errorf("artifact: pack: %s: unsupported file type %s; only regular files and directories are packed", name, fi.Mode().Type())
		}
	}
	return nil
}

// resolve follows the symlink at path and returns its target, which must
// lie inside the root.
func (p *packer) resolve(path, name string) (string, error) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("artifact: pack: symlink %s: %w", name, err)
	}
	rel, err := filepath.Rel(p.root, target)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", fmt.Errorf("artifact: pack: symlink %s points outside %s", name, p.root)
	}
	return target, nil
}

func (p *packer) header(name string, typ byte, mode int64, size int64) error {
	err := p.tw.WriteHeader(&tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  epoch,
		Format:   tar.FormatPAX, // long names; fixed so the bytes never depend on the input
	})
	if err != nil {
		return fmt.Errorf("artifact: pack: %s: %w", strings.TrimSuffix(name, "/"), err)
	}
	return nil
}

func (p *packer) file(path, name string, fi fs.FileInfo) error {
	mode := int64(0o644)
	if fi.Mode().Perm()&0o111 != 0 {
		mode = 0o755
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("artifact: pack: %w", err)
	}
	defer f.Close()
	if err := p.header(name, tar.TypeReg, mode, fi.Size()); err != nil {
		return err
	}
	if _, err := io.CopyN(p.tw, f, fi.Size()); err != nil {
		return fmt.Errorf("artifact: pack: %s changed while packing: %w", name, err)
	}
	return nil
}
