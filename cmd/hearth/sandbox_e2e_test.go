package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildSandboxFn builds the sandbox driver's test function (a static Go
// program whose first argument picks its behaviour) and returns its bytes.
func buildSandboxFn(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "fn")
	cmd := exec.Command("go", "build", "-o", out, "./internal/driver/sandbox/testdata/fn")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sandbox test function: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imageTar is a gzip'd tar of a root file system; a name ending in / is a
// directory, a body starting with "-> " a symbolic link, "dev" a device.
func imageTar(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		name, body := e[0], e[1]
		h := &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(body))}
		switch {
		case strings.HasSuffix(name, "/"):
			h.Typeflag, h.Size = tar.TypeDir, 0
		case strings.HasPrefix(body, "-> "):
			h.Typeflag, h.Linkname, h.Size, body = tar.TypeSymlink, body[3:], 0, ""
		case body == "dev":
			h.Typeflag, h.Devmajor, h.Devminor, h.Size, body = tar.TypeChar, 1, 1, 0, ""
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestSandboxRootFSAndGracefulStop: a sandbox function deployed with its
// own root file system (rootfs:) sees the image and not the host; hostile
// images and rootfs on wasm are refused at deploy with 400 naming rootfs;
// `hearth rm` stops the function gracefully (SIGTERM, its clean-up runs) and
// removes the extracted tree.
func TestSandboxRootFSAndGracefulStop(t *testing.T) {
	sandboxAvailable(t)
	n := startNode(t, t.TempDir(), "--sandbox-pool", "0")
	fn := buildSandboxFn(t)
	const osRelease = "ID=hearth-e2e-image\n"
	image := [][2]string{{"usr/bin/fn", string(fn)}, {"bin", "-> usr/bin"}, {"etc/os-release", osRelease}}

	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "image.tar.gz"), imageTar(t, image), 0o644)
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte("name: imaged\nisolation: sandbox\ncommand: [\"/bin/fn\", \"abuse\"]\nrootfs: image.tar.gz\nmemory: 64Mi\n"), 0o644)
	if out, err := n.cli("deploy", dir); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	for path, want := range map[string]string{
		"/fn/imaged/cat?arg=/etc/os-release":   "ok " + osRelease,
		"/fn/imaged/read?arg=/usr/bin/python3": "err",
		"/fn/imaged/ls?arg=/usr/bin":           "ok fn",
	} {
		resp, body := n.do("GET", path, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), want) {
			t.Errorf("GET %s: %d %q, want %q…", path, resp.StatusCode, body, want)
		}
	}
	trees := func() int {
		ents, _ := os.ReadDir(filepath.Join(n.data, "sandbox", "rootfs"))
		return len(ents)
	}
	if trees() != 1 {
		t.Errorf("%d extracted trees, want 1", trees())
	}

	for _, c := range []struct {
		name, manifest string
		image          [][2]string
		want           string
	}{
		{"escape", "", append(image, [2]string{"../../escaped", "x"}), `".." is not allowed`},
		{"write through a link", "", append(image, [2]string{"out", "-> /tmp"}, [2]string{"out/pwned", "x"}), "symbolic link"},
		{"device", "", append(image, [2]string{"dev/", ""}, [2]string{"dev/mem", "dev"}), "device"},
		{"mount point link", "", append(image, [2]string{"tmp", "-> /etc"}), "/tmp is a symbolic link"},
		{"wasm", "name: bad\nisolation: wasm\nmodule: x.wasm\nrootfs: image.tar.gz\n", image, "only for sandbox functions"},
		{"not a tar", "name: bad\nisolation: sandbox\ncommand: [/bin/fn]\nrootfs: image.zip\n", image, "not a tar archive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			man := c.manifest
			if man == "" {
				man = "name: bad\nisolation: sandbox\ncommand: [/bin/fn]\nrootfs: image.tar.gz\n"
			}
			files := map[string]string{"hearth.yaml": man, "image.tar.gz": string(imageTar(t, c.image)), "x.wasm": "\x00asm\x01\x00\x00\x00"}
			resp, body := n.do("PUT", "/v1/functions/bad", bytes.NewReader(tarGz(t, files, nil)), "Content-Type", "application/gzip")
			e := errCode(t, body)
			if resp.StatusCode != 400 || !strings.Contains(e.Message, "rootfs") || !strings.Contains(e.Message, c.want) {
				t.Fatalf("got %d %s, want 400 naming rootfs and saying %q", resp.StatusCode, body, c.want)
			}
			t.Logf("%d %s: %s", resp.StatusCode, e.Code, e.Message)
		})
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("a hostile image wrote /tmp/pwned")
	}
	if trees() != 1 {
		t.Errorf("%d extracted trees after the refused deploys, want 1", trees())
	}

	// Graceful stop through hearth rm: the function cleans up on SIGTERM.
	gdir := t.TempDir()
	os.Chmod(gdir, 0o755)
	os.WriteFile(filepath.Join(gdir, "fn"), fn, 0o755)
	os.WriteFile(filepath.Join(gdir, "hearth.yaml"), []byte("name: graceful\nisolation: sandbox\ncommand: [\"./fn\", \"term-cleanup\"]\nmemory: 64Mi\n"), 0o644)
	if out, err := n.cli("deploy", gdir); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if resp, body := n.do("GET", "/fn/graceful/", nil); resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	for _, name := range []string{"graceful", "imaged"} {
		if out, err := n.cli("rm", name); err != nil {
			t.Fatalf("rm %s: %v\n%s", name, err, out)
		}
	}
	waitUntilFor(t, "the clean-up in the logs", 20*time.Second, func() bool {
		out, _ := n.cli("logs", "graceful")
		return strings.Contains(out, "fn: got SIGTERM") && strings.Contains(out, "fn: clean-up done")
	})
	waitUntilFor(t, "the extracted tree removed", 20*time.Second, func() bool { return trees() == 0 })
	pid := n.cmd.Process.Pid
	waitUntilFor(t, "no sandbox left", 20*time.Second, func() bool {
		return len(children(pid)) == 0 && cgroupsOf(pid) == 0
	})
	if t.Failed() {
		fmt.Println(n.stderr.String())
	}
}

// sandboxInits returns the pids of the sandbox inits whose parent is pid.
func sandboxInits(pid int) []int {
	var inits []int
	for _, p := range children(pid) {
		if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline"); bytes.HasPrefix(cmdline, []byte("hearth-sandbox-init")) {
			inits = append(inits, p)
		}
	}
	return inits
}

// A node killed with SIGKILL takes its sandboxes with it: warm instances
// and pooled empty sandboxes alike (their inits die with their parent).
func TestKilledNodeLeavesNoSandbox(t *testing.T) {
	sandboxAvailable(t)
	n := startNode(t, t.TempDir())
	if out, err := n.cli("deploy", goHTTPDir(t, "orphan", "")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if resp, body := n.do("GET", "/fn/orphan/", nil); resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	pid := n.cmd.Process.Pid
	inits := sandboxInits(pid)
	if len(inits) == 0 {
		t.Fatal("no sandbox init is a child of the node")
	}
	n.stop(syscall.SIGKILL)
	waitUntil(t, "the killed node's sandboxes gone", func() bool {
		for _, p := range inits {
			if _, err := os.Stat("/proc/" + strconv.Itoa(p)); err == nil {
				return false
			}
		}
		return true
	})
	// Their (empty) cgroups go when a node starts again.
	cgroups := func() []string {
		var dirs []string
		for _, parent := range []string{"/sys/fs/cgroup/pids/hearth", "/sys/fs/cgroup/hearth"} { // v1, v2
			d, _ := filepath.Glob(filepath.Join(parent, strconv.Itoa(pid)+".*"))
			dirs = append(dirs, d...)
		}
		return dirs
	}
	if len(cgroups()) == 0 {
		t.Fatal("the killed node's sandboxes had no cgroups to find")
	}
	startNode(t, n.data)
	waitUntil(t, "the killed node's cgroups removed by the next start", func() bool { return len(cgroups()) == 0 })
}
