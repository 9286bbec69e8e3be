package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hearthdev/hearth/internal/async"
)

// benchTriggers: subject trigger fan-in. 10,000 messages published as fast
// as possible on a NATS subject (an external NATS server in this process,
// reached over loopback TCP, because the node's embedded NATS has no
// listener) are delivered by a subject trigger into a warm wasm function.
// Reported: the queueing delay from publish to the start of the function's
// attempt (p50, p99) and the delivered rate; baselines measured in the same
// run: a plain NATS subscriber's publish → receive delay for the same burst
// (the transport floor), and the same burst queued directly with POST
// /async/fn (enqueue → start, i.e. without the trigger).
func benchTriggers(ctx context.Context, e *env) ([]Figure, error) {
	const events = 10_000
	dir, err := os.MkdirTemp(e.cfg.WorkDir, "trg-nats-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("NATS server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()

	// Baseline 1: publish → receive by a plain subscriber.
	var mu sync.Mutex
	recv := make([]time.Time, events)
	got := 0
	done := make(chan struct{})
	sub, err := nc.Subscribe("bench.raw", func(m *nats.Msg) {
		i, _ := strconv.Atoi(string(m.Data))
		mu.Lock()
		recv[i] = time.Now()
		got++
		if got == events {
			close(done)
		}
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	nc.Flush()
	pub := make([]time.Time, events)
	for i := range events {
		pub[i] = time.Now()
		nc.Publish("bench.raw", []byte(strconv.Itoa(i)))
	}
	nc.Flush()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("plain subscriber got %d of %d messages", got, events)
	}
	sub.Unsubscribe()
	raw := make([]time.Duration, events)
	for i := range events {
		raw[i] = recv[i].Sub(pub[i])
	}

	// The function: the echo-c wasm example with a subject trigger.
	fn := "bench-trigger"
	extra := fmt.Sprintf("scale: {min: 1, max: 16}\nconcurrency: 4\ntriggers: [{type: subject, name: fanin, subject: bench.in, url: %q, concurrency: 16}]\n", ns.ClientURL())
	if err := e.deployDir(ctx, filepath.Join(e.src, "examples", "echo-c"), fn, extra); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ts, err := e.cl.Triggers(ctx, fn)
		if err == nil && len(ts) == 1 && ts[0].State == "running" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the subject trigger did not start: %v %v", ts, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Warm it.
	if _, err := e.cl.InvokeAsync(ctx, fn, "/", nil, nil); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond)

	// The burst: each message carries a Nats-Msg-Id, so its invocation id
	// is known (the trigger's idempotency key is sub/<trigger>/<msg id>).
	t0 := time.Now()
	for i := range events {
		m := nats.NewMsg("bench.in")
		m.Header.Set(nats.MsgIdHdr, "m"+strconv.Itoa(i))
		m.Data = []byte(`{"i":` + strconv.Itoa(i) + `}`)
		pub[i] = time.Now()
		if err := nc.PublishMsg(m); err != nil {
			return nil, err
		}
	}
	nc.Flush()
	trg, err := waitStarted(ctx, e, fn, pub, func(i int) string { return async.IDForKey(fn, "sub/fanin/m"+strconv.Itoa(i)) })
	if err != nil {
		return nil, err
	}
	var last time.Time
	for i, d := range trg {
		if t := pub[i].Add(d); t.After(last) {
			last = t
		}
	}
	rate := float64(events) / last.Sub(t0).Seconds()

	// Baseline 2: the same burst through POST /async/fn (16 clients), with
	// the gateway's own enqueue time as the start.
	ids := make([]string, events)
	enq := make([]time.Time, events)
	var wg sync.WaitGroup
	var firstErr error
	var emu sync.Mutex
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				enq[i] = time.Now()
				id, err := e.cl.InvokeAsync(ctx, fn, "/", nil, nil)
				if err != nil {
					emu.Lock()
					firstErr = err
					emu.Unlock()
					continue
				}
				ids[i] = id
			}
		}()
	}
	for i := range events {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	direct, err := waitStarted(ctx, e, fn, enq, func(i int) string { return ids[i] })
	if err != nil {
		return nil, err
	}

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rp99, tp50, tp99, dp99 := pct(raw, 99), pct(trg, 50), pct(trg, 99), pct(direct, 99)
	return []Figure{
		{Name: "NATS publish → plain subscriber, 10k burst, p99 (baseline)", Value: ms(rp99), Unit: "ms"},
		{Name: "async POST /async/fn → function start, 10k burst, p99 (baseline)", Value: ms(dp99), Unit: "ms"},
		{Name: "subject trigger fan-in: publish → warm wasm start, 10k burst, p50", Value: ms(tp50), Unit: "ms"},
		{Name: "subject trigger fan-in: publish → warm wasm start, 10k burst, p99", Value: ms(tp99), Unit: "ms",
			Baseline: "async direct p99", BaseVal: ms(dp99), Ratio: float64(tp99) / float64(max(dp99, 1)),
			Note: fmt.Sprintf("delivered %.0f events/s", rate)},
	}, nil
}

// waitStarted waits until every invocation ids(i) has started and returns
// each one's delay from from[i] to its start.
func waitStarted(ctx context.Context, e *env, fn string, from []time.Time, ids func(int) string) ([]time.Duration, error) {
	n := len(from)
	out := make([]time.Duration, n)
	have := make([]bool, n)
	left := n
	deadline := time.Now().Add(5 * time.Minute)
	for left > 0 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %d of %d invocations did not start in 5 minutes", fn, left, n)
		}
		for i := range n {
			if have[i] {
				continue
			}
			st, err := e.cl.Invocation(ctx, ids(i))
			if err != nil || st.StartedAt.IsZero() {
				// Not queued or started yet: try again on the next pass.
				break
			}
			out[i], have[i] = st.StartedAt.Sub(from[i]), true
			left--
		}
		if left > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out, nil
}

// pct is the p-th percentile of ds (sorts a copy).
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}
