//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// Benchmarks print each figure next to a baseline measured in the same run.
//
//	go test -run '^$' -bench . -benchtime 200x ./internal/driver/sandbox/

func goHTTPSpec() driver.Spec {
	s := exampleSpec("go-http", bins.goHTTP, "http", "./server")
	s.Concurrency = 8
	return s
}

func p50(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func reportMs(b *testing.B, name string, d time.Duration) {
	b.ReportMetric(float64(d.Microseconds())/1000, name)
}

// startAndCall measures Start plus the first response.
func startAndCall(b *testing.B, d *Driver, spec driver.Spec) (time.Duration, driver.Instance) {
	ctx := context.Background()
	t0 := time.Now()
	inst, err := d.Start(ctx, spec)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := inst.Invoke(ctx, &driver.Request{Method: "GET", Path: "/", Header: http.Header{}})
	if err != nil || resp.Status != 200 {
		b.Fatalf("invoke: %v", err)
	}
	return time.Since(t0), inst
}

// BenchmarkColdStart: a new sandbox to the first HTTP response of the static
// Go example, against the same binary started as a plain process (and
// `crun run` of it, when crun is installed).
func BenchmarkColdStart(b *testing.B) {
	d := newTestDriver(b, Config{})
	spec := goHTTPSpec()
	var sandbox, plain []time.Duration
	for range b.N {
		dt, inst := startAndCall(b, d, spec)
		sandbox = append(sandbox, dt)
		inst.Stop(context.Background())
		plain = append(plain, plainStart(b))
	}
	reportMs(b, "p50-ms", p50(sandbox))
	reportMs(b, "plain-p50-ms", p50(plain))
	b.ReportMetric(float64(p50(sandbox))/float64(p50(plain)), "x-plain")
}

// BenchmarkColdStartUserNS: the cold start with a user namespace per
// function (the default) and without (as where the kernel refuses them),
// interleaved in one run (x-no-userns is the ratio).
func BenchmarkColdStartUserNS(b *testing.B) {
	with := newTestDriver(b, Config{})
	if !with.userNS {
		b.Skip("user namespaces are unavailable here")
	}
	without := newTestDriver(b, Config{refuseUserNS: true})
	spec := goHTTPSpec()
	var on, off []time.Duration
	for range b.N {
		dt, inst := startAndCall(b, with, spec)
		on = append(on, dt)
		inst.Stop(context.Background())
		dt, inst = startAndCall(b, without, spec)
		off = append(off, dt)
		inst.Stop(context.Background())
	}
	reportMs(b, "p50-ms", p50(on))
	reportMs(b, "no-userns-p50-ms", p50(off))
	b.ReportMetric(float64(p50(on))/float64(p50(off)), "x-no-userns")
}

// BenchmarkCrunStart: `crun run` of the same binary to its first response,
// with the sandbox's cold start measured in the same run.
func BenchmarkCrunStart(b *testing.B) {
	crun, err := exec.LookPath("crun")
	if err != nil {
		b.Skip("crun not installed: no crun comparison")
	}
	if _, err := crunStart(b, crun); err != nil {
		b.Skipf("crun cannot run containers on this host: %v", err)
	}
	d := newTestDriver(b, Config{})
	spec := goHTTPSpec()
	var sandbox, cr []time.Duration
	for range b.N {
		dt, inst := startAndCall(b, d, spec)
		sandbox = append(sandbox, dt)
		inst.Stop(context.Background())
		dc, err := crunStart(b, crun)
		if err != nil {
			b.Fatal(err)
		}
		cr = append(cr, dc)
	}
	reportMs(b, "p50-ms", p50(sandbox))
	reportMs(b, "crun-p50-ms", p50(cr))
	b.ReportMetric(float64(p50(sandbox))/float64(p50(cr)), "x-crun")
}

// plainStart starts the server outside any sandbox and waits for its first
// response.
func plainStart(b testing.TB) time.Duration {
	port := freePort(b)
	t0 := time.Now()
	cmd := exec.Command(filepath.Join(bins.goHTTP, "server"))
	cmd.Env = []string{"PORT=" + port}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitHTTP(b, "127.0.0.1:"+port)
	return time.Since(t0)
}

func freePort(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// waitHTTP polls addr like the driver does, then makes one request.
func waitHTTP(b testing.TB, addr string) {
	delay := 20 * time.Microsecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			io.ReadAll(c)
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, 2*time.Millisecond)
	}
}

// crunStart runs the server with `crun run` in a bundle with the host
// network (crun has no bridge to reach a private one), to first response.
func crunStart(b *testing.B, crun string) (time.Duration, error) {
	bundle := b.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	port := freePort(b)
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"args": []string{"/var/task/server"}, "cwd": "/", "env": []string{"PORT=" + port},
			"user": map[string]int{"uid": 65534, "gid": 65534}, "noNewPrivileges": true,
		},
		"root": map[string]any{"path": rootfs, "readonly": true},
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/usr", "type": "bind", "source": "/usr", "options": []string{"bind", "ro"}},
			{"destination": "/var/task", "type": "bind", "source": bins.goHTTP, "options": []string{"bind", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"size=64m"}},
		},
		"linux": map[string]any{
			"namespaces": []map[string]string{{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}},
			"resources":  map[string]any{"memory": map[string]int64{"limit": 128 << 20}, "pids": map[string]int64{"limit": 512}},
		},
	}
	js, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(bundle, "config.json"), js, 0o644)
	id := "hearth-bench-" + port
	t0 := time.Now()
	cmd := exec.Command(crun, "run", "--bundle", bundle, id)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		exec.Command(crun, "kill", id, "KILL").Run()
		<-exited
		exec.Command(crun, "delete", "-f", id).Run()
	}()
	delay := 20 * time.Microsecond
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			io.ReadAll(c)
			c.Close()
			return time.Since(t0), nil
		}
		select {
		case err := <-exited:
			exited <- err
			return 0, fmt.Errorf("crun run: %v: %s", err, strings.TrimSpace(stderr.String()))
		case <-time.After(delay):
		}
		if time.Since(t0) > 10*time.Second {
			return 0, fmt.Errorf("crun run: the server never listened")
		}
		delay = min(delay*2, 2*time.Millisecond)
	}
}

// BenchmarkPoolStart: start from a pre-built empty sandbox to the first
// response, against a cold start and the plain process in the same run.
func BenchmarkPoolStart(b *testing.B) {
	d := newTestDriver(b, Config{Pool: 4})
	spec := goHTTPSpec()
	var pooled, cold, plain []time.Duration
	for range b.N {
		for len(d.pool) < cap(d.pool) { // let the pool refill between starts
			time.Sleep(time.Millisecond)
		}
		dt, inst := startAndCall(b, d, spec)
		pooled = append(pooled, dt)
		inst.Stop(context.Background())
		plain = append(plain, plainStart(b))
	}
	d.Close(context.Background()) // one driver at a time: leak checks count all sandboxes
	dc := newTestDriver(b, Config{})
	for range min(b.N, 100) {
		dt, inst := startAndCall(b, dc, spec)
		cold = append(cold, dt)
		inst.Stop(context.Background())
	}
	reportMs(b, "p50-ms", p50(pooled))
	reportMs(b, "cold-p50-ms", p50(cold))
	reportMs(b, "plain-p50-ms", p50(plain))
	b.ReportMetric(float64(p50(cold))/float64(p50(pooled)), "x-faster-than-cold")
	b.ReportMetric(float64(p50(pooled))/float64(p50(plain)), "x-plain")
}

// discardWriter is the ResponseWriter of the reverse-proxy baseline.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkWarmVsReverseProxy: warm invocations of the Go example in a
// sandbox through the driver, against httputil.ReverseProxy in front of the
// same program running outside any sandbox. Both run in this process with
// 8 concurrent callers; the figure is the throughput ratio.
func BenchmarkWarmVsReverseProxy(b *testing.B) {
	d := newTestDriver(b, Config{})
	spec := goHTTPSpec()
	inst, err := d.Start(context.Background(), spec)
	if err != nil {
		b.Fatal(err)
	}
	defer inst.Stop(context.Background())

	port := freePort(b)
	cmd := exec.Command(filepath.Join(bins.goHTTP, "server"))
	cmd.Env = []string{"PORT=" + port}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitHTTP(b, "127.0.0.1:"+port)
	target, _ := url.Parse("http://127.0.0.1:" + port)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}

	const workers = 8
	run := func(n int, op func() error) time.Duration {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		per := (n + workers - 1) / workers
		t0 := time.Now()
		for range workers {
			wg.Go(func() {
				for range per {
					if err := op(); err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		return time.Since(t0)
	}
	hearth := func() error {
		resp, err := inst.Invoke(context.Background(), &driver.Request{Method: "GET", Path: "/hi", RawQuery: "name=bench",
			Host: "localhost", RemoteAddr: "127.0.0.1:1234", Header: http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}}})
		if err == nil && !strings.Contains(string(resp.Body), "bench!") {
			err = fmt.Errorf("unexpected body %q", resp.Body)
		}
		return err
	}
	baseline := func() error {
		req, _ := http.NewRequest("GET", "http://localhost/hi?name=bench", nil)
		req.RemoteAddr = "127.0.0.1:1234"
		req.Header = http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}}
		proxy.ServeHTTP(&discardWriter{h: http.Header{}}, req)
		return nil
	}
	n := max(b.N, 2000)
	run(200, hearth) // warm up both paths
	run(200, baseline)
	// Alternate short rounds of both so that load from elsewhere on the
	// host hits both alike; the figure is the median of the rounds' ratios.
	const rounds = 10
	per := max(n/rounds, 100)
	var th, tb time.Duration
	ratios := make([]float64, 0, rounds)
	b.ResetTimer()
	for i := range rounds {
		var h, bl time.Duration
		if i%2 == 0 {
			h, bl = run(per, hearth), run(per, baseline)
		} else {
			bl, h = run(per, baseline), run(per, hearth)
		}
		th += h
		tb += bl
		ratios = append(ratios, bl.Seconds()/h.Seconds())
	}
	b.StopTimer()
	sort.Float64s(ratios)
	total := float64(per * rounds)
	b.ReportMetric(total/th.Seconds(), "hearth-req/s")
	b.ReportMetric(total/tb.Seconds(), "revproxy-req/s")
	b.ReportMetric((ratios[rounds/2-1]+ratios[rounds/2])/2, "x-revproxy")
}
