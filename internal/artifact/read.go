package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hearthdev/hearth/internal/manifest"
)

// entry is one validated archive member handed to a visitor.
type entry struct {
	name string // canonical name, see cleanName
	dir  bool
	mode uint32 // 0755 or 0644; always 0755 for directories
}

// visitFunc receives each entry in archive order. For a regular file, body
// yields its contents; the visitor may read all, part or none of it.
type visitFunc func(e entry, body io.Reader) error

// headerSlack bounds the tar framing (headers, PAX records, padding) allowed
// per entry on top of the file contents, so that the decompressed stream as
// a whole is bounded and not only the file contents.
const headerSlack = 4 << 10

// scan reads the gzip'd tar from r, validates every entry and calls visit
// (if not nil) for each. It returns the totals and the root hearth.yaml.
func scan(r io.Reader, lim Limits, visit visitFunc) (*Info, error) {
	lim = lim.withDefaults()
	src := &countingReader{r: r, limit: lim.MaxCompressed}
	info, err := scanGzip(src, lim, visit)
	// The source's own failure explains whatever gzip or tar made of it.
	switch {
	case src.exceeded:
		return nil, tooLarge("", "archive is larger than %d bytes compressed", lim.MaxCompressed)
	case src.err != nil:
		return nil, fmt.Errorf("artifact: reading archive: %w", src.err)
	}
	return info, err
}

func scanGzip(src io.Reader, lim Limits, visit visitFunc) (*Info, error) {
	gz, err := gzip.NewReader(src)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, invalid("", "archive is empty")
		}
		return nil, invalid("", "archive is not gzip-compressed (want a .tar.gz)")
	}
	// The whole decompressed stream is bounded, including anything hidden
	// after the end of the tar archive.
	rawLimit := lim.MaxUncompressed + int64(lim.MaxFiles+1)*headerSlack + 1<<20
	raw := &countingReader{r: gz, limit: rawLimit}
	info, err := scanTar(tar.NewReader(raw), lim, visit)
	if err != nil && raw.err != nil && !raw.exceeded {
		// A broken gzip stream explains whatever tar made of it.
		err = streamError("", raw.err)
	}
	if err == nil {
		// Read to the end so that the gzip checksum is verified and
		// truncation after the end-of-archive marker is noticed.
		_, err = io.Copy(io.Discard, raw)
		if err != nil && !raw.exceeded {
			err = streamError("", err)
		}
	}
	if raw.exceeded {
		return nil, tooLarge("", "archive decompresses to more than %d bytes", rawLimit)
	}
	return info, err
}

// streamError classifies an error from the gzip or tar reader.
func streamError(entry string, err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid(entry, "archive is truncated")
	case errors.Is(err, gzip.ErrChecksum):
		return invalid(entry, "archive is corrupt (gzip checksum mismatch)")
	case errors.Is(err, gzip.ErrHeader):
		return invalid(entry, "archive is corrupt (unexpected data after the gzip stream)")
	case errors.Is(err, tar.ErrHeader):
		return invalid(entry, "archive is corrupt (bad tar header)")
	}
	return invalid(entry, "archive is corrupt: %v", err)
}

type kind uint8

const (
	kindFile    kind = iota + 1
	kindDir          // directory entry in the archive
	kindParent       // directory implied by a deeper entry
	kindSymlink      // symbolic link (root file systems only)
)

// nextHeader returns the next header of tr, nil at the end, or an error
// that says what (an "archive", an "image") is not a tar archive when not
// even the first header reads.
func nextHeader(tr *tar.Reader, read int, what string) (*tar.Header, error) {
	hdr, err := tr.Next()
	switch {
	case errors.Is(err, io.EOF):
		return nil, nil
	case err == nil:
		return hdr, nil
	case read == 0 && (errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)):
		return nil, invalid("", "%s is not a tar archive", what)
	}
	return nil, streamError("", err)
}

func scanTar(tr *tar.Reader, lim Limits, visit visitFunc) (*Info, error) {
	info := &Info{}
	seen := map[string]kind{}
	headers, entries := 0, 0
	for {
		hdr, err := nextHeader(tr, headers, "archive")
		if err != nil {
			return nil, err
		}
		if hdr == nil {
			break
		}
		headers++
		var e entry
		switch hdr.Typeflag {
		case tar.TypeReg:
			e.mode = 0o644
			if hdr.Mode&0o111 != 0 {
				e.mode = 0o755
			}
		case tar.TypeDir:
			e.dir, e.mode = true, 0o755
		case tar.TypeXGlobalHeader:
			continue // metadata only, e.g. the commit id from git archive
		case tar.TypeSymlink:
			return nil, &Error{Entry: hdr.Name, Problem: fmt.Sprintf("symlinks are not allowed: %q", hdr.Name), named: true}
		case tar.TypeLink:
			return nil, &Error{Entry: hdr.Name, Problem: fmt.Sprintf("hardlinks are not allowed: %q", hdr.Name), named: true}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return nil, invalid(hdr.Name, "device and fifo entries are not allowed")
		default:
			return nil, invalid(hdr.Name, "entry type %q is not allowed; only regular files and directories are", hdr.Typeflag)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "" {
			if !e.dir {
				return nil, invalid(hdr.Name, "the archive root must be a directory")
			}
			continue
		}
		if !e.dir && strings.HasSuffix(hdr.Name, "/") {
			return nil, invalid(hdr.Name, "a file name cannot end in /")
		}
		entries++
		if entries > lim.MaxFiles {
			return nil, tooLarge(hdr.Name, "archive has more than %d entries", lim.MaxFiles)
		}
		k := kindFile
		if e.dir {
			k = kindDir
		}
		if err := claim(seen, name, k, hdr.Name); err != nil {
			return nil, err
		}
		e.name = name
		if e.dir {
			if visit != nil {
				if err := visit(e, nil); err != nil {
					return nil, err
				}
			}
			continue
		}

		// Regular file: count what is actually read, not hdr.Size.
		if hdr.Size > lim.MaxUncompressed-info.Size {
			return nil, tooLarge(hdr.Name, "archive unpacks to more than %d bytes", lim.MaxUncompressed)
		}
		body := &countingReader{r: tr, limit: lim.MaxUncompressed - info.Size}
		var mf *bytes.Buffer
		var r io.Reader = body
		if name == manifest.FileName {
			if hdr.Size > manifest.MaxSize {
				return nil, invalid(hdr.Name, "manifest is larger than %d KiB", manifest.MaxSize>>10)
			}
			mf = &bytes.Buffer{}
			r = io.TeeReader(body, mf)
		}
		if visit != nil {
			err = visit(e, r)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, r) // whatever the visitor left
		}
		info.Size += body.n
		if body.exceeded {
			return nil, tooLarge(hdr.Name, "archive unpacks to more than %d bytes", lim.MaxUncompressed)
		}
		if err != nil {
			if body.err != nil {
				return nil, streamError(hdr.Name, body.err)
			}
			return nil, err
		}
		info.Files++
		if mf != nil {
			if mf.Len() > manifest.MaxSize {
				return nil, invalid(hdr.Name, "manifest is larger than %d KiB", manifest.MaxSize>>10)
			}
			info.Manifest = mf.Bytes()
		}
	}
	if seen[manifest.FileName] != kindFile {
		if seen[manifest.FileName] != 0 {
			return nil, invalid(manifest.FileName, "is not a regular file")
		}
		return nil, invalid("", "archive has no %s at its root", manifest.FileName)
	}
	if info.Manifest == nil {
		info.Manifest = []byte{}
	}
	return info, nil
}

// claim records name as k (kindFile, kindDir or kindSymlink) and its parent
// directories in seen, rejecting duplicates, entries that would be both a
// file and a directory, and entries beneath a symbolic link (extracting
// them would write through the link).
func claim(seen map[string]kind, name string, k kind, raw string) error {
	for i := range len(name) {
		if name[i] != '/' {
			continue
		}
		switch parent := name[:i]; seen[parent] {
		case kindFile:
			return invalid(raw, "%q is a file in this archive, not a directory", parent)
		case kindSymlink:
			return invalid(raw, "%q is a symbolic link in this archive; nothing may be extracted through it", parent)
		case 0:
			seen[parent] = kindParent
		}
	}
	switch prev := seen[name]; {
	case prev == kindFile || prev == kindDir || prev == kindSymlink:
		return invalid(raw, "duplicate entry")
	case prev == kindParent && k != kindDir:
		return invalid(raw, "is a directory in this archive, not a file")
	}
	seen[name] = k
	return nil
}

// countingReader counts bytes read and fails once more than limit bytes
// have been read. It remembers the underlying reader's first error other
// than io.EOF, so that an I/O failure is not mistaken for a bad archive.
type countingReader struct {
	r        io.Reader
	n, limit int64
	exceeded bool
	err      error
}

var errLimit = errors.New("limit exceeded")

func (c *countingReader) Read(p []byte) (int, error) {
	if c.exceeded {
		return 0, errLimit
	}
	if rem := c.limit - c.n + 1; int64(len(p)) > rem {
		p = p[:rem] // read at most one byte past the limit
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		c.exceeded = true
		return n, errLimit
	}
	if err != nil && !errors.Is(err, io.EOF) && c.err == nil {
		c.err = err
	}
	return n, err
}
