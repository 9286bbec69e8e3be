//go:build linux

package sandbox

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestPool: instances start from pre-built sandboxes, the pool refills, and
// Close releases pooled sandboxes too.
func TestPool(t *testing.T) {
	d := newTestDriver(t, Config{Pool: 2})
	for range 4 {
		deadline := time.Now().Add(10 * time.Second)
		for len(d.pool) < cap(d.pool) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		inst := startT(t, d, fnSpec("hello"))
		resp, err := call(t, inst, http.MethodGet, "/", "", "")
		if err != nil || string(resp.Body) != "hello" {
			t.Fatalf("pooled instance: %v %q", err, respBody(resp))
		}
		inst.Stop(context.Background())
	}
}
