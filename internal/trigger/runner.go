package trigger

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
)

// runner runs one trigger of one function.
type runner struct {
	m        *Manager
	fn       string
	protocol string
	t        manifest.Trigger
	key      string // <function>.<trigger>, the state key

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// cleanup removes the trigger's durable state; set by the kind.
	cleanupMu sync.Mutex
	cleanup   func(ctx context.Context) error

	fired, succeeded, failed, dropped atomic.Uint64
	lag                               atomic.Int64
	dirty                             atomic.Bool // counters changed since the last flush (stats.go)

	flushMu   sync.Mutex
	loaded    bool // the stored counters were added (under flushMu)
	forgotten bool // the state was removed: flush no more (under flushMu)

	mu         sync.Mutex
	state      string
	err        string
	lastErr    string
	lastFired  time.Time
	lastInv    string
	next       time.Time
	cFired     prometheus.Counter
	cSucceeded prometheus.Counter
	cFailed    prometheus.Counter
	cDropped   prometheus.Counter
	gLag       prometheus.Gauge
}

func (m *Manager) newRunner(fn, protocol string, t manifest.Trigger) *runner {
	r := &runner{m: m, fn: fn, protocol: protocol, t: t, key: fn + "." + t.Name, state: api.TriggerStarting, done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(m.ctx)
	lbl := prometheus.Labels{"function": fn, "trigger": t.Name, "type": t.Type}
	r.cFired = m.met.fired.With(lbl)
	r.cSucceeded = m.met.succeeded.With(lbl)
	r.cFailed = m.met.failed.With(lbl)
	r.cDropped = m.met.dropped.With(lbl)
	r.gLag = m.met.lag.With(lbl)
	return r
}

// start runs the trigger in a goroutine owned by the manager.
func (r *runner) start() {
	if r.t.Type == manifest.TriggerHTTP {
		// Served by the gateway from the route table; nothing to run.
		r.setState(api.TriggerRunning, "")
		close(r.done)
		return
	}
	r.m.wg.Add(1)
	go func() {
		defer r.m.wg.Done()
		defer close(r.done)
		r.loop()
	}()
}

// loop runs the trigger, restarting it after a failure with a growing
// delay, until it is stopped.
func (r *runner) loop() {
	delay := r.m.cfg.RetryDelay
	for r.ctx.Err() == nil {
		r.setState(api.TriggerStarting, "")
		var err error
		switch r.t.Type {
		case manifest.TriggerCron:
			err = r.runCron(r.ctx)
		case manifest.TriggerSubject:
			err = r.runSubject(r.ctx)
		case manifest.TriggerStream, manifest.TriggerEvent, manifest.TriggerBucket:
			err = r.runConsumer(r.ctx)
		default:
			err = fmt.Errorf("unknown trigger type %q", r.t.Type)
		}
		if r.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		r.setState(api.TriggerError, err.Error())
		r.m.log.Warn("trigger: not running; will retry", "function", r.fn, "trigger", r.t.Name, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-r.ctx.Done():
			return
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// stop stops the trigger and waits for it; with forget, it also removes
// the trigger's durable state and metrics.
func (r *runner) stop(forget bool) {
	r.cancel()
	<-r.done
	if !forget {
		return
	}
	r.forget()
	r.cleanupMu.Lock()
	c := r.cleanup
	r.cleanupMu.Unlock()
	if c == nil {
		c = r.defaultCleanup
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c(ctx); err != nil {
		r.m.log.Warn("trigger: removing state", "function", r.fn, "trigger", r.t.Name, "err", err)
	}
	r.m.met.forget(r.fn, r.t.Name, r.t.Type)
}

// defaultCleanup removes what a trigger may have left without having run
// in this process: its state keys and its consumer.
func (r *runner) defaultCleanup(ctx context.Context) error {
	if err := r.m.deleteState(ctx, r.statsKey()); err != nil {
		return err
	}
	switch r.t.Type {
	case manifest.TriggerCron:
		return r.m.deleteState(ctx, r.key)
	case manifest.TriggerEvent, manifest.TriggerBucket:
		stream, _, durable := r.consumerTarget()
		err := r.m.js.DeleteConsumer(ctx, stream, durable)
		if err != nil && !isNotFound(err) {
			return err
		}
	case manifest.TriggerStream:
		if r.t.URL == "" {
			_, _, durable := r.consumerTarget()
			err := r.m.js.DeleteConsumer(ctx, r.t.Stream, durable)
			if err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	return nil
}

func (r *runner) setCleanup(f func(ctx context.Context) error) {
	r.cleanupMu.Lock()
	r.cleanup = f
	r.cleanupMu.Unlock()
}

func (r *runner) setState(state, err string) {
	r.mu.Lock()
	r.state, r.err = state, err
	r.mu.Unlock()
}

func (r *runner) setNext(t time.Time) {
	r.mu.Lock()
	r.next = t
	r.mu.Unlock()
}

func (r *runner) setLag(n int64) {
	r.lag.Store(n)
	r.gLag.Set(float64(n))
}

func (r *runner) status() api.TriggerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := api.TriggerStatus{
		Function: r.fn, Name: r.t.Name, Type: r.t.Type, Source: describe(r.t),
		State: r.state, Error: r.err, LastError: r.lastErr,
		Fired: r.fired.Load(), Succeeded: r.succeeded.Load(), Failed: r.failed.Load(), Dropped: r.dropped.Load(),
		Lag: r.lag.Load(), LastInvocation: r.lastInv,
	}
	if !r.lastFired.IsZero() {
		t := r.lastFired
		st.LastFiredAt = &t
	}
	if !r.next.IsZero() && r.t.Type == manifest.TriggerCron {
		t := r.next
		st.NextFireAt = &t
	}
	return st
}

// describe is a one-line summary of what a trigger listens to.
func describe(t manifest.Trigger) string {
	at := ""
	if t.URL != "" {
		at = " at " + t.URL
	}
	switch t.Type {
	case manifest.TriggerCron:
		tz := t.Timezone
		if tz == "" {
			tz = "UTC"
		}
		return fmt.Sprintf("%s (%s, catch-up %s)", t.Schedule, tz, t.CatchUp)
	case manifest.TriggerSubject:
		return "subject " + t.Subject + at
	case manifest.TriggerStream:
		s := "stream " + t.Stream
		if t.Subject != "" {
			s += " (" + t.Subject + ")"
		}
		return s + at
	case manifest.TriggerBucket:
		s := "bucket " + t.Bucket
		if t.Prefix != "" {
			s += " prefix " + t.Prefix
		}
		return fmt.Sprintf("%s on %v", s, t.Events)
	case manifest.TriggerEvent:
		return "topic " + t.Topic
	case manifest.TriggerHTTP:
		if len(t.Methods) == 0 {
			return "any " + t.Path
		}
		return fmt.Sprint(t.Methods, " ", t.Path)
	}
	return t.Type
}

// drop counts an event that could not be delivered.
func (r *runner) drop(err error) {
	r.dropped.Add(1)
	r.cDropped.Inc()
	r.setLastErr(err.Error())
	r.m.log.Warn("trigger: event not delivered", "function", r.fn, "trigger", r.t.Name, "err", err)
}

// fire queues an asynchronous invocation of the function with e. key is
// the idempotency key ("" for none). It returns the invocation id.
func (r *runner) fire(ctx context.Context, e *events.Event, key string, hops int) (async.Accepted, error) {
	hdr, body, err := events.Encode(e, r.protocol)
	if err != nil {
		return async.Accepted{}, err
	}
	hdr.Set(HeaderTrigger, r.t.Name)
	hdr.Set(HeaderTriggerType, r.t.Type)
	if hops > 0 {
		hdr.Set(HeaderEventHops, strconv.Itoa(hops))
	}
	hdr.Set(HeaderFiredAt, time.Now().UTC().Format(time.RFC3339Nano))
	if key != "" && !async.ValidKey(key) {
		key = ""
	}
	acc, err := r.m.cfg.Queue.Enqueue(ctx, async.Request{
		Function: r.fn, Method: http.MethodPost, Path: "/", Header: hdr, Body: body, IdempotencyKey: key,
	})
	if err != nil {
		return acc, fmt.Errorf("queuing the invocation: %w", err)
	}
	if !acc.Duplicate {
		r.fired.Add(1)
		r.cFired.Inc()
	}
	r.markFired(acc.ID)
	return acc, nil
}

// markFired records the last firing.
func (r *runner) markFired(invocation string) {
	r.mu.Lock()
	r.lastFired = r.m.cfg.Now().UTC()
	r.lastInv = invocation
	r.mu.Unlock()
	r.touch()
}

func (r *runner) setLastErr(msg string) {
	r.mu.Lock()
	r.lastErr = msg
	r.mu.Unlock()
	r.touch()
}

// result counts the result of an attempt of an invocation the trigger
// fired.
func (r *runner) result(failed bool, msg string) {
	if failed {
		r.failed.Add(1)
		r.cFailed.Inc()
		r.setLastErr(msg)
		return
	}
	r.succeeded.Add(1)
	r.cSucceeded.Inc()
	r.touch()
}
