//go:build linux

package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

var updateInit = flag.Bool("update-init", false, "rebuild the embedded init binaries (go generate)")

// initArches are the architectures with an embedded init (init_embed_*.go).
var initArches = []string{"amd64", "arm64"}

// initSourceHash hashes the init's sources (Go and assembly of package
// sbinit and the initbin command, tests excluded).
func initSourceHash(t *testing.T) string {
	h := sha256.New()
	for _, dir := range []string{"sbinit", "initbin"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		asm, _ := filepath.Glob(filepath.Join(dir, "*.s"))
		files = append(files, asm...)
		sort.Strings(files)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(f), len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// buildInit builds the init for arch, reproducibly, into dir.
func buildInit(t *testing.T, arch, dir string) string {
	out := filepath.Join(dir, "hearth-init.linux-"+arch)
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath",
		"-ldflags=-s -w -buildid=", "-o", out, "./initbin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the init for %s: %v\n%s", arch, err, o)
	}
	return out
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestInitBinaryUpToDate checks that the embedded init binaries were built
// from the current sources (go generate ./internal/driver/sandbox rebuilds
// them). The manifest records the toolchain, the sources' hash and each
// binary's hash; with the same toolchain the binaries are rebuilt and must
// be identical (the build is reproducible).
func TestInitBinaryUpToDate(t *testing.T) {
	manifest := filepath.Join("initbin", "manifest")
	src := initSourceHash(t)
	if *updateInit {
		lines := []string{"toolchain " + runtime.Version(), "source " + src}
		for _, arch := range initArches {
			b, err := os.ReadFile(buildInit(t, arch, "initbin"))
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, "hearth-init.linux-"+arch+" "+sum(b))
		}
		if err := os.WriteFile(manifest, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatalf("%v: run go generate ./internal/driver/sandbox", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		m[k] = v
	}
	if m["source"] != src {
		t.Fatalf("the init's sources changed since its binaries were built: run go generate ./internal/driver/sandbox")
	}
	for _, arch := range initArches {
		name := "hearth-init.linux-" + arch
		b, err := os.ReadFile(filepath.Join("initbin", name))
		if err != nil {
			t.Fatal(err)
		}
		if sum(b) != m[name] {
			t.Errorf("%s does not match the manifest: run go generate ./internal/driver/sandbox", name)
		}
		if arch == runtime.GOARCH && !bytes.Equal(b, initBinary) {
			t.Errorf("the embedded init differs from %s", name)
		}
	}
	if m["toolchain"] != runtime.Version() {
		t.Skipf("init built with %s, testing with %s: not rebuilding to compare", m["toolchain"], runtime.Version())
	}
	dir := t.TempDir()
	for _, arch := range initArches {
		b, err := os.ReadFile(buildInit(t, arch, dir))
		if err != nil {
			t.Fatal(err)
		}
		if sum(b) != m["hearth-init.linux-"+arch] {
			t.Errorf("rebuilding the %s init gives a different binary: run go generate ./internal/driver/sandbox", arch)
		}
	}
}

// TestReexecInit runs a sandbox with the fallback init (this binary
// re-executed through MaybeRunInit), used where no init is embedded.
func TestReexecInit(t *testing.T) {
	d := newTestDriver(t, Config{reexecInit: true})
	inst := startT(t, d, fnSpec("hello"))
	resp, err := call(t, inst, "GET", "/", "", "")
	if err != nil || string(resp.Body) != "hello" {
		t.Fatalf("%v %q", err, respBody(resp))
	}
}
