//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hearthdev/hearth/internal/driver/sandbox/sbinit"
)

// The sandbox root is assembled once per driver, as a plain directory tree
// (the template) that every sandbox binds read-only as its root: mount
// points, symlinks for merged-/usr hosts, and the few files of /etc a
// program needs, copied from the host. A sandbox then needs a handful of
// mounts (the template, the host's /usr, /dev, /proc) instead of one or two
// per file, and no writes: the template is on the host's disk, so its pages
// are shared by every sandbox through the page cache.

// etcFiles are copied from the host's /etc when present (directories with
// their contents; symlinks as symlinks).
var etcFiles = []string{"ld.so.cache", "localtime", "ssl", "alternatives", "mime.types", "protocols", "services", "ca-certificates"}

// etcSkip are host paths never copied (private keys).
var etcSkip = map[string]bool{"ssl/private": true}

// generatedEtc are written into the template.
var generatedEtc = [][2]string{
	{"passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n"},
	{"group", "root:x:0:\nnogroup:x:65534:\n"},
	{"hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
	{"hostname", "hearth\n"},
	{"nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\nservices: files\nprotocols: files\n"},
	{"resolv.conf", "# no network in a Hearth sandbox\n"},
}

// rootMounts are where a sandbox mounts over its root. In an imported root
// they must be directories reached without a symbolic link: the init mounts
// on them by host path before pivot_root, where a link would lead out of
// the root.
var rootMounts = []string{"var/task", "tmp", "proc", "dev", ".oldroot"}

// mountPoints exist in the template.
var mountPoints = append([]string{"etc"}, rootMounts...)

// buildTemplate creates the root template in dir (which must not exist)
// from the host's directories and returns the binds a sandbox adds on top.
func buildTemplate(dir string) ([]sbinit.Bind, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		return nil, err
	}
	for _, d := range mountPoints {
		if err := mkdirAll(filepath.Join(dir, d)); err != nil {
			return nil, err
		}
	}
	var binds []sbinit.Bind
	for _, d := range []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		src := "/" + d
		st, err := os.Lstat(src)
		switch {
		case err != nil:
		case st.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return nil, err
			}
			if err := os.Symlink(target, filepath.Join(dir, d)); err != nil {
				return nil, err
			}
		case st.IsDir():
			if err := mkdirAll(filepath.Join(dir, d)); err != nil {
				return nil, err
			}
			binds = append(binds, sbinit.Bind{Src: src, Dst: d})
		}
	}
	etc := filepath.Join(dir, "etc")
	for _, name := range etcFiles {
		if err := copyTree("/etc", etc, name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, f := range generatedEtc {
		if err := writeFile644(filepath.Join(etc, f[0]), f[1]); err != nil {
			return nil, err
		}
	}
	return binds, nil
}

func mkdirAll(p string) error {
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.Chmod(p, 0o755)
}

func writeFile644(p, content string) error {
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Chmod(p, 0o644)
}

// copyTree copies srcRoot/rel to dstRoot/rel: directories recursively,
// symlinks as symlinks, regular files world-readable; other files and the
// paths in etcSkip are left out.
func copyTree(srcRoot, dstRoot, rel string) error {
	return filepath.WalkDir(filepath.Join(srcRoot, rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(srcRoot, p)
		if etcSkip[filepath.ToSlash(r)] {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		dst := filepath.Join(dstRoot, r)
		switch {
		case d.IsDir():
			return mkdirAll(dst)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			return copyFile(p, dst)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(0o644); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkRootFS checks that an imported root (Config.RootFS) has its mount
// points.
func checkRootFS(dir string) error {
	if err := rootMountPoints(dir, false); err != nil {
		return fmt.Errorf("sandbox: RootFS %s: %w", dir, err)
	}
	return nil
}

// prepareRootFS makes an extracted image usable as a sandbox root: it
// creates the missing mount points and refuses an image where one is not a
// directory or lies behind a symbolic link.
func prepareRootFS(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return rootMountPoints(dir, true)
}

// rootMountPoints checks, component by component and without following
// links, that every mount point of rootMounts is a directory of the root
// dir, creating the missing ones if create is set.
func rootMountPoints(dir string, create bool) error {
	for _, m := range rootMounts {
		cur, rel := dir, ""
		for _, c := range strings.Split(m, "/") {
			cur, rel = filepath.Join(cur, c), rel+"/"+c
			st, err := os.Lstat(cur)
			switch {
			case errors.Is(err, fs.ErrNotExist) && create:
				if err := os.Mkdir(cur, 0o755); err != nil {
					return err
				}
				if err := os.Chmod(cur, 0o755); err != nil {
					return err
				}
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("%s is missing: the sandbox mounts /%s there", rel, m)
			case err != nil:
				return err
			case st.Mode()&fs.ModeSymlink != 0:
				return fmt.Errorf("%s is a symbolic link: the sandbox mounts /%s there, on a directory of the image", rel, m)
			case !st.IsDir():
				return fmt.Errorf("%s is not a directory: the sandbox mounts /%s there", rel, m)
			}
		}
	}
	return nil
}

// maxSymlinks bounds the links lookupIn follows, like the kernel's 40.
const maxSymlinks = 40

// lookupIn resolves p inside the root file system at root as the kernel
// would after pivot_root: symbolic links are followed, an absolute target
// restarts at root and ".." stops at it. It returns the host path of the
// result, which is not a link, so it can be inspected with os.Stat without
// leaving root.
func lookupIn(root, p string) (string, error) {
	var done []string // resolved components, none a link
	todo := strings.Split(p, "/")
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := filepath.Join(root, filepath.Join(done...), c)
		st, err := os.Lstat(cur)
		if err != nil {
			return "", err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxSymlinks {
			return "", &fs.PathError{Op: "lookup", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = done[:0]
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return filepath.Join(root, filepath.Join(done...)), nil
}
