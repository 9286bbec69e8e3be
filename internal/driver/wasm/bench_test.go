package wasm

import (
	"context"
	"net/http"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/hearthdev/hearth/internal/driver"
)

// The two benchmarks serve the same source, examples/hello-go: as a WASI
// command (a reused, reverted instance and a Go runtime start per request) and as
// a reactor (an instance restored from the post-initialisation snapshot and
// reverted after each request). Compare with:
//
//	go test -run '^$' -bench Hello ./internal/driver/wasm
func BenchmarkHelloCommand(b *testing.B) { benchHello(b, guests.hello) }

func BenchmarkHelloSnapshot(b *testing.B) { benchHello(b, guests.helloReactor) }

func benchHello(b *testing.B, module string) {
	d := newTestDriver(b)
	spec := guestSpec(b, module, "")
	spec.Function = "hello"
	spec.MemoryBytes = 64 << 20
	spec.Concurrency = runtime.GOMAXPROCS(0)
	inst := startT(b, d, spec)
	invokeT(b, inst, &driver.Request{Path: "/"}) // warm: compile, snapshot
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := inst.Invoke(context.Background(), &driver.Request{Method: http.MethodGet, Path: "/"})
			if err != nil {
				b.Error(err)
				return
			}
			if resp.Status != http.StatusOK || len(resp.Body) == 0 {
				b.Errorf("status %d body %q", resp.Status, resp.Body)
				return
			}
		}
	})
}

// BenchmarkEchoC is the tiny C module (examples/echo-c): the per-request
// cost is little more than reverting the reused instance (command.go), which
// is what the gateway's warm path pays for small WASI modules.
func BenchmarkEchoC(b *testing.B) {
	d := newTestDriver(b)
	spec := exampleSpec(b, filepath.Join(repoRoot(), "examples", "echo-c"), "echo.wasm")
	spec.Concurrency = runtime.GOMAXPROCS(0)
	inst := startT(b, d, spec)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := inst.Invoke(context.Background(), &driver.Request{Method: http.MethodGet, Path: "/"})
			if err != nil || resp.Status != http.StatusOK {
				b.Errorf("%v %v", resp, err)
				return
			}
		}
	})
}
