package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/store"
)

// benchAsync: async enqueue throughput through the gateway (HTTP, auth,
// JetStream publish acknowledged before 202) against raw JetStream
// publishes from this process to an embedded server; and the latency from
// enqueue to the start of the function when it is warm.
func benchAsync(ctx context.Context, e *env) ([]Figure, error) {
	if err := e.deploy(ctx, "echo-c", "bench-async", nil); err != nil {
		return nil, err
	}
	body := bytes.Repeat([]byte("x"), 256)
	const conc = 16
	c := NewClient(conc)
	d := e.cfg.Duration

	// Raw: synchronous publishes (each waits for its PubAck) to a stream
	// like the async queue's, on an embedded server of the same build.
	dir, err := os.MkdirTemp(e.cfg.WorkDir, "raw-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, store.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	js := st.JetStream()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH_RAW", Subjects: []string{"benchraw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, err
	}
	var raw atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, d)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				if _, err := js.Publish(rctx, "benchraw.f", body); err == nil {
					raw.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	rawRPS := float64(raw.Load()) / time.Since(t0).Seconds()

	enq := Load{URL: e.url("bench-async", "/"), Method: "POST", Body: body, Header: e.authHeader(), Concurrency: conc, Duration: d}
	enq.URL = "http://" + e.addr + "/async/fn/bench-async"
	res := enq.Run(ctx, c)
	if res.Status[202] == 0 {
		return nil, fmt.Errorf("async enqueue answered %v", res.Status)
	}
	gwRPS := float64(res.Status[202]) / res.Elapsed.Seconds()

	// Let the queue drain, then measure enqueue → start one at a time.
	time.Sleep(200 * time.Millisecond)
	var lat []time.Duration
	for range 30 {
		id, err := e.cl.InvokeAsync(ctx, "bench-async", "/", bytes.NewReader(body), nil)
		if err != nil {
			return nil, err
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := e.cl.WaitInvocation(wctx, id, time.Millisecond)
		wcancel()
		if err != nil {
			return nil, err
		}
		if !s.StartedAt.IsZero() {
			lat = append(lat, s.StartedAt.Sub(s.EnqueuedAt))
		}
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("no async invocation reported its start")
	}
	l50 := p50(lat)
	ratio := gwRPS / rawRPS
	return []Figure{
		{Name: "raw JetStream publish, acknowledged (baseline, 16 publishers)", Value: rawRPS, Unit: "req/s"},
		{Name: "async enqueue through the gateway (HTTP, 16 clients)", Value: gwRPS, Unit: "req/s",
			Baseline: "raw", BaseVal: rawRPS, Ratio: ratio, Target: "≥ 0.50×", Pass: pass(ratio >= 0.5)},
		{Name: "async enqueue → function start, warm, p50", Value: us(l50), Unit: "µs",
			Target: "≤ 2000 µs", Pass: pass(l50 <= 2*time.Millisecond)},
	}, nil
}
