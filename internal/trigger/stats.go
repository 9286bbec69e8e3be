package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A trigger's counters (fired, succeeded, failed, dropped) and its last
// firing are durable: they live in the runner's atomics and fields, and a
// flusher writes those of the triggers that changed to the state bucket
// every Config.FlushInterval (default 1 s), and once more when the
// manager closes (and on Flush). So the hot path never waits on a KV
// write, and a kill -9 loses at most the last interval's counts. A
// trigger restarted by a deploy that changed it carries its counters over
// in memory; a trigger that starts in a new process loads them.

// statsSuffix ends the state key of a trigger's counters:
// <function>.<trigger>.stats (a cron trigger's tick state is
// <function>.<trigger>).
const statsSuffix = ".stats"

// triggerStats is what the state bucket keeps of a trigger's counters.
type triggerStats struct {
	Fired          uint64    `json:"fired"`
	Succeeded      uint64    `json:"succeeded"`
	Failed         uint64    `json:"failed"`
	Dropped        uint64    `json:"dropped"`
	LastFiredAt    time.Time `json:"last_fired_at,omitzero"`
	LastInvocation string    `json:"last_invocation,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
}

func (r *runner) statsKey() string { return r.key + statsSuffix }

// touch marks the runner's counters as changed since the last flush.
func (r *runner) touch() { r.dirty.Store(true) }

// loadStats adds the counters stored by an earlier process to the
// runner's. Called before the runner is published, or by flush under
// flushMu.
func (r *runner) loadStats(ctx context.Context) error {
	e, err := r.m.state.Get(ctx, r.statsKey())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		r.loaded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the counters of trigger %s: %w", r.key, err)
	}
	r.loaded = true
	var st triggerStats
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		r.m.log.Warn("trigger: undecodable counters; starting from zero", "function", r.fn, "trigger", r.t.Name, "err", err)
		return nil
	}
	r.fired.Add(st.Fired)
	r.succeeded.Add(st.Succeeded)
	r.failed.Add(st.Failed)
	r.dropped.Add(st.Dropped)
	r.mu.Lock()
	if st.LastFiredAt.After(r.lastFired) {
		r.lastFired, r.lastInv = st.LastFiredAt, st.LastInvocation
	}
	if r.lastErr == "" {
		r.lastErr = st.LastError
	}
	r.mu.Unlock()
	return nil
}

// inherit takes over the counters of the runner it replaces (the same
// trigger, changed by a deploy).
func (r *runner) inherit(old *runner) {
	old.flushMu.Lock()
	r.loaded = old.loaded
	old.flushMu.Unlock()
	r.fired.Store(old.fired.Load())
	r.succeeded.Store(old.succeeded.Load())
	r.failed.Store(old.failed.Load())
	r.dropped.Store(old.dropped.Load())
	old.mu.Lock()
	r.lastFired, r.lastInv, r.lastErr = old.lastFired, old.lastInv, old.lastErr
	old.mu.Unlock()
	r.dirty.Store(old.dirty.Load())
}

func (r *runner) snapshot() triggerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return triggerStats{
		Fired: r.fired.Load(), Succeeded: r.succeeded.Load(), Failed: r.failed.Load(), Dropped: r.dropped.Load(),
		LastFiredAt: r.lastFired, LastInvocation: r.lastInv, LastError: r.lastErr,
	}
}

// flush writes the runner's counters if they changed since the last
// flush. A trigger whose state was removed is not written again.
func (r *runner) flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	if r.forgotten {
		return nil
	}
	if !r.loaded {
		// The load at start failed: merge what is stored before
		// overwriting it.
		if err := r.loadStats(ctx); err != nil {
			return err
		}
	}
	if !r.dirty.Swap(false) {
		return nil
	}
	b, err := json.Marshal(r.snapshot())
	if err != nil {
		return err
	}
	if _, err := r.m.state.Put(ctx, r.statsKey(), b); err != nil {
		r.dirty.Store(true)
		return fmt.Errorf("storing the counters of trigger %s: %w", r.key, err)
	}
	return nil
}

// forget stops flushing the runner; its stored state is being removed.
func (r *runner) forget() {
	r.flushMu.Lock()
	r.forgotten = true
	r.flushMu.Unlock()
}

// Flush writes the counters of every trigger that changed since the last
// flush. The server calls it after the asynchronous queue drained, so the
// results of the last invocations are kept too.
func (m *Manager) Flush(ctx context.Context) error {
	m.mu.Lock()
	var rs []*runner
	for _, f := range m.fns {
		for _, r := range f.runners {
			rs = append(rs, r)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, r := range rs {
		if err := r.flush(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// flushLoop flushes every FlushInterval until the manager closes.
func (m *Manager) flushLoop() {
	t := time.NewTicker(m.cfg.FlushInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		err := m.Flush(ctx)
		cancel()
		if err != nil && !failing && m.ctx.Err() == nil {
			m.log.Warn("trigger: storing counters; will retry", "err", err)
		}
		failing = err != nil
	}
}

// pruneState removes the state of triggers that no function declares any
// more: functions deleted, or triggers removed, while the node was down.
// It runs once the registry's current functions have been synced.
func (m *Manager) pruneState(ctx context.Context) {
	keys, err := m.state.ListKeys(ctx)
	if err != nil {
		m.log.Warn("trigger: listing trigger state", "err", err)
		return
	}
	var stale []string
	for key := range keys.Keys() {
		tok := strings.Split(key, ".")
		if len(tok) < 2 || len(tok) > 3 || len(tok) == 3 && "."+tok[2] != statsSuffix {
			continue // not ours
		}
		if m.runner(tok[0], tok[1]) == nil {
			stale = append(stale, key)
		}
	}
	for _, key := range stale {
		if err := m.deleteState(ctx, key); err != nil {
			m.log.Warn("trigger: removing stale trigger state", "key", key, "err", err)
		}
	}
}
