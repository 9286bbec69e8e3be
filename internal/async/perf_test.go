package async_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/gateway"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
)

// benchFunctions knows one function, "bench".
type benchFunctions struct{ fn *scheduler.Function }

func (b benchFunctions) Lookup(name string) (*scheduler.Function, bool) {
	return b.fn, name == "bench"
}
func (benchFunctions) Deploy(context.Context, string, []byte) (api.Version, error) {
	return api.Version{}, nil
}
func (benchFunctions) Get(context.Context, string) (api.Function, error) { return api.Function{}, nil }
func (benchFunctions) List(context.Context) ([]api.Function, error)      { return nil, nil }
func (benchFunctions) Delete(context.Context, string) (api.Deleted, error) {
	return api.Deleted{}, nil
}

type perfEnv struct {
	st    *store.Store
	q     *async.Queue
	gw    *gateway.Gateway
	start chan time.Time // function start times
}

func newPerfEnv(t testing.TB) *perfEnv {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &perfEnv{st: st, start: make(chan time.Time, 1)}
	e.q, err = async.New(context.Background(), async.Config{
		JS: st.JetStream(),
		Invoke: func(ctx context.Context, fn string, req *driver.Request) (*driver.Response, error) {
			select { // a warm function: it starts at once
			case e.start <- time.Now():
			default:
			}
			return &driver.Response{Status: 200}, nil
		},
		Policy: func(string) (manifest.Retry, manifest.Destinations, bool) {
			return manifest.Retry{}, manifest.Destinations{}, true
		},
		Workers: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.q.Close(context.Background()) })
	e.gw = gateway.New(gateway.Config{
		Key:       "k",
		Functions: benchFunctions{&scheduler.Function{Spec: driver.Spec{Function: "bench", Version: 1}}},
		Async:     e.q,
	})
	return e
}

const perfBody = 256 // bytes per request body

// enqueueHTTP sends one request through the gateway's handler. The request
// is built by hand and the response discarded, so the figure is the
// gateway's cost, not httptest's.
func (e *perfEnv) enqueueHTTP(t testing.TB) {
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           benchURL,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Authorization": {"Bearer k"}, "Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(benchPayload)),
		ContentLength: int64(len(benchPayload)),
		Host:          "hearth",
		RequestURI:    "/async/fn/bench",
	}
	w := &discardWriter{h: make(http.Header, 4)}
	e.gw.ServeHTTP(w, req)
	if w.code != http.StatusAccepted {
		t.Errorf("enqueue: %d", w.code)
	}
}

var (
	benchURL     = &url.URL{Path: "/async/fn/bench"}
	benchPayload = []byte(strings.Repeat("x", perfBody))
)

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

// rate runs op n times on g goroutines and returns operations per second.
func rate(n, g int, op func()) float64 {
	var wg sync.WaitGroup
	start := time.Now()
	per := n / g
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				op()
			}
		}()
	}
	wg.Wait()
	return float64(per*g) / time.Since(start).Seconds()
}

// TestEnqueueThroughput compares queuing through the gateway's handler
// (auth, lookup, body, envelope, acknowledged publish, 202) with raw
// synchronous JetStream publishes of the same body to the same stream,
// measured alternately in the same process.
func TestEnqueueThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmark; skipped with -short")
	}
	e := newPerfEnv(t)
	js := e.st.JetStream()
	ctx := context.Background()
	payload := []byte(strings.Repeat("x", perfBody))
	raw := func() {
		if _, err := js.Publish(ctx, "async.raw.x", payload); err != nil {
			t.Error(err)
		}
	}
	via := func() { e.enqueueHTTP(t) }
	n := 4000
	if raceEnabled {
		n = 1000
	}
	for _, g := range []int{1, 16} {
		var bestRaw, bestGW float64
		for range 3 { // alternate, keep the best of each
			bestRaw = max(bestRaw, rate(n, g, raw))
			bestGW = max(bestGW, rate(n, g, via))
		}
		ratio := bestGW / bestRaw
		t.Logf("enqueue, %2d goroutines: gateway %8.0f/s, raw JetStream publish %8.0f/s, ratio %.2f (need ≥ 0.50)", g, bestGW, bestRaw, ratio)
		if ratio < 0.5 && !raceEnabled {
			t.Errorf("gateway enqueue is %.2f of raw publish throughput, want ≥ 0.50", ratio)
		}
	}

	// For information: the same over loopback TCP with a real HTTP server
	// and client in this process, which adds both ends of HTTP/1.1.
	srv := httptest.NewServer(e.gw)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/async/fn/bench", bytes.NewReader(benchPayload))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := hc.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("enqueue over HTTP: %d", resp.StatusCode)
		}
	}
	raw16 := rate(n, 16, raw)
	http16 := rate(n, 16, post)
	t.Logf("for information, 16 clients over loopback HTTP: %8.0f/s vs raw publish %8.0f/s, ratio %.2f", http16, raw16, http16/raw16)
}

// TestEnqueueToStartLatency measures from the request reaching the gateway
// to the (warm) function starting, one invocation at a time.
func TestEnqueueToStartLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmark; skipped with -short")
	}
	e := newPerfEnv(t)
	e.q.Start()
	time.Sleep(50 * time.Millisecond) // workers' pull requests reach the server
	n := 1000
	lat := make([]time.Duration, 0, n)
	for i := range n + 50 {
		t0 := time.Now()
		e.enqueueHTTP(t)
		select {
		case t1 := <-e.start:
			if i >= 50 { // warm-up
				lat = append(lat, t1.Sub(t0))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("function did not start")
		}
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	t.Logf("enqueue → start: p50 %s, p90 %s, p99 %s, max %s (need p50 ≤ 2ms)", p(0.5), p(0.9), p(0.99), lat[len(lat)-1])
	if p(0.5) > 2*time.Millisecond && !raceEnabled {
		t.Errorf("p50 %s > 2ms", p(0.5))
	}
	_ = fmt.Sprint
}

// BenchmarkEnqueueHandler: the gateway's enqueue handler, 16 goroutines.
func BenchmarkEnqueueHandler(b *testing.B) {
	e := newPerfEnv(b)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.enqueueHTTP(b)
		}
	})
}
