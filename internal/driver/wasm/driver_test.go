package wasm

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

func exampleSpec(t testing.TB, dir, module string) driver.Spec {
	t.Helper()
	spec := guestSpec(t, filepath.Join(dir, module), "")
	spec.Function = filepath.Base(dir)
	spec.Env = nil
	return spec
}

// checkEcho exercises a module implementing conformance.Echo.
func checkEcho(t *testing.T, inst driver.Instance) {
	t.Helper()
	body := bytes.Repeat([]byte("echo-c "), 20000)
	resp, err := inst.Invoke(context.Background(), &driver.Request{
		Method: http.MethodPost, Path: "/some/path", RawQuery: "x=1&y=two",
		Header: http.Header{"X-Test": {"yes"}, "Content-Type": {"application/x-test"}}, Body: body,
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK || !bytes.Equal(resp.Body, body) {
		t.Fatalf("status %d, %d body bytes (want 200, %d echoed)", resp.Status, len(resp.Body), len(body))
	}
	for h, want := range map[string]string{"X-Echo-Method": "POST", "X-Echo-Path": "/some/path", "X-Echo-Query": "x=1&y=two", "X-Echo-Test": "yes", "Content-Type": "application/x-test"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
}

// The checked-in C example runs as is.
func TestEchoCExample(t *testing.T) {
	d := newTestDriver(t)
	spec := exampleSpec(t, filepath.Join(repoRoot(), "examples", "echo-c"), "echo.wasm")
	checkEcho(t, startT(t, d, spec))
}

// Rebuilding the C example from source gives a module that behaves the same.
func TestEchoCRebuild(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)")
	}
	out := filepath.Join(t.TempDir(), "echo.wasm")
	cmd := exec.Command("sh", filepath.Join(repoRoot(), "examples", "echo-c", "build.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	d := newTestDriver(t)
	checkEcho(t, startT(t, d, exampleSpec(t, filepath.Dir(out), "echo.wasm")))
}

// examples/hello-go behaves as documented, built either way.
func TestHelloExample(t *testing.T) {
	d := newTestDriver(t)
	for name, module := range map[string]string{"command": guests.hello, "reactor": guests.helloReactor} {
		t.Run(name, func(t *testing.T) {
			spec := exampleSpec(t, filepath.Dir(module), filepath.Base(module))
			spec.Env = map[string]string{"GREETING": "Bonjour"}
			inst := startT(t, d, spec)
			resp := invokeT(t, inst, &driver.Request{Path: "/"})
			if got, want := string(resp.Body), "Hello from Hearth!\nBonjour\n"; got != want {
				t.Errorf("GET: %q, want %q", got, want)
			}
			resp = invokeT(t, inst, &driver.Request{Method: http.MethodPost, Path: "/", Body: []byte(`{"a":1}`),
				Header: http.Header{"Content-Type": {"application/json"}}})
			if string(resp.Body) != `{"a":1}` || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("POST: %q (%s)", resp.Body, resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestInvalidArtifacts(t *testing.T) {
	d := newTestDriver(t)
	// A module importing a function Hearth does not provide:
	// (module (import "env" "foo" (func)))
	unknownImport := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0, // type section: () -> ()
		2, 11, 1, 3, 'e', 'n', 'v', 3, 'f', 'o', 'o', 0, 0} // import env.foo func 0
	// (module) with no exports at all.
	empty := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	for _, c := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"text", []byte("#!/bin/sh\necho hi\n"), "not a WebAssembly module"},
		{"truncated", append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, 1, 10, 1), "unexpected end"},
		{"garbage", []byte{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 3, 0xff, 0xff, 0xff}, "module hello.wasm"},
		{"unknown import", unknownImport, "imports env.foo"},
		{"no entry point", empty, "exports neither _start"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "hello.wasm"), c.content, 0o644)
			spec := driver.Spec{Function: "bad", Version: 1, Dir: dir, Digest: c.name, Module: "hello.wasm", Protocol: "wagi"}
			err := d.Prepare(context.Background(), spec)
			if !errors.Is(err, driver.ErrInvalidArtifact) {
				t.Fatalf("err = %v, want ErrInvalidArtifact", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "hello.wasm") {
				t.Errorf("err = %q, want it to name hello.wasm and say %q", err, c.want)
			}
		})
	}
	spec := driver.Spec{Function: "bad", Version: 1, Dir: t.TempDir(), Module: "missing.wasm"}
	if err := d.Prepare(context.Background(), spec); !errors.Is(err, driver.ErrInvalidArtifact) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing module: err = %v", err)
	}
}

// Compiled code lands in CacheDir, and a restarted driver reuses it.
func TestCompilationCachePersists(t *testing.T) {
	dir := t.TempDir()
	spec := guestSpec(t, guests.guest, "hello")
	count := func() int {
		n := 0
		filepath.WalkDir(dir, func(_ string, e os.DirEntry, _ error) error {
			if e != nil && !e.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	prepare := func() time.Duration {
		d, err := New(Config{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close(context.Background())
		start := time.Now()
		if err := d.Prepare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	cold := prepare()
	files := count()
	if files == 0 {
		t.Fatal("nothing written to CacheDir")
	}
	warm := prepare()
	if count() != files {
		t.Errorf("restart recompiled: %d cache files, then %d", files, count())
	}
	t.Logf("prepare: %v from scratch, %v after restart", cold, warm)
}

// CGI variables come from the request; the function's env cannot fake them.
func TestUserEnvCannotOverrideCGI(t *testing.T) {
	d := newTestDriver(t)
	spec := guestSpec(t, guests.guest, "echo")
	spec.Env["REQUEST_METHOD"] = "FAKE"
	spec.Env["PATH_INFO"] = "/fake"
	resp := invokeT(t, startT(t, d, spec), &driver.Request{Method: http.MethodPut, Path: "/real"})
	if m, p := resp.Header.Get("X-Echo-Method"), resp.Header.Get("X-Echo-Path"); m != "PUT" || p != "/real" {
		t.Errorf("guest saw %s %s, want PUT /real", m, p)
	}
}

func TestStatusAndHeaders(t *testing.T) {
	d := newTestDriver(t)
	for _, module := range []string{guests.guest, guests.guestReactor} {
		resp := invokeT(t, startT(t, d, guestSpec(t, module, "status")), &driver.Request{Path: "/"})
		if resp.Status != http.StatusTeapot || resp.Header.Get("Location") != "/elsewhere" {
			t.Errorf("%s: status %d, Location %q", module, resp.Status, resp.Header.Get("Location"))
		}
	}
}

// Without AllowFiles a guest sees no filesystem; with it, the function's
// directory, read-only, at "/".
func TestFiles(t *testing.T) {
	d := newTestDriver(t)
	dir := t.TempDir()
	wasm, _ := os.ReadFile(guests.guest)
	os.WriteFile(filepath.Join(dir, "guest.wasm"), wasm, 0o644)
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("file contents"), 0o644)
	spec := guestSpec(t, filepath.Join(dir, "guest.wasm"), "file")

	resp := invokeT(t, startT(t, d, spec), &driver.Request{Path: "/", RawQuery: "name=/data.txt"})
	if resp.Status != http.StatusNotFound {
		t.Errorf("without AllowFiles: status %d body %q, want 404", resp.Status, resp.Body)
	}
	spec.AllowFiles = true
	resp = invokeT(t, startT(t, d, spec), &driver.Request{Path: "/", RawQuery: "name=/data.txt"})
	if string(resp.Body) != "file contents" {
		t.Errorf("with AllowFiles: status %d body %q", resp.Status, resp.Body)
	}
}

// Forget releases compiled code once instances are gone; a later Start
// compiles again.
func TestForget(t *testing.T) {
	d := newTestDriver(t)
	spec := guestSpec(t, guests.guestReactor, "hello")
	inst, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	d.Forget(spec)
	invokeT(t, inst, &driver.Request{Path: "/"}) // still serves
	inst.Stop(context.Background())
	if n := d.live.Load(); n != 0 {
		t.Errorf("%d memories mapped after Stop", n)
	}
	invokeT(t, startT(t, d, spec), &driver.Request{Path: "/"})
}
