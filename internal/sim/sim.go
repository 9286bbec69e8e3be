// Package sim replays a per-minute invocation trace in the Azure Functions
// 2019 format through keep-alive policies and measures cold starts and the
// memory held by idle instances.
//
// The policies are driven only through keepalive.Policy, the interface the
// live scheduler uses, so the simulator measures the production code.
//
// # Model
//
// Time advances in whole minutes, as in the trace and in Shahrad et al.'s
// simulator. A function has at most one instance, and a minute with one or
// more invocations is one busy period of it: the invocations of that minute
// start at the minute's beginning and share the instance. The busy period
// lasts ⌈average duration / 1 min⌉ minutes (at least one), so long-running
// functions spill into the following minutes, and busy periods that overlap
// or touch merge.
//
// At the end of a busy period (time t, the first minute in which the
// function is neither running nor invoked) the simulator calls Policy.Idle and applies
// its Decision: an instance is loaded during [t+PreWarm, t+PreWarm+KeepAlive).
// When that window ends with no invocation it calls Policy.Expired at its end
// and applies the next window the same way, until the policy returns none.
// An arrival in minute m is
//
//   - warm if the function is still busy at m, or an instance is loaded at m;
//   - otherwise one cold start (the first invocation of the minute; the
//     others of that minute reuse the instance it started).
//
// Every arrival is reported with Policy.Observe. Wasted memory-time is the
// time an instance is loaded but not busy, times the app's memory, clipped to
// the end of the trace. There is no randomness: a run is a pure function of
// the trace and the policy.
package sim

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/keepalive"
)

// Result is the outcome of replaying a trace through one policy.
type Result struct {
	Policy string `json:"policy"`
	// Invocations is the number of invocations in the trace.
	Invocations int64 `json:"invocations"`
	// ColdStarts is the number of invocations that found no loaded instance.
	ColdStarts int64 `json:"cold_starts"`
	// ColdStartFraction is ColdStarts / Invocations.
	ColdStartFraction float64 `json:"cold_start_fraction"`
	// P75FunctionColdStartFraction is the 75th percentile, over invoked
	// functions, of each function's cold-start fraction.
	P75FunctionColdStartFraction float64 `json:"p75_function_cold_start_fraction"`
	// WastedMemoryGBSeconds is the memory-time of loaded idle instances.
	WastedMemoryGBSeconds float64 `json:"wasted_memory_gb_seconds"`
}

// Start is the time the first minute of a replayed trace begins; the times
// handed to policies are Start plus the minute offset.
var Start = time.Date(2019, 7, 15, 0, 0, 0, 0, time.UTC)

// Run replays tr through p, which must be fresh.
func Run(ctx context.Context, tr *Trace, p keepalive.Policy) (Result, error) {
	res, _, err := run(ctx, tr, p)
	return res, err
}

// run is Run, also returning the state of each function at the end.
func run(ctx context.Context, tr *Trace, p keepalive.Policy) (Result, []fnState, error) {
	res := Result{Policy: p.Name()}
	st := make([]fnState, len(tr.Functions))
	for i := range tr.Functions {
		f := &tr.Functions[i]
		span := int((f.Duration + time.Minute - 1) / time.Minute)
		st[i] = fnState{span: max(span, 1), busyUntil: -1, gbMinute: float64(f.MemoryMB) / 1024}
	}
	minute := func(m int) time.Duration { return time.Duration(m) * time.Minute }
	// Minutes outside, functions inside: calls reach the policy in time
	// order, as they would live.
	for m := 0; m < tr.Minutes; m++ {
		if m%60 == 0 {
			if err := ctx.Err(); err != nil {
				return Result{}, nil, err
			}
		}
		now := minute(m)
		for i := range tr.Functions {
			f, s := &tr.Functions[i], &st[i]
			c := f.Counts[m]
			if s.busyUntil == m && c == 0 {
				s.idleSince, s.windows = now, 0
				s.open(now, p.Idle(f.Name, Start.Add(now)))
			}
			if s.busyUntil >= 0 && s.busyUntil < m {
				s.expire(p, f.Name, now)
			}
			if c == 0 {
				continue
			}
			s.invocations += int64(c)
			if s.busyUntil < m { // idle at m, or never run
				if s.busyUntil < 0 || !s.loaded || now < s.winFrom || now >= s.winTo {
					s.cold++
				}
				if s.busyUntil >= 0 && s.loaded {
					s.waste += overlap(s.winFrom, s.winTo, s.idleSince, now)
				}
				s.loaded = false
			}
			p.Observe(f.Name, Start.Add(now), keepalive.FuncInfo{MemoryMB: f.MemoryMB})
			s.busyUntil = max(s.busyUntil, m+s.span)
		}
	}
	end := minute(tr.Minutes)
	var wasteGBMin float64
	fractions := make([]float64, 0, len(st))
	for i := range st {
		s := &st[i]
		if s.busyUntil >= 0 && s.busyUntil < tr.Minutes { // idle at the end
			s.expire(p, tr.Functions[i].Name, end)
			if s.loaded {
				s.waste += overlap(s.winFrom, s.winTo, s.idleSince, end)
			}
		}
		wasteGBMin += s.gbMinute * s.waste.Minutes()
		res.Invocations += s.invocations
		res.ColdStarts += s.cold
		if s.invocations > 0 {
			fractions = append(fractions, float64(s.cold)/float64(s.invocations))
		}
	}
	if res.Invocations > 0 {
		res.ColdStartFraction = float64(res.ColdStarts) / float64(res.Invocations)
	}
	res.P75FunctionColdStartFraction = percentile(fractions, 0.75)
	res.WastedMemoryGBSeconds = wasteGBMin * 60
	return res, st, nil
}

// maxWindows bounds the windows one idle period may get, against a policy
// that keeps returning tiny windows.
const maxWindows = 1000

type fnState struct {
	span        int // minutes a busy period lasts
	busyUntil   int // first minute the function is not busy; -1 before its first run
	gbMinute    float64
	invocations int64
	cold        int64

	// The current idle period, as offsets from Start.
	idleSince      time.Duration
	loaded         bool          // a window is pending or open
	winFrom, winTo time.Duration // the window
	windows        int           // windows in this idle period
	waste          time.Duration // loaded idle time, all idle periods
}

// open starts the window d returned at offset at.
func (s *fnState) open(at time.Duration, d keepalive.Decision) {
	s.windows++
	s.winFrom = at + max(d.PreWarm, 0)
	s.winTo = s.winFrom + max(d.KeepAlive, 0)
	s.loaded = d.KeepAlive > 0 && s.windows <= maxWindows
}

// expire closes the windows that ended by now, asking the policy for the next.
func (s *fnState) expire(p keepalive.Policy, fn string, now time.Duration) {
	for s.loaded && s.winTo <= now {
		s.waste += s.winTo - s.winFrom
		s.open(s.winTo, p.Expired(fn, Start.Add(s.winTo)))
	}
}

// overlap is the length of [a, b) ∩ [c, d).
func overlap(a, b, c, d time.Duration) time.Duration {
	return max(0, min(b, d)-max(a, c))
}

// percentile is the nearest-rank p-th percentile of xs (sorted in place).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[max(i, 0)]
}

// RunPolicies replays tr through a fresh policy per name, in parallel, and
// returns the results in the order of names.
func RunPolicies(ctx context.Context, tr *Trace, names []string) ([]Result, error) {
	policies := make([]keepalive.Policy, len(names))
	for i, n := range names {
		p, err := keepalive.New(n)
		if err != nil {
			return nil, err
		}
		policies[i] = p
	}
	results := make([]Result, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, p := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Run(ctx, tr, p)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", names[i], err)
		}
	}
	return results, nil
}
