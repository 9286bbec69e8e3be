//go:build linux

package sandbox

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/artifact"
	"github.com/hearthdev/hearth/internal/driver"
)

// imageEntry is one entry of a test image: a directory (name ending in
// "/"), a symbolic link (link set), a device (dev set) or a file.
type imageEntry struct {
	name, body, link string
	mode             int64
	dev              bool
}

// writeImage writes a gzip'd tar of entries to dir/name.
func writeImage(t testing.TB, dir, name string, entries ...imageEntry) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		case e.dev:
			h.Typeflag, h.Devmajor, h.Devminor, h.Size = tar.TypeChar, 1, 1, 0
		}
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

const imageOSRelease = "ID=hearth-test-image\nPRETTY_NAME=\"Hearth test image\"\n"

// testImage is a minimal root: the static test function in a merged /usr,
// an os-release of its own, links of both kinds, and no /tmp, /proc, /dev
// or /var (the driver adds the mount points).
func testImage(t testing.TB) []imageEntry {
	fn, err := os.ReadFile(filepath.Join(bins.fn, "fn"))
	if err != nil {
		t.Fatal(err)
	}
	return []imageEntry{
		{name: "./"},
		{name: "usr/"},
		{name: "usr/bin/"},
		{name: "usr/bin/fn", body: string(fn)},
		{name: "bin", link: "usr/bin"},
		{name: "etc/", mode: 0o755},
		{name: "etc/os-release", body: imageOSRelease, mode: 0o644},
		{name: "etc/passwd", body: "nobody:x:65534:65534:nobody:/:/bin/false\n", mode: 0o644},
		{name: "etc/absolute-link", link: "/etc/os-release"},
		{name: "etc/dangling", link: "/nowhere"},
	}
}

func imageSpec(dir string) driver.Spec {
	s := fnSpec("abuse")
	s.Function = "image"
	s.Dir = dir
	s.RootFS = "image.tar.gz"
	s.Command = []string{"/bin/fn", "abuse"}
	return s
}

// TestRootFSImage: a function that brings its root file system as a
// tarball sees the image's files, not the host's, read-only, with its own
// /var/task, /tmp, /proc and /dev, still unprivileged; the tree is
// extracted once per content and removed when no version uses it.
func TestRootFSImage(t *testing.T) {
	d := newTestDriver(t, Config{})
	dir := t.TempDir()
	writeImage(t, dir, "image.tar.gz", testImage(t)...)
	spec := imageSpec(dir)
	inst := startT(t, d, spec)

	hostRelease, _ := os.ReadFile("/etc/os-release")
	for _, c := range []struct {
		name, path, arg string
		want            string // prefix of the answer
		contains        string
	}{
		{"image's os-release", "/cat", "/etc/os-release", "ok " + imageOSRelease, ""},
		{"absolute link resolved in the image", "/cat", "/etc/absolute-link", "ok " + imageOSRelease, ""},
		{"merged /usr link", "/ls", "/bin", "ok fn", ""},
		{"only the image's programs", "/ls", "/usr/bin", "ok fn", ""},
		{"no host python", "/read", "/usr/bin/python3", "err", "no such file"},
		{"no host libraries", "/ls", "/lib", "err", "no such file"},
		{"no host shell", "/read", "/bin/sh", "err", "no such file"},
		{"function files", "/ls", "/var/task", "ok image.tar.gz", ""},
		{"own /dev", "/read", "/dev/null", "ok 0 bytes", ""},
		{"own /proc", "/cat", "/proc/self/comm", "ok fn", ""},
		{"root read-only", "/write", "/etc/os-release", "err", "read-only file system"},
		{"new file in root", "/write", "/evil", "err", "read-only file system"},
		{"/tmp writable", "/write", "/tmp/fine", "ok", ""},
		{"dangling link", "/read", "/etc/dangling", "err", "no such file"},
		{"unprivileged", "/status", "", "ok", "Uid:\t65534\t65534\t65534\t65534"},
		{"no capabilities", "/status", "", "ok", "CapEff:\t0000000000000000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := call(t, inst, http.MethodGet, c.path, "arg="+c.arg, "")
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			got := string(resp.Body)
			if !strings.HasPrefix(got, c.want) || !strings.Contains(got, c.contains) {
				t.Errorf("got %q, want %q… containing %q", got, c.want, c.contains)
			}
			if len(hostRelease) > 0 && strings.Contains(got, string(hostRelease)) {
				t.Errorf("the function sees the host's /etc/os-release")
			}
		})
	}

	// One tree per tarball content, shared; removed with its last user.
	trees := func() []string {
		ents, _ := os.ReadDir(filepath.Join(d.cfg.StateDir, "rootfs"))
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got := trees(); len(got) != 1 || len(got[0]) != 64 {
		t.Fatalf("rootfs trees %v, want one named by its sha256", got)
	}
	other := t.TempDir()
	writeImage(t, other, "image.tar.gz", testImage(t)...)
	spec2 := imageSpec(other)
	spec2.Function = "image-too"
	if err := d.Prepare(context.Background(), spec2); err != nil {
		t.Fatal(err)
	}
	if got := trees(); len(got) != 1 {
		t.Errorf("the same tarball twice gave trees %v", got)
	}
	d.Forget(spec2)
	d.Forget(spec)
	if got := trees(); len(got) != 1 {
		t.Errorf("a tree in use by a live sandbox was removed: %v", got)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := trees(); len(got) != 0 {
		t.Errorf("trees %v left after every version was forgotten and stopped", got)
	}
	// A version started again extracts it again.
	inst = startT(t, d, spec)
	if resp, err := call(t, inst, http.MethodGet, "/cat", "arg=/etc/os-release", ""); err != nil || !strings.Contains(string(resp.Body), imageOSRelease) {
		t.Errorf("after re-extraction: %v %q", err, respBody(resp))
	}
}

// TestRootFSRejected: hostile or unusable tarballs fail Prepare (the deploy)
// with ErrInvalidArtifact naming rootfs, write nothing outside the driver's
// extraction directory, and leave no partial tree.
func TestRootFSRejected(t *testing.T) {
	d := newTestDriver(t, Config{RootFSLimits: artifact.RootFSLimits{MaxBytes: 8 << 20}})
	sentinel := t.TempDir()
	small := []imageEntry{{name: "etc/os-release", body: imageOSRelease, mode: 0o644}}
	list := func() map[string]bool {
		ents, _ := os.ReadDir(filepath.Join(d.cfg.StateDir, "rootfs"))
		out := map[string]bool{}
		for _, e := range ents {
			out[e.Name()] = true
		}
		return out
	}
	for _, c := range []struct {
		name    string
		entries []imageEntry
		command string
		want    string
	}{
		{"dot dot escape", append(small, imageEntry{name: "../../escaped", body: "x"}), "", `".." is not allowed`},
		{"absolute name", append(small, imageEntry{name: sentinel + "/abs", body: "x"}), "", "absolute paths are not allowed"},
		{"write through a symlink", append(small, imageEntry{name: "out", link: sentinel}, imageEntry{name: "out/pwned", body: "x"}), "", `"out" is a symbolic link`},
		{"device node", append(small, imageEntry{name: "dev/", mode: 0o755}, imageEntry{name: "dev/mem", dev: true}), "", "device and fifo entries are not allowed"},
		{"oversized", append(small, imageEntry{name: "big", body: strings.Repeat("x", 9<<20)}), "", "unpacks to more than 8388608 bytes"},
		{"mount point is a link", append(small, imageEntry{name: "tmp", link: sentinel}), "", "/tmp is a symbolic link"},
		{"mount point is a file", append(small, imageEntry{name: "proc", body: "x"}), "", "/proc is not a directory"},
		{"command not in the image", small, "/usr/bin/python3", "/usr/bin/python3 does not exist in the root file system"},
		{"installed command not in the image", small, "python3", `"python3" is not installed`},
		{"not a tarball", nil, "", "not a tar archive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.entries == nil {
				writeScript(t, dir, "image.tar.gz", "#!/bin/sh\n")
			} else {
				writeImage(t, dir, "image.tar.gz", c.entries...)
			}
			spec := imageSpec(dir)
			if c.command != "" {
				spec.Command = []string{c.command}
			}
			before := list()
			err := d.Prepare(context.Background(), spec)
			if !errors.Is(err, driver.ErrInvalidArtifact) || !strings.Contains(err.Error(), "rootfs") && c.command == "" || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Prepare: %v, want ErrInvalidArtifact naming rootfs and saying %q", err, c.want)
			}
			if _, err := d.Start(context.Background(), spec); !errors.Is(err, driver.ErrInvalidArtifact) {
				t.Errorf("Start: %v, want ErrInvalidArtifact", err)
			}
			if ents, _ := os.ReadDir(sentinel); len(ents) != 0 {
				t.Errorf("wrote outside the extraction directory: %v", ents)
			}
			for _, p := range []string{filepath.Join(d.cfg.StateDir, "escaped"), filepath.Join(d.cfg.StateDir, "rootfs", "escaped")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			for name := range list() {
				if !before[name] && (c.command == "" || strings.HasPrefix(name, ".")) {
					t.Errorf("left %s in the rootfs directory", name)
				}
			}
		})
	}
	t.Run("missing tarball", func(t *testing.T) {
		spec := imageSpec(t.TempDir())
		if err := d.Prepare(context.Background(), spec); !errors.Is(err, driver.ErrInvalidArtifact) || !strings.Contains(err.Error(), "rootfs: image.tar.gz is not in the function directory") {
			t.Errorf("Prepare: %v", err)
		}
	})
}

// TestRootFSStaleExtraction: a tree a crash left half-extracted is never
// used, and a new driver removes it.
func TestRootFSStaleExtraction(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	stale := filepath.Join(state, "rootfs", ".tmp-999999999-abc")
	if err := os.MkdirAll(filepath.Join(stale, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, Config{StateDir: state})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale extraction is still there: %v", err)
	}
	dir := t.TempDir()
	writeImage(t, dir, "image.tar.gz", testImage(t)...)
	inst := startT(t, d, imageSpec(dir))
	if resp, err := call(t, inst, http.MethodGet, "/cat", "arg=/etc/os-release", ""); err != nil || !strings.Contains(string(resp.Body), imageOSRelease) {
		t.Errorf("%v %q", err, respBody(resp))
	}
}

// TestConfigRootFS: a driver-wide root directory replaces the host-based
// template for every function without a root of its own.
func TestConfigRootFS(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	dir := t.TempDir()
	writeImage(t, dir, "image.tar.gz", testImage(t)...)
	f, err := os.Open(filepath.Join(dir, "image.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = artifact.UnpackRootFS(f, root, artifact.RootFSLimits{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{StateDir: filepath.Join(t.TempDir(), "s"), RootFS: root}); err == nil || !strings.Contains(err.Error(), "/var is missing") {
		t.Fatalf("New with a root lacking its mount points: %v", err)
	}
	if err := prepareRootFS(root); err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, Config{RootFS: root})
	spec := fnSpec("abuse") // ./fn in the function directory, on the image's root
	inst := startT(t, d, spec)
	resp, err := call(t, inst, http.MethodGet, "/cat", "arg=/etc/os-release", "")
	if err != nil || string(resp.Body) != "ok "+imageOSRelease {
		t.Errorf("%v %q", err, respBody(resp))
	}
	spec.Command = []string{"python3"}
	if err := d.Prepare(context.Background(), spec); !errors.Is(err, driver.ErrInvalidArtifact) {
		t.Errorf("a host command on an imported root: %v", err)
	}
}

// TestStaleOwner: leftovers are told apart from a live process's by pid and
// start time, so a later process with the same pid cleans them up.
func TestStaleOwner(t *testing.T) {
	if staleOwner(ownerToken()) {
		t.Error("this process's own token is stale")
	}
	pid, start, _ := strings.Cut(ownerToken(), ".")
	if staleOwner(pid) {
		t.Error("this process's bare pid (earlier versions' names) is stale")
	}
	for _, tok := range []string{"", "garbage", "999999999", pid + ".1" + start, "999999999." + start} {
		if !staleOwner(tok) {
			t.Errorf("%q is not stale", tok)
		}
	}
}
