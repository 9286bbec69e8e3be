package scheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/keepalive"
)

// fakeDriver is a driver whose instances block until released; it lets the
// tests drive the scheduler's placement logic deterministically.
type fakeDriver struct {
	started, stopped atomic.Int32
	gate             chan struct{} // invocations wait on it when non-nil
	fail             atomic.Bool   // invocations fail and report unhealthy
}

func (d *fakeDriver) Name() string { return "fake" }
func (d *fakeDriver) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	d.started.Add(1)
	return &fakeInstance{d: d}, nil
}

type fakeInstance struct {
	d       *fakeDriver
	stopped atomic.Bool
	broken  atomic.Bool
}

func (i *fakeInstance) Invoke(ctx context.Context, req *driver.Request) (*driver.Response, error) {
	if i.stopped.Load() {
		return nil, driver.ErrStopped
	}
	if i.d.gate != nil {
		select {
		case <-i.d.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if i.d.fail.Load() {
		i.broken.Store(true)
		return nil, driver.Errorf(driver.ErrCrashed, "boom")
	}
	return &driver.Response{Status: 200, Body: []byte("ok")}, nil
}
func (i *fakeInstance) Stop(ctx context.Context) error {
	if !i.stopped.Swap(true) {
		i.d.stopped.Add(1)
	}
	return nil
}
func (i *fakeInstance) Usage() driver.Usage { return driver.Usage{} }
func (i *fakeInstance) Healthy() bool       { return !i.broken.Load() }

func newTest(t *testing.T, d *fakeDriver, cfg Config) *Scheduler {
	t.Helper()
	cfg.Drivers = map[string]driver.Driver{"fake": d}
	s := New(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func fn(version, concurrency, max int) *Function {
	return &Function{
		Isolation: "fake",
		ScaleMax:  max,
		Spec: driver.Spec{Function: "f", Version: version, Concurrency: concurrency,
			Timeout: 5 * time.Second},
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReuseWarmInstance(t *testing.T) {
	d := &fakeDriver{}
	s := newTest(t, d, Config{})
	f := fn(1, 1, 10)
	for i := range 5 {
		_, out, err := s.Invoke(context.Background(), f, &driver.Request{})
		if err != nil {
			t.Fatal(err)
		}
		if out.Cold != (i == 0) {
			t.Fatalf("invocation %d: cold = %v", i, out.Cold)
		}
	}
	if got := d.started.Load(); got != 1 {
		t.Fatalf("started %d instances for sequential calls, want 1", got)
	}
}

func TestConcurrencyAndQueue(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{})}
	s := newTest(t, d, Config{QueueSize: 3})
	f := fn(1, 2, 2) // capacity 4, queue 3

	var ok, overloaded atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.Invoke(context.Background(), f, &driver.Request{})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrOverloaded):
				var oe *OverloadError
				if !errors.As(err, &oe) || oe.RetryAfter <= 0 {
					t.Errorf("overload error without Retry-After: %v", err)
				}
				overloaded.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
		// One at a time, so the outcome does not depend on start races.
		waitFor(t, "request placed", func() bool {
			st := s.Status("f")
			return st.InFlight+st.QueueDepth+int(overloaded.Load()) == i+1 && st.Starting == 0
		})
	}
	// 4 in flight + 3 queued; the other 3 are rejected at once.
	st := s.Status("f")
	if st.InFlight != 4 || st.QueueDepth != 3 || st.Instances != 2 || overloaded.Load() != 3 {
		t.Fatalf("status = %+v, %d rejected; want 4 in flight, 3 queued, 2 instances, 3 rejected", st, overloaded.Load())
	}
	close(d.gate)
	wg.Wait()
	if ok.Load() != 7 {
		t.Fatalf("ok = %d, want 7", ok.Load())
	}
	if d.started.Load() != 2 {
		t.Fatalf("started %d instances, want scale.max 2", d.started.Load())
	}
}

func TestBurstFromZeroStartsAtOnce(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{})}
	s := newTest(t, d, Config{})
	f := fn(1, 2, 8) // 20 requests at concurrency 2 need 10, capped at 8
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Invoke(context.Background(), f, &driver.Request{}); err != nil {
				t.Errorf("invoke: %v", err)
			}
		}()
	}
	waitFor(t, "all placed", func() bool { st := s.Status("f"); return st.InFlight+st.QueueDepth == 20 && st.Starting == 0 })
	if st := s.Status("f"); st.Instances != 8 || st.InFlight != 16 || st.QueueDepth != 4 {
		t.Fatalf("status %+v: want 8 instances, 16 in flight, 4 queued", st)
	}
	close(d.gate)
	wg.Wait()
	if d.started.Load() != 8 {
		t.Fatalf("started %d", d.started.Load())
	}
}

func TestQueueTimeout(t *testing.T) {
	d := &fakeDriver{gate: make(chan struct{})}
	defer close(d.gate)
	s := newTest(t, d, Config{MaxQueueWait: 50 * time.Millisecond})
	f := fn(1, 1, 1)
	go s.Invoke(context.Background(), f, &driver.Request{})
	waitFor(t, "first invocation in flight", func() bool { return s.Status("f").InFlight == 1 })
	start := time.Now()
	_, _, err := s.Invoke(context.Background(), f, &driver.Request{})
	var oe *OverloadError
	if !errors.As(err, &oe) || oe.Reason != "queue_timeout" {
		t.Fatalf("err = %v, want queue timeout", err)
	}
	if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
		t.Fatalf("waited %v", el)
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock               { c := &fakeClock{}; c.ns.Store(time.Now().UnixNano()); return c }
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func TestKeepAliveWindowThenScaleToZero(t *testing.T) {
	d := &fakeDriver{}
	clk := newClock()
	s := newTest(t, d, Config{KeepAlive: "fixed-1m", TickInterval: time.Millisecond, Now: clk.Now})
	f := fn(1, 1, 5)
	f.ScaleMin = 1
	if _, _, err := s.Invoke(context.Background(), f, &driver.Request{}); err != nil {
		t.Fatal(err)
	}
	// scale.min keeps one instance even past the keep-alive.
	clk.Add(2 * time.Minute)
	time.Sleep(20 * time.Millisecond)
	if st := s.Status("f"); st.Instances != 1 {
		t.Fatalf("instances = %d, want scale.min 1", st.Instances)
	}
	f.ScaleMin = 0
	f.Spec.Version = 2 // a new version retires the old pool
	if _, _, err := s.Invoke(context.Background(), f, &driver.Request{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "old version stopped", func() bool { return d.stopped.Load() == 1 })
	// Inside the 1-minute window the idle instance stays loaded.
	clk.Add(30 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if st := s.Status("f"); st.Instances < 1 || st.KeepAlive != "fixed-1m" {
		t.Fatalf("inside the window: %+v", st)
	}
	clk.Add(31 * time.Second)
	waitFor(t, "scale to zero", func() bool { return s.Status("f").Instances == 0 })
	waitFor(t, "all stopped", func() bool { return d.stopped.Load() == d.started.Load() })
}

func TestPrewarmPolicy(t *testing.T) {
	d := &fakeDriver{}
	clk := newClock()
	s := newTest(t, d, Config{KeepAlive: "test-prewarm", TickInterval: time.Millisecond, Now: clk.Now})
	s.policies["test-prewarm"] = prewarmPolicy{}
	f := fn(1, 1, 5)
	if _, _, err := s.Invoke(context.Background(), f, &driver.Request{}); err != nil {
		t.Fatal(err)
	}
	// The policy unloads at once and pre-warms after 5 minutes for 1 minute.
	waitFor(t, "unloaded", func() bool { return s.Status("f").Instances == 0 })
	clk.Add(5*time.Minute + time.Second)
	waitFor(t, "pre-warmed", func() bool { return s.Status("f").Instances == 1 })
	_, out, err := s.Invoke(context.Background(), f, &driver.Request{})
	if err != nil || out.Cold {
		t.Fatalf("invocation on a pre-warmed instance: err=%v cold=%v", err, out.Cold)
	}
}

type prewarmPolicy struct{}

func (prewarmPolicy) Name() string                                  { return "test-prewarm" }
func (prewarmPolicy) Observe(string, time.Time, keepalive.FuncInfo) {}
func (prewarmPolicy) Idle(string, time.Time) keepalive.Decision {
	return keepalive.Decision{PreWarm: 5 * time.Minute, KeepAlive: time.Minute}
}
func (prewarmPolicy) Expired(string, time.Time) keepalive.Decision { return keepalive.Decision{} }
func (prewarmPolicy) Forget(string)                                {}

func TestScaleMinPrewarms(t *testing.T) {
	d := &fakeDriver{}
	s := newTest(t, d, Config{TickInterval: time.Millisecond})
	f := fn(1, 1, 5)
	f.ScaleMin = 3
	if _, _, err := s.Invoke(context.Background(), f, &driver.Request{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "scale.min instances", func() bool { return s.Status("f").Instances == 3 })
}

func TestBrokenInstanceReplaced(t *testing.T) {
	d := &fakeDriver{}
	s := newTest(t, d, Config{})
	f := fn(1, 1, 1)
	d.fail.Store(true)
	if _, _, err := s.Invoke(context.Background(), f, &driver.Request{}); !errors.Is(err, driver.ErrCrashed) {
		t.Fatalf("err = %v", err)
	}
	waitFor(t, "broken instance stopped", func() bool { return d.stopped.Load() == 1 })
	d.fail.Store(false)
	_, out, err := s.Invoke(context.Background(), f, &driver.Request{})
	if err != nil || !out.Cold {
		t.Fatalf("after crash: err=%v cold=%v, want a new instance", err, out.Cold)
	}
}

func TestRemoveAndCloseStopEverything(t *testing.T) {
	d := &fakeDriver{}
	s := newTest(t, d, Config{})
	for v := range 3 {
		f := fn(1, 1, 3)
		f.Spec.Function = string(rune('a' + v))
		for range 3 {
			go s.Invoke(context.Background(), f, &driver.Request{})
		}
	}
	waitFor(t, "instances", func() bool { return d.started.Load() >= 3 })
	waitFor(t, "calls done", func() bool { return s.Status("a").InFlight+s.Status("b").InFlight+s.Status("c").InFlight == 0 })
	s.Remove(context.Background(), "a")
	if st := s.Status("a"); st.Instances != 0 {
		t.Fatalf("after Remove: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d.started.Load() != d.stopped.Load() {
		t.Fatalf("started %d, stopped %d", d.started.Load(), d.stopped.Load())
	}
	if _, _, err := s.Invoke(context.Background(), fn(1, 1, 1), &driver.Request{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Invoke after Close: %v", err)
	}
}
