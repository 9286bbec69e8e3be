package artifact

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"strings"
)

// RootFSLimits bounds what UnpackRootFS accepts. A zero field means the
// value from DefaultRootFSLimits.
type RootFSLimits struct {
	MaxBytes   int64 // total bytes of file contents
	MaxEntries int   // entries of any type
}

// DefaultRootFSLimits fit the images of common language runtimes
// (a Debian-based Python image is about 1 GiB and 30,000 entries).
var DefaultRootFSLimits = RootFSLimits{
	MaxBytes:   2 << 30,
	MaxEntries: 200_000,
}

func (l RootFSLimits) withDefaults() RootFSLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultRootFSLimits.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultRootFSLimits.MaxEntries
	}
	return l
}

// UnpackRootFS extracts a root file system image from r into dir, which
// must be empty or not exist yet (it is then created, with its parents).
// The image is a tar archive, plain or gzip'd, such as `docker export`
// writes; it is untrusted.
//
// Unlike a function archive (Unpack), an image may hold symbolic links,
// with any target, and hard links to regular files earlier in the archive.
// Links are created, never followed: an entry beneath a symbolic link of
// the archive is rejected, so extraction cannot write through a link, let
// alone out of dir (and every write goes through an os.Root besides). Names
// must be clean relative paths; device nodes, fifos, duplicates and
// anything past lim are rejected too, with errors matching ErrInvalid (and
// ErrTooLarge for limits). Permission bits are kept except setuid, setgid
// and sticky; ownership is not: everything belongs to the extracting user.
//
// On any error, whatever was extracted is removed again (and dir itself if
// UnpackRootFS created it). Info.Manifest is nil.
func UnpackRootFS(r io.Reader, dir string, lim RootFSLimits) (info *Info, err error) {
	lim = lim.withDefaults()
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

	// src remembers I/O errors of r, so they are not taken for a bad image.
	src := &countingReader{r: r, limit: math.MaxInt64 - 1}
	br := bufio.NewReader(src)
	var stream io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			if src.err != nil {
				return nil, fmt.Errorf("artifact: reading image: %w", src.err)
			}
			return nil, invalid("", "image is corrupt (bad gzip header)")
		}
		stream = gz
	}
	// The whole decompressed stream is bounded, framing included.
	rawLimit := lim.MaxBytes + int64(lim.MaxEntries+1)*headerSlack + 1<<20
	raw := &countingReader{r: stream, limit: rawLimit}
	x := &imageExtractor{root: root, lim: lim, seen: map[string]kind{}, dirs: map[string]fs.FileMode{}}
	info, err = x.extract(tar.NewReader(raw))
	if err == nil {
		// Read to the end so that the gzip checksum is verified.
		if _, cerr := io.Copy(io.Discard, raw); cerr != nil && !raw.exceeded {
			err = streamError("", cerr)
		}
	}
	if err == nil {
		err = x.setDirModes()
	}
	switch {
	case src.err != nil:
		return nil, fmt.Errorf("artifact: reading image: %w", src.err)
	case raw.exceeded:
		return nil, tooLarge("", "image decompresses to more than %d bytes", rawLimit)
	case err != nil && raw.err != nil:
		// A broken gzip stream explains whatever tar made of it.
		return nil, streamError("", raw.err)
	}
	return info, err
}

// imageExtractor writes validated image entries beneath root.
type imageExtractor struct {
	root *os.Root
	lim  RootFSLimits
	seen map[string]kind
	// dirs holds every directory created, with the mode it gets once
	// everything is extracted (until then it is 0700: writable for the
	// extraction whoever runs it, private while incomplete).
	dirs map[string]fs.FileMode
}

func (x *imageExtractor) extract(tr *tar.Reader) (*Info, error) {
	info := &Info{}
	headers, entries := 0, 0
	for {
		hdr, err := nextHeader(tr, headers, "image")
		if err != nil {
			return nil, err
		}
		if hdr == nil {
			break
		}
		headers++
		var k kind
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeLink:
			k = kindFile
		case tar.TypeDir:
			k = kindDir
		case tar.TypeSymlink:
			k = kindSymlink
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return nil, invalid(hdr.Name, "device and fifo entries are not allowed (the sandbox makes its own /dev)")
		default:
			return nil, invalid(hdr.Name, "entry type %q is not allowed; only files, directories and links are", hdr.Typeflag)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "" {
			if k != kindDir {
				return nil, invalid(hdr.Name, "the archive root must be a directory")
			}
			continue
		}
		if k != kindDir && strings.HasSuffix(hdr.Name, "/") {
			return nil, invalid(hdr.Name, "a file name cannot end in /")
		}
		entries++
		if entries > x.lim.MaxEntries {
			return nil, tooLarge(hdr.Name, "image has more than %d entries", x.lim.MaxEntries)
		}
		if err := claim(x.seen, name, k, hdr.Name); err != nil {
			return nil, err
		}
		if err := x.mkdirAll(path.Dir(name)); err != nil {
			return nil, err
		}
		// No setuid, setgid or sticky bit, and nothing writable by group
		// or others: the sandbox mounts the tree read-only anyway, and the
		// host's copy must not be a place where local users plant files
		// (an image's 1777 /var/tmp).
		perm := fs.FileMode(hdr.Mode) & fs.ModePerm &^ 0o022
		switch {
		case k == kindDir:
			err = x.mkdirAll(name)
			x.dirs[name] = perm
		case k == kindSymlink:
			err = x.symlink(hdr, name)
		case hdr.Typeflag == tar.TypeLink:
			err = x.link(hdr, name)
		default:
			var n int64
			n, err = x.file(tr, hdr, name, perm, x.lim.MaxBytes-info.Size)
			info.Size += n
			info.Files++
		}
		if err != nil {
			return nil, err
		}
	}
	if entries == 0 {
		return nil, invalid("", "image is empty")
	}
	return info, nil
}

func (x *imageExtractor) symlink(hdr *tar.Header, name string) error {
	target := hdr.Linkname
	switch {
	case target == "":
		return invalid(hdr.Name, "symbolic link without a target")
	case strings.IndexByte(target, 0) >= 0:
		return invalid(hdr.Name, "symbolic link target contains a NUL byte")
	case len(target) > maxPathLen:
		return invalid(hdr.Name, "symbolic link target is longer than %d bytes", maxPathLen)
	}
	if err := x.root.Symlink(target, name); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	return nil
}

// link makes a hard link to a regular file extracted before.
func (x *imageExtractor) link(hdr *tar.Header, name string) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil || target == "" {
		return invalid(hdr.Name, "hard link target %q is not a clean relative path", hdr.Linkname)
	}
	if target == name {
		return invalid(hdr.Name, "hard link to itself")
	}
	if x.seen[target] != kindFile {
		return invalid(hdr.Name, "hard link target %q is not a regular file earlier in the image", hdr.Linkname)
	}
	if err := x.root.Link(target, name); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	return nil
}

// file writes a regular file of at most budget bytes and returns its size.
func (x *imageExtractor) file(tr *tar.Reader, hdr *tar.Header, name string, perm fs.FileMode, budget int64) (int64, error) {
	if hdr.Size > budget {
		return 0, tooLarge(hdr.Name, "image unpacks to more than %d bytes", x.lim.MaxBytes)
	}
	// O_EXCL: never write through something that already exists.
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("artifact: %w", err)
	}
	body := &countingReader{r: tr, limit: budget}
	_, err = io.Copy(f, body)
	if err == nil {
		err = f.Chmod(perm) // exact mode, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case body.exceeded:
		return body.n, tooLarge(hdr.Name, "image unpacks to more than %d bytes", x.lim.MaxBytes)
	case body.err != nil:
		return body.n, streamError(hdr.Name, body.err)
	case err != nil:
		return body.n, fmt.Errorf("artifact: writing %s: %w", name, err)
	}
	return body.n, nil
}

// mkdirAll creates name and its missing parents (mode 0700 until
// setDirModes; directories implied by deeper entries end up 0755).
func (x *imageExtractor) mkdirAll(name string) error {
	if name == "." || name == "" {
		return nil
	}
	if _, ok := x.dirs[name]; ok {
		return nil
	}
	if err := x.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := x.root.Mkdir(name, 0o700); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	x.dirs[name] = 0o755
	return nil
}

// setDirModes gives every directory its mode, deepest first (a read-only
// directory is finished only after what it contains).
func (x *imageExtractor) setDirModes() error {
	names := make([]string, 0, len(x.dirs))
	for n := range x.dirs {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, n := range names {
		if err := x.root.Chmod(n, x.dirs[n]); err != nil {
			return fmt.Errorf("artifact: %w", err)
		}
	}
	return nil
}
