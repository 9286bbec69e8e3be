package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/demo"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/sandbox"
)

// goHTTPDir builds the Go http example (a static Linux binary) and returns
// its directory.
func (e *env) goHTTPDir(ctx context.Context) (string, error) {
	b := demo.GoBuild{Dir: "go-http", Output: "server", Env: []string{"GOOS=linux"}}
	if err := demo.GoBuildIn(ctx, e.src, b, os.Stderr); err != nil {
		return "", err
	}
	return filepath.Join(e.src, "examples", "go-http"), nil
}

func skipped(name, why string) []Figure {
	return []Figure{{Name: name, Note: "skipped: " + why}}
}

// benchSandboxWarm: warm invocations through the gateway into the sandboxed
// Go http function, against httputil.ReverseProxy in front of the same
// program running outside any sandbox.
func benchSandboxWarm(ctx context.Context, e *env) ([]Figure, error) {
	if !e.sandbox {
		return skipped("sandbox warm", "the sandbox tier is not available (needs root and cgroups)"), nil
	}
	dir, err := e.goHTTPDir(ctx)
	if err != nil {
		return nil, err
	}
	// One instance taking all 16 connections, as the program behind the
	// proxy is one process serving them all.
	// One instance taking all 16 connections, as the program behind the
	// proxy is one process serving them all (the example's manifest says
	// concurrency 8, which would split them over two processes).
	if err := e.deployDir(ctx, dir, "bench-go-http", "concurrency: 16\nscale: {min: 0, max: 1}\n"); err != nil {
		return nil, err
	}
	// The same program, outside any sandbox, behind the standard proxy.
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "server"))
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	target, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	if err := waitHTTP(ctx, target.String()); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // runs cancelled at the end of a measurement
	proxy := &http.Server{Handler: rp}
	go proxy.Serve(ln)
	defer proxy.Close()
	proxyURL := "http://" + ln.Addr().String() + "/"

	// The load generator runs in its own process (lean HTTP/1.1, like
	// wrk), so this process's CPU time during a round is the forwarder's:
	// the proxy's, or the node's (gateway, scheduler, driver, metrics, logs,
	// metering); the function runs in its own process either way.
	const conc = 16
	c := NewClient(conc)
	d := e.cfg.Duration
	gwURL := e.url("bench-go-http", "/")
	proxyLoad := Load{URL: proxyURL, Concurrency: conc, Duration: d, Lean: true, Process: true}
	gwLoad := Load{URL: gwURL, Header: e.authHeader(), Concurrency: conc, Duration: d, Lean: true, Process: true}
	warm := func(l Load) Load { l.Duration = d / 4; return l }
	warm(proxyLoad).Run(ctx, c)
	warm(gwLoad).Run(ctx, c)
	base, gw := Interleave(ctx, c, proxyLoad, gwLoad, 4)
	if gw.Errors > 0 || base.Errors > 0 {
		return nil, fmt.Errorf("errors: gateway %v, proxy %v", gw.Status, base.Status)
	}
	// The ceiling of any forwarder on this machine: the program itself,
	// called directly (the "78.2k direct").
	direct := Load{URL: target.String() + "/", Concurrency: conc, Duration: d, Lean: true, Process: true}.Run(ctx, c)
	ratio := gw.RPS() / base.RPS()
	perReq := func(r Result) float64 { return float64(r.CPU.Nanoseconds()) / 1e3 / float64(max(1, r.Requests)) }
	cpuRatio := perReq(base) / perReq(gw)
	return []Figure{
		{Name: "httputil.ReverseProxy → Go http program, no sandbox (baseline)", Value: base.RPS(), Unit: "req/s"},
		{Name: "gateway → sandboxed Go http function, warm", Value: gw.RPS(), Unit: "req/s",
			Baseline: "proxy", BaseVal: base.RPS(), Ratio: ratio, Target: "≥ 1.5×", Pass: pass(ratio >= 1.5),
			Note: "client, forwarder and function share this machine's CPUs"},
		{Name: "for reference: the Go http program called directly, no forwarder", Value: direct.RPS(), Unit: "req/s",
			Baseline: "proxy", BaseVal: base.RPS(), Ratio: direct.RPS() / base.RPS(),
			Note: "the most any forwarder's throughput can be here"},
		{Name: "forwarder CPU per request: ReverseProxy (baseline)", Value: perReq(base), Unit: "µs"},
		{Name: "forwarder CPU per request: gateway (auth, metrics, logs, metering)", Value: perReq(gw), Unit: "µs",
			Baseline: "proxy", BaseVal: perReq(base), Ratio: cpuRatio, Target: "≥ 1.5× leaner", Pass: pass(cpuRatio >= 1.5),
			Note: "requests per CPU-second of the forwarder: its throughput where it is the bottleneck"},
	}, nil
}

// benchSandboxCold: a new sandbox to the first HTTP response of the static
// Go http function, with the driver alone, fresh and from a pre-built pool;
// the same program started as a plain process is the baseline.
func benchSandboxCold(ctx context.Context, e *env) ([]Figure, error) {
	if !e.sandbox {
		return skipped("sandbox cold start", "the sandbox tier is not available (needs root and cgroups)"), nil
	}
	dir, err := e.goHTTPDir(ctx)
	if err != nil {
		return nil, err
	}
	const n = 20
	spec := driver.Spec{Function: "bench-cold", Version: 1, Dir: dir, Protocol: "http",
		Command: []string{"./server"}, MemoryBytes: 64 << 20, Timeout: 10 * time.Second, Concurrency: 1}

	measure := func(pool int) (time.Duration, error) {
		state, err := os.MkdirTemp(e.cfg.WorkDir, "sandbox-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(state)
		d, err := sandbox.New(sandbox.Config{StateDir: state, CgroupParent: "hearth-bench", Pool: pool})
		if err != nil {
			return 0, err
		}
		defer d.Close(context.Background())
		if err := d.Prepare(ctx, spec); err != nil {
			return 0, err
		}
		var ts []time.Duration
		for range n {
			if pool > 0 {
				waitPool(d, pool)
			}
			t0 := time.Now()
			inst, err := d.Start(ctx, spec)
			if err != nil {
				return 0, err
			}
			resp, err := inst.Invoke(ctx, &driver.Request{Method: "GET", Path: "/"})
			dt := time.Since(t0)
			inst.Stop(context.Background())
			if err != nil {
				return 0, err
			}
			if resp.Status != 200 {
				return 0, fmt.Errorf("cold start answered %d", resp.Status)
			}
			ts = append(ts, dt)
		}
		return p50(ts), nil
	}
	fresh, err := measure(0)
	if err != nil {
		return nil, err
	}
	pooled, err := measure(2)
	if err != nil {
		return nil, err
	}
	// Baseline: the same binary as a plain process to its first response.
	var ts []time.Duration
	for range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "server"))
		cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		err = waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", port))
		ts = append(ts, time.Since(t0))
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			return nil, err
		}
	}
	plain := p50(ts)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	figs := []Figure{
		{Name: "plain process start → first response (baseline)", Value: ms(plain), Unit: "ms"},
		{Name: "new sandbox → first response, p50", Value: ms(fresh), Unit: "ms",
			Baseline: "plain", BaseVal: ms(plain), Ratio: ms(fresh) / ms(plain), Target: "≤ 10 ms", Pass: pass(fresh <= 10*time.Millisecond)},
		{Name: "pre-built pool sandbox → first response, p50", Value: ms(pooled), Unit: "ms",
			Baseline: "fresh", BaseVal: ms(fresh), Ratio: ms(pooled) / ms(fresh), Target: "≤ 3 ms", Pass: pass(pooled <= 3*time.Millisecond)},
	}

	// crun run of the same binary, when crun is installed.
	cr, err := newCrunRunner(ctx, e.cfg.WorkDir, filepath.Join(dir, "server"))
	if err != nil {
		return append(figs, Figure{Name: "crun run → first response", Note: "skipped: " + err.Error()}), nil
	}
	defer cr.close()
	var crs []time.Duration
	for range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dt, err := cr.start(ctx, port)
		if err != nil {
			return append(figs, Figure{Name: "crun run → first response", Note: "failed: " + err.Error()}), nil
		}
		crs = append(crs, dt)
	}
	crun := p50(crs)
	return append(figs, Figure{Name: "new sandbox → first response, against crun run of the same binary", Value: ms(fresh), Unit: "ms",
		Baseline: "crun", BaseVal: ms(crun), Ratio: ms(fresh) / ms(crun), Target: "≤ 1×", Pass: pass(fresh <= crun),
		Note: "crun: pid, ipc, uts and mount namespaces, host network, read-only root"}), nil
}

// benchBurst: 200 concurrent requests to the sandboxed Go http function at
// zero instances.
func benchBurst(ctx context.Context, e *env) ([]Figure, error) {
	if !e.sandbox {
		return skipped("burst from zero", "the sandbox tier is not available (needs root and cgroups)"), nil
	}
	dir, err := e.goHTTPDir(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.deployDir(ctx, dir, "bench-burst", "scale: {min: 0, max: 16}\n"); err != nil {
		return nil, err
	}
	const n = 200
	c := NewClient(n)
	var wg sync.WaitGroup
	lat := make([]time.Duration, n)
	status := make([]int, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequestWithContext(ctx, "GET", e.url("bench-burst", "/"), nil)
			req.Header = e.authHeader()
			t0 := time.Now()
			resp, err := c.Do(req)
			lat[i] = time.Since(t0)
			if err != nil {
				status[i] = 599
				return
			}
			resp.Body.Close()
			status[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	var fivexx, ok int
	for _, s := range status {
		switch {
		case s >= 500:
			fivexx++
		case s == 200:
			ok++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := lat[n*99/100]
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	st, _ := e.cl.Function(ctx, "bench-burst")
	inst := 0
	if st.Status != nil {
		inst = st.Status.Instances
	}
	return []Figure{
		{Name: "burst of 200 from zero → sandboxed Go http, p99", Value: ms(p99), Unit: "ms",
			Baseline: "p50", BaseVal: ms(lat[n/2]), Target: "≤ 250 ms, 0 5xx", Pass: pass(p99 <= 250*time.Millisecond && fivexx == 0),
			Note: fmt.Sprintf("%d ok, %d 5xx, %d instances after the burst", ok, fivexx, inst)},
	}, nil
}

func p50(ts []time.Duration) time.Duration {
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts[len(ts)/2]
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers, with a tight backoff.
func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	wait := 50 * time.Microsecond
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer: %w", url, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 5*time.Millisecond)
	}
}

// waitPool waits (briefly) until the driver's pool is refilled.
func waitPool(d *sandbox.Driver, n int) {
	deadline := time.Now().Add(5 * time.Second)
	for d.PoolLen() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
