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

	"github.com/hearthdev/hearth/internal/server"
)

// benchAsync: async enqueue throughput through the gateway (HTTP, auth,
// JetStream publish acknowledged before 202) against raw acknowledged
// JetStream publishes from a NATS client in this process over loopback TCP,
// in alternating rounds; the throughput while the node also runs every
// invocation; and the latency from enqueue to the start of the function
// when it is warm.
func benchAsync(ctx context.Context, e *env) ([]Figure, error) {
	body := bytes.Repeat([]byte("x"), 256)
	const conc, rounds = 16, 4
	d := e.cfg.Duration

	publish, stopRaw, err := rawJetStream(ctx, e.cfg.WorkDir, body, conc)
	if err != nil {
		return nil, err
	}
	defer stopRaw()

	// Nothing consumes the baseline's stream, so the enqueue figure comes
	// from a node that queues without running (--async-workers 0): the
	// gateway's path alone.
	qn, err := startNode(ctx, e.cfg, e.src, server.Config{AsyncWorkers: -1})
	if err != nil {
		return nil, err
	}
	defer qn.close()
	if err := qn.deploy(ctx, "echo-c", "bench-async", nil); err != nil {
		return nil, err
	}
	// 16 HTTP clients over kept-alive connections (the lean client, as
	// light as the NATS client of the baseline).
	enq := Load{URL: "http://" + qn.addr + "/async/fn/bench-async", Method: "POST", Body: body, Header: qn.authHeader(), Concurrency: conc, Duration: d / rounds, Lean: true}
	// Unmeasured first: each side's first fraction of a second runs
	// slower (connections, buffers and stream blocks being set up).
	warm := enq
	warm.Duration = min(d/rounds, 500*time.Millisecond)
	publish(ctx, warm.Duration)
	warm.Run(ctx, nil)
	var rawN, gwN int
	var rawT, gwT time.Duration
	for range rounds { // alternating, so that both see the same machine
		n, el := publish(ctx, d/rounds)
		rawN, rawT = rawN+n, rawT+el
		res := enq.Run(ctx, nil)
		if res.Status[202] == 0 {
			return nil, fmt.Errorf("async enqueue answered %v", res.Status)
		}
		gwN, gwT = gwN+res.Status[202], gwT+res.Elapsed
	}
	qn.close()
	rawRPS := float64(rawN) / rawT.Seconds()
	gwRPS := float64(gwN) / gwT.Seconds()

	// Sustained: the node's workers run every invocation on the same CPUs.
	if err := e.deploy(ctx, "echo-c", "bench-async", nil); err != nil {
		return nil, err
	}
	enq.URL, enq.Header, enq.Duration = "http://"+e.addr+"/async/fn/bench-async", e.authHeader(), d/2
	sus := enq.Run(ctx, nil)
	if sus.Status[202] == 0 {
		return nil, fmt.Errorf("async enqueue answered %v", sus.Status)
	}
	susRPS := float64(sus.Status[202]) / sus.Elapsed.Seconds()

	// For reference, what HTTP alone costs: a bare net/http handler that
	// reads the same body and answers, with the same client.
	helloURL, stopHello, err := rawBaseline()
	if err != nil {
		return nil, err
	}
	hello := Load{URL: helloURL, Method: "POST", Body: body, Concurrency: conc, Duration: d / 2, Lean: true}.Run(ctx, nil)
	stopHello()

	// Enqueue → start, one at a time; the first waits out the backlog
	// of the sustained run and is not counted.
	var lat []time.Duration
	for i := range 31 {
		id, err := e.cl.InvokeAsync(ctx, "bench-async", "/", bytes.NewReader(body), nil)
		if err != nil {
			return nil, err
		}
		wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
		s, err := e.cl.WaitInvocation(wctx, id, time.Millisecond)
		wcancel()
		if err != nil {
			return nil, err
		}
		if i > 0 && !s.StartedAt.IsZero() {
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
		{Name: "async enqueue through the gateway (HTTP, 16 clients; node queuing only)", Value: gwRPS, Unit: "req/s",
			Baseline: "raw", BaseVal: rawRPS, Ratio: ratio, Target: "≥ 0.50×", Pass: pass(ratio >= 0.5)},
		{Name: "for reference: same, while the node's workers run every invocation", Value: susRPS, Unit: "req/s",
			Baseline: "raw", BaseVal: rawRPS, Ratio: susRPS / rawRPS},
		{Name: "for reference: bare net/http handler, same client (no publish)", Value: hello.RPS(), Unit: "req/s",
			Baseline: "raw", BaseVal: rawRPS, Ratio: hello.RPS() / rawRPS},
		{Name: "async enqueue → function start, warm, p50", Value: us(l50), Unit: "µs",
			Target: "≤ 2000 µs", Pass: pass(l50 <= 2*time.Millisecond)},
	}, nil
}

// rawJetStream starts a JetStream server of the same build with a
// work-queue stream like the async queue's, and returns publish: conc
// goroutines of a NATS client in this process, over loopback TCP (the
// transport of the gateway's HTTP clients), making synchronous publishes
// (each waits for its PubAck) for d; it returns how many were acknowledged
// and the time taken.
func rawJetStream(ctx context.Context, work string, body []byte, conc int) (publish func(context.Context, time.Duration) (int, time.Duration), stop func(), err error) {
	dir, err := os.MkdirTemp(work, "raw-")
	if err != nil {
		return nil, nil, err
	}
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	go ns.Start()
	var nc *nats.Conn
	stop = func() {
		if nc != nil {
			nc.Close()
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}
	if !ns.ReadyForConnections(10 * time.Second) {
		stop()
		return nil, nil, fmt.Errorf("raw NATS server did not start")
	}
	if nc, err = nats.Connect(ns.ClientURL()); err != nil {
		stop()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: "BENCH_RAW", Subjects: []string{"benchraw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		})
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	publish = func(ctx context.Context, d time.Duration) (int, time.Duration) {
		var n atomic.Int64
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var wg sync.WaitGroup
		t0 := time.Now()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rctx.Err() == nil {
					if _, err := js.Publish(rctx, "benchraw.f", body); err == nil {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return int(n.Load()), time.Since(t0)
	}
	return publish, stop, nil
}
