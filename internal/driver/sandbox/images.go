//go:build linux

package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hearthdev/hearth/internal/artifact"
	"github.com/hearthdev/hearth/internal/driver"
)

// A function may bring its own root file system as a tarball (Spec.RootFS,
// the manifest's rootfs: field), for instance an exported container image.
// images extracts each distinct tarball once, at deploy (Prepare) or at the
// first start after a restart, into <StateDir>/rootfs/<sha256 of the
// tarball>, and sandboxes of the function bind that tree read-only as their
// root instead of the host-based template.
//
// Extraction goes through artifact.UnpackRootFS (no absolute names or ..,
// no devices, nothing written through a link, size and entry limits) into
// a temporary directory that is renamed to its digest only when complete,
// and a tree is removed by renaming it away first: a crash never leaves a
// partial tree under a digest's name. Trees are shared by every function
// version with the same tarball and removed by Forget once no version known
// to this driver and no live sandbox uses them.

// images manages the extracted root file systems.
type images struct {
	dir string // <StateDir>/rootfs
	lim artifact.RootFSLimits
	log *slog.Logger

	mu      sync.Mutex
	digests map[fileID]string          // tarball → digest, so a start does not hash it again
	busy    map[string]chan struct{}   // digest → extraction in flight, closed when done
	refs    map[string]map[string]bool // digest → function versions (name, dir) using it
	users   map[string]int             // digest → live sandboxes on it
}

// fileID identifies a tarball's content cheaply: function directories are
// immutable, but the identity includes the file's inode and times anyway.
type fileID struct {
	path       string
	dev, ino   uint64
	size, time int64
}

func newImages(dir string, lim artifact.RootFSLimits, log *slog.Logger) (*images, error) {
	// Only Hearth reads the trees on the host: the init gets a tree as a
	// descriptor, so nothing needs to search this directory.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	im := &images{dir: dir, lim: lim, log: log, digests: map[fileID]string{},
		busy: map[string]chan struct{}{}, refs: map[string]map[string]bool{}, users: map[string]int{}}
	im.removeStale()
	return im, nil
}

// removeStale removes the temporary trees of extractions and removals that
// a dead Hearth process left behind.
func (im *images) removeStale() {
	ents, _ := os.ReadDir(im.dir)
	for _, e := range ents {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, ".tmp-")
		if !ok {
			rest, ok = strings.CutPrefix(name, ".trash-")
		}
		if !ok {
			continue
		}
		owner, _, _ := strings.Cut(rest, "-")
		if staleOwner(owner) {
			os.RemoveAll(filepath.Join(im.dir, name))
		}
	}
}

// tempName returns a fresh name in im.dir for a tree being built or removed.
func (im *images) tempName(kind string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(im.dir, kind+ownerToken()+"-"+hex.EncodeToString(b[:]))
}

// tarball checks spec's RootFS and returns its path and identity.
func tarball(spec driver.Spec) (string, fileID, error) {
	if !filepath.IsLocal(spec.RootFS) {
		return "", fileID{}, driver.Errorf(driver.ErrInvalidArtifact, "rootfs: %q is not a path inside the function directory", spec.RootFS)
	}
	p := filepath.Join(spec.Dir, spec.RootFS)
	st, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fileID{}, driver.Errorf(driver.ErrInvalidArtifact, "rootfs: %s is not in the function directory", spec.RootFS)
	case err != nil:
		return "", fileID{}, fmt.Errorf("sandbox: rootfs: %w", err)
	case !st.Mode().IsRegular():
		return "", fileID{}, driver.Errorf(driver.ErrInvalidArtifact, "rootfs: %s is not a regular file", spec.RootFS)
	}
	id := fileID{path: p, size: st.Size(), time: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = sys.Dev, sys.Ino
	}
	return id.path, id, nil
}

// digest returns the sha256 of spec's tarball, and its identity.
func (im *images) digest(spec driver.Spec) (string, fileID, error) {
	p, id, err := tarball(spec)
	if err != nil {
		return "", id, err
	}
	im.mu.Lock()
	d, ok := im.digests[id]
	im.mu.Unlock()
	if ok {
		return d, id, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", id, fmt.Errorf("sandbox: rootfs: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", id, fmt.Errorf("sandbox: rootfs: reading %s: %w", spec.RootFS, err)
	}
	d = hex.EncodeToString(h.Sum(nil))
	im.mu.Lock()
	im.digests[id] = d
	im.mu.Unlock()
	return d, id, nil
}

func refKey(spec driver.Spec) string { return spec.Function + "\x00" + spec.Dir }

// acquire returns the extracted tree of spec's tarball and its digest,
// extracting it first if needed, and records that spec's version uses it.
// With use, it also counts one more live sandbox on the tree, which the
// caller gives back with release.
func (im *images) acquire(ctx context.Context, spec driver.Spec, use bool) (dir, digest string, err error) {
	digest, _, err = im.digest(spec)
	if err != nil {
		return "", "", err
	}
	dir = filepath.Join(im.dir, digest)
	for {
		im.mu.Lock()
		if ch, ok := im.busy[digest]; ok {
			im.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return "", "", ctx.Err()
			}
		}
		if _, err := os.Lstat(dir); err == nil {
			if im.refs[digest] == nil {
				im.refs[digest] = map[string]bool{}
			}
			im.refs[digest][refKey(spec)] = true
			if use {
				im.users[digest]++
			}
			im.mu.Unlock()
			return dir, digest, nil
		}
		ch := make(chan struct{})
		im.busy[digest] = ch
		im.mu.Unlock()
		err := im.extract(spec, dir)
		im.mu.Lock()
		delete(im.busy, digest)
		close(ch)
		im.mu.Unlock()
		if err != nil {
			return "", "", err
		}
	}
}

// release gives back a sandbox counted by acquire; the last one out of a
// tree whose versions were all forgotten meanwhile removes it.
func (im *images) release(digest string) {
	im.mu.Lock()
	im.users[digest]--
	if im.users[digest] > 0 {
		im.mu.Unlock()
		return
	}
	delete(im.users, digest)
	im.removeUnused(digest) // unlocks
}

// removeUnused removes digest's tree if nothing uses it. It is called with
// im.mu held and unlocks it.
func (im *images) removeUnused(digest string) {
	if len(im.refs[digest]) > 0 || im.users[digest] > 0 || im.busy[digest] != nil {
		im.mu.Unlock()
		return
	}
	delete(im.refs, digest)
	trash := im.tempName(".trash-")
	err := os.Rename(filepath.Join(im.dir, digest), trash)
	im.mu.Unlock()
	if err == nil {
		os.RemoveAll(trash)
	}
}

// extract unpacks spec's tarball into dst through a temporary directory.
func (im *images) extract(spec driver.Spec, dst string) error {
	f, err := os.Open(filepath.Join(spec.Dir, spec.RootFS))
	if err != nil {
		return fmt.Errorf("sandbox: rootfs: %w", err)
	}
	defer f.Close()
	tmp := im.tempName(".tmp-")
	info, err := artifact.UnpackRootFS(f, tmp, im.lim)
	if err != nil {
		if errors.Is(err, artifact.ErrInvalid) {
			return driver.Errorf(driver.ErrInvalidArtifact, "rootfs: %s: %s", spec.RootFS, strings.TrimPrefix(err.Error(), "artifact: "))
		}
		return fmt.Errorf("sandbox: extracting rootfs %s: %w", spec.RootFS, err)
	}
	if err := prepareRootFS(tmp); err != nil {
		os.RemoveAll(tmp)
		return driver.Errorf(driver.ErrInvalidArtifact, "rootfs: %s: %v", spec.RootFS, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Lstat(dst); serr == nil {
			return nil // another Hearth process extracted it meanwhile
		}
		return fmt.Errorf("sandbox: rootfs: %w", err)
	}
	im.log.Info("sandbox: root file system extracted", "function", spec.Function, "rootfs", spec.RootFS,
		"digest", filepath.Base(dst)[:12], "files", info.Files, "bytes", info.Size)
	return nil
}

// forget drops spec's version from the users of its tree and removes the
// tree once nothing this driver knows of uses it (a version it has not seen
// since it started extracts it again if it ever starts).
func (im *images) forget(spec driver.Spec) {
	digest, id, err := im.digest(spec)
	if err != nil {
		return
	}
	im.mu.Lock()
	delete(im.digests, id)
	delete(im.refs[digest], refKey(spec))
	im.removeUnused(digest) // unlocks
}
