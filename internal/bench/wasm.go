package bench

import (
	"bytes"
	"sync"
	"sync/atomic"

	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"time"

	"github.com/hearthdev/hearth/internal/client"
	"github.com/hearthdev/hearth/internal/demo"
	"github.com/hearthdev/hearth/internal/driver/sandbox"
	"github.com/hearthdev/hearth/internal/server"
)

// env is a Hearth node started in-process for the benchmarks, with the
// example functions built.
type env struct {
	cfg     Config
	src     string // extracted sources (a Go module)
	dataDir string
	node    server.Config // settings of this node beyond the common ones
	addr    string
	key     string
	cl      *client.Client
	stop    func()
	sandbox bool // the node runs the sandbox tier
}

func newEnv(ctx context.Context, cfg Config) (*env, error) {
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	src, err := demo.Extract(cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	return startNode(ctx, cfg, src, server.Config{})
}

// startNode runs a node with a data directory of its own and the settings
// of node beyond the common ones.
func startNode(ctx context.Context, cfg Config, src string, node server.Config) (*env, error) {
	data, err := os.MkdirTemp(cfg.WorkDir, "node-")
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, src: src, dataDir: data, node: node}
	if err := e.start(ctx); err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	return e, nil
}

// start runs a node on e.dataDir and waits until it is ready.
func (e *env) start(ctx context.Context) error {
	nctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		sc := e.node
		sc.Listen, sc.DataDir, sc.Logger = "127.0.0.1:0", e.dataDir, e.cfg.Logger
		sc.Ready = func(addr string) { ready <- addr }
		done <- server.Run(nctx, sc)
	}()
	select {
	case e.addr = <-ready:
	case err := <-done:
		cancel()
		return fmt.Errorf("starting node: %w", err)
	case <-time.After(60 * time.Second):
		cancel()
		return fmt.Errorf("node did not become ready in 60 s")
	}
	e.stop = func() {
		cancel()
		<-done
	}
	key, err := os.ReadFile(filepath.Join(e.dataDir, server.KeyFile))
	if err != nil {
		return err
	}
	e.key = string(trimNL(key))
	e.cl = client.New("http://"+e.addr, e.key)
	e.sandbox = sandboxAvailable(e.cfg.WorkDir)
	return nil
}

// sandboxAvailable reports whether this host can run the sandbox tier.
func sandboxAvailable(work string) bool {
	dir, err := os.MkdirTemp(work, "probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	d, err := sandbox.New(sandbox.Config{StateDir: dir, CgroupParent: "hearth-bench"})
	if err != nil {
		return false
	}
	d.Close(context.Background())
	return true
}

func (e *env) close() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	os.RemoveAll(e.dataDir)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func (e *env) authHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + e.key}}
}

// function copies an example directory under a new function name, with
// module replaced by wasm (when non-empty), and deploys it.
func (e *env) deploy(ctx context.Context, example, name string, wasm []byte, extra ...string) error {
	src := filepath.Join(e.src, "examples", example)
	dir, err := os.MkdirTemp(e.cfg.WorkDir, "fn-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	man, err := os.ReadFile(filepath.Join(src, "hearth.yaml"))
	if err != nil {
		return err
	}
	man = regexp.MustCompile(`(?m)^name:.*$`).ReplaceAll(man, []byte("name: "+name))
	man = regexp.MustCompile(`(?m)^concurrency:.*$`).ReplaceAll(man, nil)
	man = regexp.MustCompile(`(?m)^scale:.*$`).ReplaceAll(man, nil)
	man = append(man, []byte("\nscale: {min: 0, max: 16}\n")...)
	for _, x := range extra {
		man = append(man, x...)
	}
	if err := os.WriteFile(filepath.Join(dir, "hearth.yaml"), man, 0o644); err != nil {
		return err
	}
	modRe := regexp.MustCompile(`(?m)^module:\s*(\S+)`)
	mod := modRe.FindSubmatch(man)
	if mod == nil {
		return fmt.Errorf("example %s has no module", example)
	}
	if wasm == nil {
		if wasm, err = os.ReadFile(filepath.Join(src, string(mod[1]))); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, string(mod[1])), wasm, 0o644); err != nil {
		return err
	}
	_, err = e.cl.Deploy(ctx, dir)
	return err
}

// deployDir deploys a copy of dir as function name, with extra manifest
// lines appended (replacing keys they set).
func (e *env) deployDir(ctx context.Context, src, name, extra string) error {
	dir, err := os.MkdirTemp(e.cfg.WorkDir, "fn-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(src, ent.Name()))
		if err != nil {
			return err
		}
		info, _ := ent.Info()
		if ent.Name() == "hearth.yaml" {
			b = regexp.MustCompile(`(?m)^name:.*$`).ReplaceAll(b, []byte("name: "+name))
			for _, line := range regexp.MustCompile(`(?m)^(\w+):`).FindAllStringSubmatch(extra, -1) {
				b = regexp.MustCompile(`(?m)^`+line[1]+`:.*$`).ReplaceAll(b, nil)
			}
			b = append(b, "\n"+extra...)
		}
		if err := os.WriteFile(filepath.Join(dir, ent.Name()), b, info.Mode().Perm()); err != nil {
			return err
		}
	}
	_, err = e.cl.Deploy(ctx, dir)
	return err
}

func (e *env) url(name, path string) string { return "http://" + e.addr + "/fn/" + name + path }

// goHello builds the Go hello example, as a reactor (snapshot fast path)
// or a plain command module (a fresh runtime per request).
func (e *env) goHello(ctx context.Context, reactor bool) ([]byte, error) {
	out := filepath.Join(e.cfg.WorkDir, "hello-command.wasm")
	var flags []string
	if reactor {
		out = filepath.Join(e.cfg.WorkDir, "hello-reactor.wasm")
		flags = []string{"-buildmode=c-shared"}
	}
	if _, err := os.Stat(out); err != nil {
		if err := demo.GoBuildTo(ctx, e.src, "./examples/hello-go", out, []string{"GOOS=wasip1", "GOARCH=wasm"}, flags, os.Stderr); err != nil {
			return nil, err
		}
	}
	return os.ReadFile(out)
}

// benchWasmWarm: warm invocations of the tiny WASI module through the full
// gateway, against a plain net/http hello handler driven the same way.
func benchWasmWarm(ctx context.Context, e *env) ([]Figure, error) {
	if err := e.deploy(ctx, "echo-c", "bench-echo", nil); err != nil {
		return nil, err
	}
	rawURL, stop, err := rawBaseline()
	if err != nil {
		return nil, err
	}
	defer stop()
	const conc = 16
	c := NewClient(conc)
	d := e.cfg.Duration
	// Warm both up so neither pays for connection set-up or first use.
	Load{URL: rawURL, Concurrency: conc, Duration: d / 4}.Run(ctx, c)
	Load{URL: e.url("bench-echo", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d / 4}.Run(ctx, c)

	raw, gw := Interleave(ctx, c,
		Load{URL: rawURL, Concurrency: conc, Duration: d},
		Load{URL: e.url("bench-echo", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d}, 4)
	if gw.Errors > 0 {
		return nil, fmt.Errorf("gateway answered %d errors: %v", gw.Errors, gw.Status)
	}
	raw1, gw1 := Interleave(ctx, c,
		Load{URL: rawURL, Concurrency: 1, Duration: d / 2},
		Load{URL: e.url("bench-echo", "/"), Header: e.authHeader(), Concurrency: 1, Duration: d / 2}, 4)
	ratio := gw.RPS() / raw.RPS()
	added := float64(gw1.P50-raw1.P50) / float64(time.Microsecond)
	return []Figure{
		{Name: "raw net/http hello (baseline, 16 clients)", Value: raw.RPS(), Unit: "req/s"},
		{Name: "gateway → tiny WASI module, warm (16 clients)", Value: gw.RPS(), Unit: "req/s",
			Baseline: "raw", BaseVal: raw.RPS(), Ratio: ratio, Target: "≥ 0.50×", Pass: pass(ratio >= 0.5)},
		{Name: "gateway added latency p50 (1 client)", Value: added, Unit: "µs",
			Baseline: fmt.Sprintf("raw p50 %.0f µs, gateway p50 %.0f µs", us(raw1.P50), us(gw1.P50)),
			Target:   "≤ 100 µs", Pass: pass(added <= 100)},
	}, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// benchSnapshot: the Go wasip1 hello with per-request isolation, restored
// from a post-initialisation snapshot, against a fresh instance per request.
func benchSnapshot(ctx context.Context, e *env) ([]Figure, error) {
	cmd, err := e.goHello(ctx, false)
	if err != nil {
		return nil, err
	}
	reactor, err := e.goHello(ctx, true)
	if err != nil {
		return nil, err
	}
	// The naive baseline: a fresh module instance, and so a fresh Go
	// runtime start, per request. Granting files turns off the driver's
	// reuse of command instances (open descriptors could leak between
	// requests), which is what makes it naive.
	if err := e.deploy(ctx, "hello-go", "bench-hello-fresh", cmd, "allow: {files: true}\n", "concurrency: 4\n"); err != nil {
		return nil, err
	}
	if err := e.deploy(ctx, "hello-go", "bench-hello-reuse", cmd, "concurrency: 4\n"); err != nil {
		return nil, err
	}
	if err := e.deploy(ctx, "hello-go", "bench-hello-snap", reactor, "concurrency: 8\n"); err != nil {
		return nil, err
	}
	const conc = 8
	c := NewClient(conc)
	d := e.cfg.Duration
	Load{URL: e.url("bench-hello-fresh", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d / 4}.Run(ctx, c)
	Load{URL: e.url("bench-hello-snap", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d / 4}.Run(ctx, c)
	// Not interleaved: a fresh Go runtime per request leaves megabytes of
	// host garbage behind, whose collection would be billed to whatever
	// runs next. Each side runs alone, after a collection.
	runtime.GC()
	fresh := Load{URL: e.url("bench-hello-fresh", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d}.Run(ctx, c)
	runtime.GC()
	snap := Load{URL: e.url("bench-hello-snap", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d}.Run(ctx, c)
	if fresh.Errors > 0 || snap.Errors > 0 {
		return nil, fmt.Errorf("errors: fresh %v, snapshot %v", fresh.Status, snap.Status)
	}
	Load{URL: e.url("bench-hello-reuse", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d / 4}.Run(ctx, c)
	runtime.GC()
	reuse := Load{URL: e.url("bench-hello-reuse", "/"), Header: e.authHeader(), Concurrency: conc, Duration: d / 2}.Run(ctx, c)
	naive, err := naiveFresh(ctx, cmd, conc, d)
	if err != nil {
		return nil, err
	}
	ratio := snap.RPS() / naive
	return []Figure{
		{Name: "Go wasip1 hello, naive: plain wazero, new instance per request, in-process (baseline)", Value: naive, Unit: "req/s",
			Note: "no HTTP, no gateway: wazero's InstantiateModule per request with its default memory"},
		{Name: "Go wasip1 hello, Hearth's fresh-instance path via the gateway", Value: fresh.RPS(), Unit: "req/s",
			Baseline: "naive", BaseVal: naive, Ratio: fresh.RPS() / naive,
			Note: fmt.Sprintf("p50 %.2f ms; recycled, pre-faulted linear memory", us(fresh.P50)/1000)},
		{Name: "Go wasip1 hello, command instance reused and reverted", Value: reuse.RPS(), Unit: "req/s",
			Baseline: "fresh", BaseVal: fresh.RPS(), Ratio: reuse.RPS() / fresh.RPS(),
			Note: "the Go runtime still starts per request; only instantiation is saved"},
		{Name: "Go wasip1 hello, snapshot restore per request", Value: snap.RPS(), Unit: "req/s",
			Baseline: "naive", BaseVal: naive, Ratio: ratio, Target: "≥ 10×", Pass: pass(ratio >= 10),
			Note: fmt.Sprintf("p50 %.2f ms", us(snap.P50)/1000)},
	}, nil
}

// benchCold: deploy of a new version of the 2 MB Go module to its first
// response (compilation dominates), and the first invocation after a
// restart (compiled code comes from the on-disk cache).
func benchCold(ctx context.Context, e *env) ([]Figure, error) {
	plain, err := e.plainGoHello(ctx)
	if err != nil {
		return nil, err
	}
	// A custom section with a nonce makes the module new to the
	// compilation cache, so this deploy really compiles.
	mod := withNonce(plain)
	t0 := time.Now()
	if err := e.deploy(ctx, "hello-go", "bench-cold", mod); err != nil {
		return nil, err
	}
	if err := e.get(ctx, "bench-cold"); err != nil {
		return nil, err
	}
	deploy := time.Since(t0)

	// A warm request for scale.
	t1 := time.Now()
	if err := e.get(ctx, "bench-cold"); err != nil {
		return nil, err
	}
	warm := time.Since(t1)

	e.stop()
	e.stop = nil
	if err := e.start(ctx); err != nil {
		return nil, err
	}
	t2 := time.Now()
	if err := e.get(ctx, "bench-cold"); err != nil {
		return nil, err
	}
	restart := time.Since(t2)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return []Figure{
		{Name: fmt.Sprintf("deploy new %.1f MB Go version → first response", float64(len(mod))/1e6), Value: ms(deploy), Unit: "ms",
			Baseline: "warm request", BaseVal: ms(warm), Target: "≤ 1000 ms", Pass: pass(deploy <= time.Second)},
		{Name: "first invocation after restart (compile cache hit)", Value: ms(restart), Unit: "ms",
			Baseline: "warm request", BaseVal: ms(warm), Target: "≤ 50 ms", Pass: pass(restart <= 50*time.Millisecond)},
	}, nil
}

func (e *env) get(ctx context.Context, name string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url(name, "/"), nil)
	req.Header = e.authHeader()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", name, resp.Status)
	}
	return nil
}

// naiveFresh measures the naive way to isolate requests: a plain wazero
// runtime instantiating the command module afresh for every request (its
// Go runtime starts each time), driven in-process by conc goroutines for d.
func naiveFresh(ctx context.Context, mod []byte, conc int, d time.Duration) (float64, error) {
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	// Modules built with sdk/wagi import the "hearth" host module (used
	// only in reactor mode); an empty environment satisfies it.
	if _, err := r.NewHostModuleBuilder("hearth").
		NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, count, size uint32) uint32 {
		m.Memory().WriteUint32Le(count, 0)
		m.Memory().WriteUint32Le(size, 0)
		return 0
	}).Export("env_sizes_get").
		NewFunctionBuilder().WithFunc(func(context.Context, uint32, uint32) uint32 { return 0 }).Export("env_get").
		Instantiate(ctx); err != nil {
		return 0, err
	}
	compiled, err := r.CompileModule(ctx, mod)
	if err != nil {
		return 0, err
	}
	run := func() error {
		var out bytes.Buffer
		cfg := wazero.NewModuleConfig().WithName("").WithStdin(bytes.NewReader(nil)).WithStdout(&out).
			WithEnv("REQUEST_METHOD", "GET").WithEnv("PATH_INFO", "/").WithEnv("QUERY_STRING", "").
			WithSysWalltime().WithSysNanotime()
		m, err := r.InstantiateModule(ctx, compiled, cfg)
		if m != nil {
			m.Close(ctx)
		}
		if err != nil {
			if ee, ok := err.(*sys.ExitError); !ok || ee.ExitCode() != 0 {
				return err
			}
		}
		if out.Len() == 0 {
			return fmt.Errorf("naive instance wrote nothing")
		}
		return nil
	}
	if err := run(); err != nil {
		return 0, err
	}
	var n atomic.Int64
	var firstErr atomic.Value
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dctx.Err() == nil {
				if err := run(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// plainGoSource is a Go wagi function using nothing but the standard
// library's os, io and fmt: the ~2.5 MB Go module of the cold-path target.
const plainGoSource = `package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	body, _ := io.ReadAll(os.Stdin)
	fmt.Printf("Content-Type: text/plain\n\nhello from %s (%d bytes)\n", os.Getenv("PATH_INFO"), len(body))
}
`

// plainGoHello builds plainGoSource as a WASI command module.
func (e *env) plainGoHello(ctx context.Context) ([]byte, error) {
	dir := filepath.Join(e.cfg.WorkDir, "plain-hello")
	out := filepath.Join(dir, "hello.wasm")
	if _, err := os.Stat(out); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module plainhello\n\ngo 1.24\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(plainGoSource), 0o644)
		if err := demo.GoBuildTo(ctx, dir, ".", out, []string{"GOOS=wasip1", "GOARCH=wasm"}, nil, os.Stderr); err != nil {
			return nil, err
		}
	}
	return os.ReadFile(out)
}

// withNonce appends a custom section holding random bytes to a module.
func withNonce(mod []byte) []byte {
	name := "hearth.bench.nonce"
	var nonce [16]byte
	rand.Read(nonce[:])
	payload := append(binary.AppendUvarint(nil, uint64(len(name))), name...)
	payload = append(payload, nonce[:]...)
	out := append([]byte{}, mod...)
	out = append(out, 0) // custom section id
	out = binary.AppendUvarint(out, uint64(len(payload)))
	return append(out, payload...)
}
