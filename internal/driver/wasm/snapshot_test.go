package wasm

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/hearthdev/hearth/internal/driver"
)

func startT(t testing.TB, d *Driver, spec driver.Spec) driver.Instance {
	t.Helper()
	inst, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })
	return inst
}

func invokeT(t testing.TB, inst driver.Instance, req *driver.Request) *driver.Response {
	t.Helper()
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	resp, err := inst.Invoke(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// A reactor instance is reused, but every request starts from the snapshot:
// a counter in Go memory reads 1 every time.
func TestSnapshotIsolatesRequests(t *testing.T) {
	d := newTestDriver(t)
	inst := startT(t, d, guestSpec(t, guests.guestReactor, "counter"))
	for n := range 20 {
		resp := invokeT(t, inst, &driver.Request{Path: "/"})
		if got := string(resp.Body); got != "1" {
			t.Fatalf("request %d: counter = %q, want 1 (state leaked between requests)", n, got)
		}
		if want := n == 0; resp.Cold != want {
			t.Errorf("request %d: Cold = %v, want %v", n, resp.Cold, want)
		}
	}
}

// Go grows linear memory on most requests. A grown instance is reverted and
// cut back to the snapshot's size for reuse; an instance whose request failed
// is discarded and the next request restores a fresh one.
func TestSnapshotResetsGrownInstance(t *testing.T) {
	d := newTestDriver(t)
	inst := startT(t, d, guestSpec(t, guests.guestReactor, "grow"))
	resp := invokeT(t, inst, &driver.Request{Path: "/", RawQuery: "mib=0"})
	if !resp.Cold || string(resp.Body) != "1 0" {
		t.Fatalf("first request: Cold %v body %q", resp.Cold, resp.Body)
	}
	idle := inst.Usage().MemoryBytes
	if idle == 0 {
		t.Fatal("no memory accounted to the pooled instance")
	}
	// 6 x 40 MiB in a 128 MiB limit: passes only if every reset gives the
	// growth back.
	for n := range 6 {
		resp := invokeT(t, inst, &driver.Request{Path: "/", RawQuery: "mib=40"})
		if got := string(resp.Body); got != "1 40" {
			t.Errorf("request %d: body %q, want %q", n, got, "1 40")
		}
		if resp.Cold {
			t.Errorf("request %d: Cold, want a reused instance", n)
		}
		if got := inst.Usage().MemoryBytes; got != idle {
			t.Errorf("request %d: idle instance holds %d bytes, want the snapshot's %d", n, got, idle)
		}
	}
	if _, err := inst.Invoke(context.Background(), &driver.Request{Method: "GET", Path: "/", RawQuery: "crash=1"}); !errors.Is(err, driver.ErrCrashed) {
		t.Fatalf("crash request: err = %v, want ErrCrashed", err)
	}
	if got := inst.Usage().MemoryBytes; got != 0 {
		t.Errorf("after a crash the instance still holds %d bytes; the crashed module instance should be gone", got)
	}
	resp = invokeT(t, inst, &driver.Request{Path: "/", RawQuery: "mib=1"})
	if !resp.Cold || string(resp.Body) != "1 1" {
		t.Errorf("after a crash: Cold %v body %q, want a fresh restore answering %q", resp.Cold, resp.Body, "1 1")
	}
}

// Command modules run each request from a fresh state (a reused instance
// reverted after each request); only the first invocation of an Instance,
// which instantiates the module, is reported cold.
func TestCommandColdOnlyFirst(t *testing.T) {
	d := newTestDriver(t)
	inst := startT(t, d, guestSpec(t, guests.guest, "counter"))
	for n := range 3 {
		resp := invokeT(t, inst, &driver.Request{Path: "/"})
		if string(resp.Body) != "1" {
			t.Errorf("request %d: counter = %q, want 1", n, resp.Body)
		}
		if want := n == 0; resp.Cold != want {
			t.Errorf("request %d: Cold = %v, want %v", n, resp.Cold, want)
		}
	}
}
