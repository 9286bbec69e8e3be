// Package keepalive decides how long an idle function instance stays loaded
// and when to load one ahead of a predicted invocation (pre-warming).
//
// A Policy is the one plug-in point for this decision: the live scheduler and
// the trace simulator (package sim) drive the same Policy values through the
// same three calls, so what `hearth sim` measures is what production runs.
// Policies never read a clock: every call carries the time of the event, which
// keeps them deterministic under replay and trivial to test.
//
// Built-in policies (see New):
//
//   - fixed-<duration>: no pre-warming, keep an idle instance for a fixed time
//     (fixed-10m is AWS Lambda's observed 2019 behaviour).
//   - hybrid: the hybrid histogram policy of Shahrad et al., "Serverless in
//     the Wild" (USENIX ATC 2020).
//   - hearth: a cost-based policy that picks, per function, the loaded window
//     that minimises expected cold-start cost plus idle memory cost under the
//     function's learned idle-time distribution; see Hearth.
package keepalive

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// Policy decides, per function, how long an idle instance stays loaded and
// when to pre-warm one. Implementations are safe for concurrent use and keep
// bounded state per function; Forget releases it.
//
// The caller reports events in time order per function:
//
//	Observe(arrival) … Idle(end of busy period) → window [, Expired(end of window) → window …] Observe(next arrival) …
//
// A window is where the caller keeps an instance loaded (see Decision). When a
// window ends without an invocation the caller unloads the instance and calls
// Expired, which may schedule one more window: that lets a policy cover a
// function whose idle times cluster around several values (a burst every
// hour) without holding memory in between.
type Policy interface {
	// Name is the policy's canonical name, as accepted by New.
	Name() string
	// Observe records that fn was invoked at t (the arrival), with what is
	// known about the function.
	Observe(fn string, t time.Time, info FuncInfo)
	// Idle is called when fn's last busy instance becomes idle at t. The
	// returned window is relative to t.
	Idle(fn string, t time.Time) Decision
	// Expired is called when the last window for fn ended at t with no
	// invocation. The returned window is relative to t; the zero Decision
	// means stay unloaded until the next invocation.
	Expired(fn string, t time.Time) Decision
	// Forget drops everything the policy learned about fn.
	Forget(fn string)
}

// FuncInfo is what the caller knows about a function when it is invoked.
// Zero fields mean unknown.
type FuncInfo struct {
	// MemoryMB is the memory an instance of the function holds while loaded.
	MemoryMB int
	// ColdStart is the measured cost of starting an instance (load, compile,
	// init). Policies that weigh it fall back to a default when it is zero.
	ColdStart time.Duration
}

// Decision is a loaded window for a function that is idle, relative to the
// time t of the Idle or Expired call that returned it.
//
// If PreWarm is zero, the idle instance stays loaded until t+KeepAlive. If
// PreWarm is positive, the caller unloads idle instances at once and loads one
// again at t+PreWarm, keeping it until t+PreWarm+KeepAlive. Either way the
// window ends early if the function is invoked; a KeepAlive of zero means
// unload now and do not pre-warm.
type Decision struct {
	PreWarm   time.Duration
	KeepAlive time.Duration
}

// Loaded reports whether d keeps an instance loaded at offset since the call
// that returned it.
func (d Decision) Loaded(offset time.Duration) bool {
	return offset >= d.PreWarm && offset < d.PreWarm+d.KeepAlive
}

// ErrUnknownPolicy is returned by New for a name it does not know.
var ErrUnknownPolicy = errors.New("unknown keep-alive policy")

// Names lists the built-in policies that `all` means, baselines first.
func Names() []string { return []string{"fixed-10m", "hybrid", "hearth"} }

// New returns a fresh policy by name: "fixed-<duration>" (e.g. fixed-10m,
// fixed-1h30m), "hybrid" or "hearth".
func New(name string) (Policy, error) {
	switch {
	case name == "hybrid":
		return NewHybrid(HybridConfig{Fallback: 10 * time.Minute}), nil
	case name == "hybrid-4h":
		return NewHybrid(HybridConfig{Name: name}), nil
	case name == "hearth":
		return NewHearth(HearthConfig{}), nil
	case strings.HasPrefix(name, "fixed-"):
		d, err := time.ParseDuration(strings.TrimPrefix(name, "fixed-"))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%w %q: want fixed-<duration>, e.g. fixed-10m", ErrUnknownPolicy, name)
		}
		return NewFixed(d), nil
	}
	return nil, fmt.Errorf("%w %q: use one of fixed-<duration> (e.g. fixed-10m), hybrid, hearth", ErrUnknownPolicy, name)
}

// Fixed keeps an idle instance loaded for a fixed time and never pre-warms.
type Fixed struct {
	keepAlive time.Duration
}

var _ Policy = (*Fixed)(nil)

// NewFixed returns the fixed keep-alive policy.
func NewFixed(keepAlive time.Duration) *Fixed { return &Fixed{keepAlive: keepAlive} }

// Name implements Policy.
func (p *Fixed) Name() string { return "fixed-" + shortDuration(p.keepAlive) }

// Observe implements Policy; a fixed policy learns nothing.
func (p *Fixed) Observe(string, time.Time, FuncInfo) {}

// Idle implements Policy.
func (p *Fixed) Idle(string, time.Time) Decision { return Decision{KeepAlive: p.keepAlive} }

// Expired implements Policy: one window only.
func (p *Fixed) Expired(string, time.Time) Decision { return Decision{} }

// Forget implements Policy.
func (p *Fixed) Forget(string) {}

// shortDuration formats d without zero trailing units: 10m, 1h30m, 45s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// states is a sharded map of per-function state, so that concurrent callers
// working on different functions rarely contend.
type states[T any] struct {
	seed   maphash.Seed
	shards [32]shard[T]
}

type shard[T any] struct {
	mu sync.Mutex
	m  map[string]*T
}

func newStates[T any]() *states[T] {
	s := &states[T]{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*T)
	}
	return s
}

// with runs f on fn's state, creating it if needed, under its shard's lock.
func (s *states[T]) with(fn string, f func(*T)) {
	sh := &s.shards[maphash.String(s.seed, fn)%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.m[fn]
	if !ok {
		st = new(T)
		sh.m[fn] = st
	}
	f(st)
}

func (s *states[T]) forget(fn string) {
	sh := &s.shards[maphash.String(s.seed, fn)%uint64(len(s.shards))]
	sh.mu.Lock()
	delete(sh.m, fn)
	sh.mu.Unlock()
}

// idleClock turns Observe/Idle calls into idle times: the time from the end
// of one busy period to the start of the next.
type idleClock struct {
	idleSince time.Time
	idle      bool
}

// arrive returns the idle time that ends at t, if fn was idle.
func (c *idleClock) arrive(t time.Time) (time.Duration, bool) {
	if !c.idle {
		return 0, false
	}
	c.idle = false
	it := t.Sub(c.idleSince)
	if it < 0 {
		it = 0
	}
	return it, true
}

func (c *idleClock) rest(t time.Time) {
	c.idleSince, c.idle = t, true
}
