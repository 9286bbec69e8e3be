package wasm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/driver"
)

// A command module without file access is served by a reused instance
// reverted to its post-instantiation state: a counter in Go memory reads 1
// on every request, and only the first request instantiates.
func TestCommandReuseIsolatesRequests(t *testing.T) {
	d := newTestDriver(t)
	inst := startT(t, d, guestSpec(t, guests.guest, "counter"))
	for n := range 50 {
		resp := invokeT(t, inst, &driver.Request{Path: "/"})
		if got := string(resp.Body); got != "1" {
			t.Fatalf("request %d: counter = %q, want 1 (state leaked between requests)", n, got)
		}
		if want := n == 0; resp.Cold != want {
			t.Fatalf("request %d: Cold = %v, want %v", n, resp.Cold, want)
		}
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := mappingLeaks(d)(); err != nil {
		t.Error(err)
	}
}

// A reused command instance gives back the memory a request grew; a
// request that crashes discards its instance and does not affect the next.
func TestCommandReuseAfterGrowthAndCrash(t *testing.T) {
	d := newTestDriver(t)
	inst := startT(t, d, guestSpec(t, guests.guest, "grow"))
	resp := invokeT(t, inst, &driver.Request{Path: "/", RawQuery: "mib=0"})
	if !resp.Cold || string(resp.Body) != "1 0" {
		t.Fatalf("first request: Cold %v body %q", resp.Cold, resp.Body)
	}
	idle := inst.Usage().MemoryBytes
	if idle == 0 {
		t.Fatal("no memory accounted to the pooled instance")
	}
	for round := range 3 {
		// 4 x 40 MiB in a 128 MiB limit: passes only if every reset
		// gives the growth back.
		for n := range 4 {
			resp := invokeT(t, inst, &driver.Request{Path: "/", RawQuery: "mib=40"})
			if got := string(resp.Body); got != "1 40" {
				t.Errorf("round %d request %d: body %q, want %q", round, n, got, "1 40")
			}
			if want := round > 0 && n == 0; resp.Cold != want {
				t.Errorf("round %d request %d: Cold = %v, want %v", round, n, resp.Cold, want)
			}
			if got := inst.Usage().MemoryBytes; got != idle {
				t.Errorf("round %d request %d: idle instance holds %d bytes, want %d", round, n, got, idle)
			}
		}
		_, err := inst.Invoke(context.Background(), &driver.Request{Method: "GET", Path: "/", RawQuery: "crash=1"})
		if !errors.Is(err, driver.ErrCrashed) {
			t.Fatalf("round %d: crash request: err = %v, want ErrCrashed", round, err)
		}
		if got := inst.Usage().MemoryBytes; got != 0 {
			t.Errorf("round %d: after a crash the instance still holds %d bytes", round, got)
		}
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := mappingLeaks(d)(); err != nil {
		t.Error(err)
	}
}

// A C command on the reuse path: static state is reverted, stdout closed by
// the guest does not carry over, and a non-zero exit discards the instance.
func TestCommandReuseC(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed")
	}
	src := filepath.Join(t.TempDir(), "reuse.c")
	if err := os.WriteFile(src, []byte(`#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int counter;
static char buf[64] = "pristine";
int main(void) {
	const char *q = getenv("QUERY_STRING");
	if (!q) q = "";
	counter++;
	printf("Content-Type: text/plain\n\n%d %s", counter, buf);
	strcpy(buf, "dirty");
	if (strcmp(q, "close") == 0) {
		fflush(stdout);
		fclose(stdout);
	}
	if (strcmp(q, "fail") == 0) exit(3);
	if (strcmp(q, "exit") == 0) exit(0);
	return 0;
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(src), "reuse.wasm")
	args := []string{"--target=wasm32-wasi", "-O2", "-o", out, src}
	for _, d := range []string{"/usr/share/wasi-sysroot", "/usr/lib/wasi-sysroot", "/opt/wasi-sdk/share/wasi-sysroot"} {
		if _, err := os.Stat(d); err == nil {
			args = append([]string{"--sysroot=" + d}, args...)
			break
		}
	}
	if b, err := exec.Command("clang", args...).CombinedOutput(); err != nil {
		t.Skipf("cannot build a C guest: %v\n%s", err, b)
	}
	d := newTestDriver(t)
	inst := startT(t, d, exampleSpec(t, filepath.Dir(out), "reuse.wasm"))
	for n, c := range []struct {
		query string
		cold  bool
		err   error
	}{
		{"", true, nil},
		{"", false, nil},
		{"exit", false, nil},
		{"", false, nil},
		{"close", false, nil},
		{"", true, nil}, // the instance that closed stdout was discarded
		{"fail", false, driver.ErrCrashed},
		{"", true, nil},
		{"", false, nil},
	} {
		resp, err := inst.Invoke(context.Background(), &driver.Request{Method: "GET", Path: "/", RawQuery: c.query})
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Fatalf("request %d (%q): err = %v, want %v", n, c.query, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d (%q): %v", n, c.query, err)
		}
		if got := string(resp.Body); got != "1 pristine" {
			t.Errorf("request %d (%q): body %q, want %q", n, c.query, got, "1 pristine")
		}
		if resp.Cold != c.cold {
			t.Errorf("request %d (%q): Cold = %v, want %v", n, c.query, resp.Cold, c.cold)
		}
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := mappingLeaks(d)(); err != nil {
		t.Error(err)
	}
}

// With file access a command keeps a fresh instance per request.
func TestCommandWithFilesIsNotReused(t *testing.T) {
	d := newTestDriver(t)
	spec := guestSpec(t, guests.guest, "counter")
	spec.AllowFiles = true
	inst := startT(t, d, spec)
	for n := range 3 {
		resp := invokeT(t, inst, &driver.Request{Path: "/"})
		if string(resp.Body) != "1" {
			t.Errorf("request %d: counter = %q, want 1", n, resp.Body)
		}
	}
	if got := inst.Usage().MemoryBytes; got != 0 {
		t.Errorf("idle instance holds %d bytes; with files no module instance should be kept", got)
	}
}
