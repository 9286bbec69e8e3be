package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchAsync: async enqueue throughput through the gateway (HTTP, auth,
// JetStream publish acknowledged before 202) against raw acknowledged
// JetStream publishes from a NATS client in this process over loopback TCP;
// and the latency from enqueue to the start of the function when it is warm.
func benchAsync(ctx context.Context, e *env) ([]Figure, error) {
	if err := e.deploy(ctx, "echo-c", "bench-async", nil); err != nil {
		return nil, err
	}
	body := bytes.Repeat([]byte("x"), 256)
	const conc = 16
	d := e.cfg.Duration

	// Raw: synchronous publishes (each waits for its PubAck) from a NATS
	// client in this process over loopback TCP — the same transport the
	// gateway's HTTP clients use — to a JetStream server of the same build,
	// into a work-queue stream like the async queue's.
	dir, err := os.MkdirTemp(e.cfg.WorkDir, "raw-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("raw NATS server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
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

	// The gateway: 16 HTTP clients over kept-alive connections (the lean
	// client, as light as the NATS client of the baseline), while the
	// queue's workers run the invocations on the same CPUs.
	enq := Load{URL: "http://" + e.addr + "/async/fn/bench-async", Method: "POST", Body: body, Header: e.authHeader(), Concurrency: conc, Duration: d, Lean: true}
	res := enq.Run(ctx, nil)
	if res.Status[202] == 0 {
		return nil, fmt.Errorf("async enqueue answered %v", res.Status)
	}
	gwRPS := float64(res.Status[202]) / res.Elapsed.Seconds()

	// For reference, what HTTP alone costs: a bare net/http handler that
	// reads the same body and answers, with the same client.
	helloURL, stopHello, err := rawBaseline()
	if err != nil {
		return nil, err
	}
	hello := Load{URL: helloURL, Method: "POST", Body: body, Concurrency: conc, Duration: d / 2, Lean: true}.Run(ctx, nil)
	stopHello()

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
		{Name: "raw JetStream publish over TCP, acknowledged (baseline, 16 publishers)", Value: rawRPS, Unit: "req/s"},
		{Name: "async enqueue through the gateway (HTTP, 16 clients)", Value: gwRPS, Unit: "req/s",
			Baseline: "raw", BaseVal: rawRPS, Ratio: ratio, Target: "≥ 0.50×", Pass: pass(ratio >= 0.5)},
		{Name: "for reference: bare net/http handler, same client (no publish)", Value: hello.RPS(), Unit: "req/s",
			Baseline: "raw", BaseVal: rawRPS, Ratio: hello.RPS() / rawRPS},
		{Name: "async enqueue → function start, warm, p50", Value: us(l50), Unit: "µs",
			Target: "≤ 2000 µs", Pass: pass(l50 <= 2*time.Millisecond)},
	}, nil
}
