//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// bins holds the directories of the test functions built by TestMain; each
// directory is a function's Spec.Dir.
var bins struct {
	root    string
	fn      string // testdata/fn, as ./fn
	goHTTP  string // examples/go-http, as ./server
	lambda  string // examples/go-lambda, as ./bootstrap
	buildOK error
}

func TestMain(m *testing.M) {
	MaybeRunInit()
	code := func() int {
		dir, err := os.MkdirTemp("", "hearth-sandbox-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bins.root = dir
		bins.buildOK = buildFunctions(dir)
		return m.Run()
	}()
	os.Exit(code)
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

// buildFunctions builds the Go test functions as static binaries, each in
// its own world-readable directory.
func buildFunctions(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, b := range []struct {
		dst  *string
		pkg  string
		name string
	}{
		{&bins.fn, "./internal/driver/sandbox/testdata/fn", "fn"},
		{&bins.goHTTP, "./examples/go-http", "server"},
		{&bins.lambda, "./examples/go-lambda", "bootstrap"},
	} {
		if _, err := os.Stat(filepath.Join(repoRoot(), b.pkg)); err != nil {
			continue
		}
		out := filepath.Join(dir, filepath.Base(b.pkg))
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", filepath.Join(out, b.name), b.pkg)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, o)
		}
		*b.dst = out
	}
	return nil
}

// newTestDriver returns a driver closed (and checked for leaks) at the end
// of the test, or skips the test when the host cannot run sandboxes.
func newTestDriver(t testing.TB, cfg Config) *Driver {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandbox tests need root (namespaces, cgroups, mounts); CI runs them as root")
	}
	if bins.buildOK != nil {
		t.Fatalf("building test functions: %v", bins.buildOK)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(bins.root, "state")
	}
	d, err := New(cfg)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("sandbox driver unsupported here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := waitNoLeaks(d, 5*time.Second); err != nil {
			t.Errorf("after Close: %v", err)
		}
	})
	return d
}

// fnSpec returns a spec running testdata/fn with the given behaviour.
func fnSpec(behaviour string) driver.Spec {
	return driver.Spec{
		Function:    "fn-" + behaviour,
		Version:     1,
		Dir:         bins.fn,
		Protocol:    "http",
		Command:     []string{"./fn", behaviour},
		MemoryBytes: 64 << 20,
		Timeout:     10 * time.Second,
		Concurrency: 1,
		Env:         map[string]string{},
	}
}

// leaks reports sandbox processes (children of this process), cgroups and
// mounts still present.
func leaks(d *Driver) error {
	if err := d.Leaks(); err != nil {
		return err
	}
	if n := childProcesses(); n > 0 {
		return fmt.Errorf("%d sandbox processes still running: %s", n, childList())
	}
	return nil
}

func waitNoLeaks(d *Driver, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := leaks(d)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childProcesses counts this process's children (sandbox inits).
func childProcesses() int {
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == self {
			n++
		}
	}
	return n
}

// writeScript writes an executable file into a world-readable dir.
func writeScript(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func childList() string {
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == self {
			out = append(out, strings.TrimSpace(s))
		}
	}
	return strings.Join(out, "; ")
}
