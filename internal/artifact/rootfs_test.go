package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func symlinkEntry(name, target string) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
}

func hardlinkEntry(name, target string) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func withMode(m member, mode int64) member {
	m.hdr.Mode = mode
	return m
}

// describeTree returns every entry below dir: type, permissions and
// contents or link target.
func describeTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			out[rel+"/"] = mode.String()
		case mode&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		case mode.IsRegular():
			b, _ := os.ReadFile(p)
			out[rel] = mode.String() + " " + string(b)
		default:
			out[rel] = "unexpected " + mode.String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func goodImage(t testing.TB) []byte {
	return tarOf(t,
		dirEntry("./"),
		withMode(dirEntry("./bin/"), 0o755),
		withMode(reg("./bin/sh", "#!elf"), 0o4755), // setuid dropped
		withMode(reg("./etc/os-release", "ID=hearth-test\n"), 0o644),
		withMode(reg("./etc/shadow", "root:*:"), 0o640),
		symlinkEntry("./usr/bin/sh", "/bin/sh"), // absolute: resolved in the sandbox
		symlinkEntry("./usr/lib/os-release", "../../etc/os-release"),
		symlinkEntry("./dangling", "/nowhere/at/all"),
		symlinkEntry("./lib", "usr/lib"),
		hardlinkEntry("./bin/bash", "bin/sh"),
		withMode(dirEntry("./proc/"), 0o555),
		withMode(dirEntry("./ro/"), 0o555), // read-only, with contents after it
		withMode(reg("./ro/file", "x"), 0o444),
		withMode(dirEntry("./tmp/"), 0o1777), // sticky dropped
	)
}

func TestUnpackRootFS(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		data := goodImage(t)
		if compressed {
			data = gz(t, data)
		}
		dst := filepath.Join(t.TempDir(), "out")
		info, err := UnpackRootFS(bytes.NewReader(data), dst, RootFSLimits{})
		if err != nil {
			t.Fatalf("compressed=%v: %v", compressed, err)
		}
		want := map[string]string{
			"bin/":               "drwxr-xr-x",
			"bin/sh":             "-rwxr-xr-x #!elf",
			"bin/bash":           "-rwxr-xr-x #!elf",
			"etc/":               "drwxr-xr-x",
			"etc/os-release":     "-rw-r--r-- ID=hearth-test\n",
			"etc/shadow":         "-rw-r----- root:*:",
			"usr/":               "drwxr-xr-x",
			"usr/bin/":           "drwxr-xr-x",
			"usr/bin/sh":         "-> /bin/sh",
			"usr/lib/":           "drwxr-xr-x",
			"usr/lib/os-release": "-> ../../etc/os-release",
			"dangling":           "-> /nowhere/at/all",
			"lib":                "-> usr/lib",
			"proc/":              "dr-xr-xr-x",
			"ro/":                "dr-xr-xr-x",
			"ro/file":            "-r--r--r-- x",
			"tmp/":               "drwxr-xr-x", // 1777 in the image: no sticky bit, nothing writable by others on the host
		}
		got := describeTree(t, dst)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("compressed=%v: %s: got %q, want %q", compressed, k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("compressed=%v: unexpected %s: %s", compressed, k, got[k])
			}
		}
		var a, b os.FileInfo
		a, _ = os.Stat(filepath.Join(dst, "bin/sh"))
		b, _ = os.Stat(filepath.Join(dst, "bin/bash"))
		if !os.SameFile(a, b) {
			t.Error("bin/bash is not a hard link to bin/sh")
		}
		if info.Files != 4 || info.Size != int64(len("#!elf")+len("ID=hearth-test\n")+len("root:*:")+1) {
			t.Errorf("info = %+v", info)
		}
		os.Chmod(filepath.Join(dst, "ro"), 0o755) // let TempDir's clean-up in
	}
}

func hostileImages(t testing.TB) []struct {
	name     string
	data     []byte
	lim      RootFSLimits
	want     string
	tooLarge bool
} {
	valid := gz(t, tarOf(t, reg("etc/os-release", "x")))
	badsum := append([]byte{}, valid...)
	badsum[len(badsum)-5] ^= 0xff
	bomb := gz(t, tarOf(t, reg("zeros", strings.Repeat("\x00", 3<<20))))
	return []struct {
		name     string
		data     []byte
		lim      RootFSLimits
		want     string
		tooLarge bool
	}{
		{"empty", nil, RootFSLimits{}, "image is empty", false},
		{"empty tar", make([]byte, 1024), RootFSLimits{}, "image is empty", false},
		{"not tar", bytes.Repeat([]byte("not a tar "), 200), RootFSLimits{}, "not a tar archive", false},
		{"bad gzip header", []byte{0x1f, 0x8b, 1, 2, 3}, RootFSLimits{}, "bad gzip header", false},
		{"bad checksum", badsum, RootFSLimits{}, "corrupt", false},
		{"truncated", valid[:len(valid)/2], RootFSLimits{}, "truncated", false},
		{"absolute path", tarOf(t, reg("/etc/cron.d/evil", "x")), RootFSLimits{}, "absolute paths are not allowed", false},
		{"dot dot", tarOf(t, reg("../evil", "x")), RootFSLimits{}, `".." is not allowed`, false},
		{"inner dot dot", tarOf(t, dirEntry("a/"), reg("a/../../evil", "x")), RootFSLimits{}, `".." is not allowed`, false},
		{"write through absolute symlink", tarOf(t, symlinkEntry("etc", "/etc"), reg("etc/cron.d/evil", "x")), RootFSLimits{}, `"etc" is a symbolic link in this archive`, false},
		{"write through relative symlink", tarOf(t, symlinkEntry("up", "../.."), reg("up/evil", "x")), RootFSLimits{}, `"up" is a symbolic link`, false},
		{"symlink then dir", tarOf(t, symlinkEntry("d", "/tmp"), dirEntry("d/sub/")), RootFSLimits{}, "symbolic link in this archive", false},
		{"replace symlink", tarOf(t, symlinkEntry("x", "/etc/passwd"), reg("x", "evil")), RootFSLimits{}, "duplicate entry", false},
		{"symlink over file", tarOf(t, reg("x", "ok"), symlinkEntry("x", "/etc/passwd")), RootFSLimits{}, "duplicate entry", false},
		{"hardlink absolute", tarOf(t, hardlinkEntry("pw", "/etc/passwd")), RootFSLimits{}, "not a clean relative path", false},
		{"hardlink escape", tarOf(t, hardlinkEntry("pw", "../../etc/passwd")), RootFSLimits{}, "not a clean relative path", false},
		{"hardlink through symlink", tarOf(t, symlinkEntry("e", "/etc"), hardlinkEntry("pw", "e/passwd")), RootFSLimits{}, "not a regular file earlier", false},
		{"hardlink to dir", tarOf(t, dirEntry("d/"), hardlinkEntry("h", "d")), RootFSLimits{}, "not a regular file earlier", false},
		{"hardlink forward", tarOf(t, hardlinkEntry("h", "f"), reg("f", "x")), RootFSLimits{}, "not a regular file earlier", false},
		{"char device", tarOf(t, member{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/mem", Devmajor: 1, Devminor: 1}}), RootFSLimits{}, "device and fifo entries are not allowed", false},
		{"block device", tarOf(t, member{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Devmajor: 8}}), RootFSLimits{}, "device and fifo", false},
		{"fifo", tarOf(t, member{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p"}}), RootFSLimits{}, "device and fifo", false},
		{"empty symlink", tarOf(t, symlinkEntry("l", "")), RootFSLimits{}, "without a target", false},
		{"duplicate", tarOf(t, reg("a", "1"), reg("./a", "2")), RootFSLimits{}, "duplicate entry", false},
		{"file then child", tarOf(t, reg("a", "1"), reg("a/b", "2")), RootFSLimits{}, "is a file in this archive", false},
		{"too large", tarOf(t, reg("a", strings.Repeat("a", 600)), reg("b", strings.Repeat("b", 600))), RootFSLimits{MaxBytes: 1000}, "unpacks to more than 1000 bytes", true},
		{"too many entries", tarOf(t, reg("a", ""), reg("b", ""), symlinkEntry("c", "a"), dirEntry("d/")), RootFSLimits{MaxEntries: 3}, "more than 3 entries", true},
		{"zip bomb", bomb, RootFSLimits{MaxBytes: 1 << 20}, "more than 1048576 bytes", true},
		{"bomb after the archive", gz(t, append(tarOf(t, reg("a", "x")), make([]byte, 8<<20)...)), RootFSLimits{MaxBytes: 1 << 20, MaxEntries: 10}, "decompresses to more than", true},
	}
}

func TestUnpackRootFSRejects(t *testing.T) {
	for _, tt := range hostileImages(t) {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(parent, "out")
			_, err := UnpackRootFS(bytes.NewReader(tt.data), dst, tt.lim)
			checkRejection(t, "UnpackRootFS", err, tt.want, tt.tooLarge)
			if _, serr := os.Lstat(dst); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("left %s behind: %v", dst, describeTree(t, parent))
			}
			if got := describeTree(t, parent); len(got) != 1 {
				t.Errorf("wrote outside the target: %v", got)
			}
		})
	}
}

// TestUnpackRootFSNeverFollowsLinks: even when the target directory already
// holds a link out of it (which UnpackRootFS's own checks never create),
// extraction does not write through it.
func TestUnpackRootFSNeverFollowsLinks(t *testing.T) {
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	x := &imageExtractor{lim: DefaultRootFSLimits, seen: map[string]kind{}, dirs: map[string]fs.FileMode{}}
	dst := filepath.Join(parent, "out")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dst, "esc")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	x.root = root
	x.dirs["esc"] = 0o755 // pretend it was created as a directory
	_, err = x.extract(tar.NewReader(bytes.NewReader(tarOf(t, reg("esc/evil", "x")))))
	if err == nil {
		t.Fatal("wrote through a link out of the target")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside: %v", ents)
	}
}

func TestUnpackRootFSReadError(t *testing.T) {
	data := gz(t, tarOf(t, reg("big", strings.Repeat("x", 1<<20))))
	r := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(errors.New("disk on fire")))
	dst := filepath.Join(t.TempDir(), "out")
	_, err := UnpackRootFS(r, dst, RootFSLimits{})
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("err = %v, want the read error, not ErrInvalid", err)
	}
	if _, serr := os.Stat(dst); !errors.Is(serr, fs.ErrNotExist) {
		t.Error("left the target behind")
	}
}

func FuzzUnpackRootFS(f *testing.F) {
	f.Add(goodImage(f), false)
	f.Add(goodImage(f), true)
	for _, h := range hostileImages(f) {
		if len(h.data) < 64<<10 {
			f.Add(h.data, false)
		}
	}
	lim := RootFSLimits{MaxBytes: 256 << 10, MaxEntries: 50}
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		if compress {
			data = gz(t, data)
		}
		parent := t.TempDir()
		dst := filepath.Join(parent, "out")
		_, err := UnpackRootFS(bytes.NewReader(data), dst, lim)
		entries := onlyTarget(t, parent, "UnpackRootFS")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection %v does not match ErrInvalid", err)
			}
			if len(entries) != 0 {
				t.Fatalf("failed UnpackRootFS left %s behind", dst)
			}
			return
		}
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			mode := fi.Mode()
			if mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s: mode %v", p, mode)
			}
			if !mode.IsDir() && !mode.IsRegular() && mode&fs.ModeSymlink == 0 {
				t.Errorf("%s: unexpected type %v", p, mode)
			}
			if mode.IsDir() && mode&0o700 != 0o700 {
				os.Chmod(p, 0o755) // let the walk and TempDir's clean-up in
			}
			return nil
		})
	})
}
