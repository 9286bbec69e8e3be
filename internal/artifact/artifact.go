// Package artifact packs a function directory into the gzip'd tar that
// `hearth deploy` uploads, and unpacks such an archive safely on the server.
//
// The archive is untrusted input. Unpack and ReadManifest accept only
// regular files and directories with local, clean names; they reject
// symlinks, hardlinks, devices, duplicates and anything that would land
// outside the target directory, and they enforce size and file-count limits
// while decompressing rather than trusting the sizes in tar headers.
// UnpackRootFS extracts a root file system image (a sandbox function's
// rootfs:, e.g. an exported container image) under the same rules, except
// that it keeps symbolic links and hard links, never writing through a
// link. Every rejection matches ErrInvalid; rejections for size also match
// ErrTooLarge.
package artifact

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

var (
	// ErrInvalid is matched by every error that rejects an archive.
	ErrInvalid = errors.New("invalid artifact")
	// ErrTooLarge is matched by rejections for exceeding a Limit; they
	// match ErrInvalid too, so test for ErrTooLarge first.
	ErrTooLarge = errors.New("artifact too large")
)

// Limits bounds what Unpack and ReadManifest accept. A zero field means the
// value from DefaultLimits.
type Limits struct {
	MaxCompressed   int64 // bytes read from the request body
	MaxUncompressed int64 // total bytes of file contents
	MaxFiles        int   // entries (files and directories)
}

// DefaultLimits are the limits the gateway applies to an upload.
var DefaultLimits = Limits{
	MaxCompressed:   64 << 20,
	MaxUncompressed: 256 << 20,
	MaxFiles:        10000,
}

func (l Limits) withDefaults() Limits {
	if l.MaxCompressed <= 0 {
		l.MaxCompressed = DefaultLimits.MaxCompressed
	}
	if l.MaxUncompressed <= 0 {
		l.MaxUncompressed = DefaultLimits.MaxUncompressed
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	return l
}

// Info describes an unpacked archive.
type Info struct {
	Files    int    // regular files
	Size     int64  // total bytes of file contents
	Manifest []byte // contents of hearth.yaml at the archive root
}

// Error is a rejection of an archive. It matches ErrInvalid, and
// ErrTooLarge when a limit was exceeded.
type Error struct {
	Entry    string // offending archive entry, or "" for the archive as a whole
	Problem  string
	TooLarge bool

	named bool // Problem already names Entry
}

func (e *Error) Error() string {
	if e.Entry == "" || e.named {
		return "artifact: " + e.Problem
	}
	// %q: entry names come from the uploader and may hold control characters.
	return fmt.Sprintf("artifact: %q: %s", e.Entry, e.Problem)
}

// Is makes every Error match ErrInvalid, and limit errors ErrTooLarge.
func (e *Error) Is(target error) bool {
	return target == ErrInvalid || (e.TooLarge && target == ErrTooLarge)
}

func invalid(entry, format string, args ...any) *Error {
	return &Error{Entry: entry, Problem: fmt.Sprintf(format, args...)}
}

func tooLarge(entry, format string, args ...any) *Error {
	return &Error{Entry: entry, Problem: fmt.Sprintf(format, args...), TooLarge: true}
}

// Name limits of common Linux file systems; longer names would fail at
// extraction with an I/O error instead of a rejection.
const (
	maxNameLen = 255
	maxPathLen = 4095
)

// cleanName validates an archive entry name and returns it in canonical
// form: slash-separated, relative, without "." or empty components or a
// trailing slash. The archive root itself ("." or "./") yields "".
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", invalid(name, "entry has an empty name")
	case strings.IndexByte(name, 0) >= 0:
		return "", invalid(name, "name contains a NUL byte")
	case strings.Contains(name, `\`):
		return "", invalid(name, "name contains a backslash")
	case strings.HasPrefix(name, "/"):
		return "", invalid(name, "absolute paths are not allowed")
	case len(name) > maxPathLen:
		return "", invalid(name, "name is longer than %d bytes", maxPathLen)
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch {
		case p == "" || p == ".":
			continue
		case p == "..":
			return "", invalid(name, `".." is not allowed in names`)
		case len(p) > maxNameLen:
			return "", invalid(name, "a name component is longer than %d bytes", maxNameLen)
		}
		parts = append(parts, p)
	}
	clean := path.Join(parts...)
	if clean != "" && !filepath.IsLocal(clean) { // defence in depth on top of the checks above
		return "", invalid(name, "path resolves outside the function directory")
	}
	return clean, nil
}
