package keepalive

import (
	"math"
	"time"
)

// HearthConfig parameterises Hearth. Zero fields take the defaults.
type HearthConfig struct {
	Bins     int           // idle-time histogram bins (240)
	BinWidth time.Duration // bin width (1 minute)
	// Exchange is the idle memory-time, in GB-seconds, that is worth spending
	// to avoid one cold start costing DefaultColdStart.
	Exchange float64
	// DefaultColdStart is the cold-start cost assumed when FuncInfo gives
	// none (1 s).
	DefaultColdStart time.Duration
	// DefaultMemoryMB is the memory assumed when FuncInfo gives none (128).
	DefaultMemoryMB int
	// HalfLife is the number of idle times after which an observation counts
	// half as much (so the histogram follows changes in a function's pattern).
	HalfLife float64
	// Cold is the keep-alive used before any idle time is known.
	Cold time.Duration
	// Spread is the weight an idle time also gives to its neighbouring bins.
	Spread float64
}

func (c HearthConfig) withDefaults() HearthConfig {
	if c.Bins == 0 {
		c.Bins = 240
	}
	if c.BinWidth == 0 {
		c.BinWidth = time.Minute
	}
	if c.Exchange == 0 {
		c.Exchange = 16000
	}
	if c.DefaultColdStart == 0 {
		c.DefaultColdStart = time.Second
	}
	if c.DefaultMemoryMB == 0 {
		c.DefaultMemoryMB = 128
	}
	if c.HalfLife == 0 {
		c.HalfLife = 20
	}
	if c.Spread == 0 {
		c.Spread = 0.005
	}
	if c.Cold == 0 {
		c.Cold = 20 * time.Minute
	}
	return c
}

// Hearth is Hearth's own keep-alive policy. Like Hybrid it learns each
// function's idle-time histogram (1-minute bins over 4 hours, bounded state),
// but instead of fixed percentiles it prices both sides of the trade-off:
//
//   - a cold start costs Exchange GB-seconds, scaled by the function's
//     measured cold-start time relative to DefaultColdStart;
//   - a loaded idle instance costs its memory (in GB) per second.
//
// When the function goes idle it picks the window [a, b) that minimises
// P(next idle time outside [a, b)) × cold-start cost + E[loaded idle time] ×
// memory over the histogram. That one rule covers the cases a fixed rule
// gets wrong: a timer-driven function (idle times in one bin) is pre-warmed
// just before its next run and unloaded after it; a function invoked every
// minute stays warm; a big-memory or cheap-to-start function gets a tighter
// window than a small or expensive one; a rarely invoked function with
// scattered idle times is not kept at all.
//
// When a window expires without an invocation, Expired re-optimises over the
// idle times still possible (those longer than the time already idle), so a
// function with bursts every hour is kept warm inside the burst, unloaded,
// and pre-warmed again before the next burst. Observations decay with a
// half-life of HalfLife idle times so the policy follows a changing
// pattern, and each idle time lends a Spread share of its weight to its
// neighbouring bins because timers jitter by a minute. Before the first idle
// time is known, the function is kept for Cold.
type Hearth struct {
	cfg HearthConfig
	fns *states[hearthState]
}

var _ Policy = (*Hearth)(nil)

type hearthState struct {
	clock     idleClock
	hist      []float64 // decayed counts per bin
	oob       float64
	total     float64
	weight    float64 // weight of the next observation (grows instead of decaying the old)
	memoryMB  int
	coldStart time.Duration
	s0, s1    []float64 // scratch prefix sums
}

// NewHearth returns Hearth's policy.
func NewHearth(cfg HearthConfig) *Hearth {
	return &Hearth{cfg: cfg.withDefaults(), fns: newStates[hearthState]()}
}

// Name implements Policy.
func (p *Hearth) Name() string { return "hearth" }

// Observe implements Policy.
func (p *Hearth) Observe(fn string, t time.Time, info FuncInfo) {
	p.fns.with(fn, func(s *hearthState) {
		if info.MemoryMB > 0 {
			s.memoryMB = info.MemoryMB
		}
		if info.ColdStart > 0 {
			s.coldStart = info.ColdStart
		}
		it, ok := s.clock.arrive(t)
		if !ok {
			return
		}
		if s.hist == nil {
			s.hist = make([]float64, p.cfg.Bins)
			s.weight = 1
		}
		b := int(it / p.cfg.BinWidth)
		if b < len(s.hist) {
			s.hist[b] += s.weight
		} else {
			s.oob += s.weight
		}
		s.total += s.weight
		s.weight *= math.Exp2(1 / p.cfg.HalfLife)
		if s.weight > 1e12 { // renormalise
			for i := range s.hist {
				s.hist[i] /= s.weight
			}
			s.oob /= s.weight
			s.total /= s.weight
			s.weight = 1
		}
	})
}

// Idle implements Policy.
func (p *Hearth) Idle(fn string, t time.Time) (d Decision) {
	p.fns.with(fn, func(s *hearthState) {
		s.clock.rest(t)
		d = p.decide(s, 0)
	})
	return d
}

// Expired implements Policy: it chooses the next window given that the
// function has now been idle for t − (start of idle) with no invocation.
func (p *Hearth) Expired(fn string, t time.Time) (d Decision) {
	p.fns.with(fn, func(s *hearthState) {
		if !s.clock.idle || s.total == 0 {
			return
		}
		elapsed := max(t.Sub(s.clock.idleSince), 0)
		e := int((elapsed + p.cfg.BinWidth - 1) / p.cfg.BinWidth) // first bin not yet passed
		if e >= p.cfg.Bins {
			return
		}
		d = p.decide(s, e)
		// decide's window is relative to the start of the idle period.
		start := time.Duration(e)*p.cfg.BinWidth + d.PreWarm
		if d.KeepAlive > 0 {
			d.PreWarm = max(0, s.clock.idleSince.Add(start).Sub(t))
		}
	})
	return d
}

// decide picks the loaded window [a, b) (in bins) minimising, over the
// idle-time histogram,
//
//	cold-start cost × P(miss) + memory price × E[idle time inside the window].
//
// Only idle times of at least e bins count (the function has been idle that
// long), and the window is returned relative to bin e.
func (p *Hearth) decide(s *hearthState, e int) Decision {
	c := p.cfg
	if s.total == 0 {
		if e > 0 {
			return Decision{}
		}
		return Decision{KeepAlive: c.Cold}
	}
	mem := s.memoryMB
	if mem <= 0 {
		mem = c.DefaultMemoryMB
	}
	cold := s.coldStart
	if cold <= 0 {
		cold = c.DefaultColdStart
	}
	// Cost of one cold start in GB-bins.
	coldCost := c.Exchange * (float64(cold) / float64(c.DefaultColdStart)) / c.BinWidth.Seconds()
	gb := float64(mem) / 1024
	n := len(s.hist)
	// Candidate window starts are non-empty bins; ends follow non-empty bins.
	nz := make([]int, 0, 32)
	if s.s0 == nil {
		s.s0, s.s1 = make([]float64, n+1), make([]float64, n+1)
	}
	s0, s1 := s.s0, s.s1 // s0[k] = Σ_{e≤i<k} h_i, s1[k] = Σ_{e≤i<k} h_i·i
	s0[e], s1[e] = 0, 0
	for i := e; i < n; i++ {
		h := s.hist[i]
		if c.Spread > 0 { // a timer that fires in bin i may fire in its neighbours
			if i > 0 {
				h += c.Spread * s.hist[i-1]
			}
			if i+1 < n {
				h += c.Spread * s.hist[i+1]
			}
		}
		s0[i+1] = s0[i] + h
		s1[i+1] = s1[i] + h*float64(i)
		if h > 0 {
			nz = append(nz, i)
		}
	}
	N := s0[n] + s.oob // idle times still possible
	if N <= 0 {
		return Decision{}
	}
	best, ba, bb := N*coldCost, e, e // no window: every arrival is cold
	for ai, a := range nz {
		for _, i := range nz[ai:] {
			b := i + 1
			hit := s0[b] - s0[a]
			inside := s1[b] - s1[a] - float64(a)*hit
			after := N - s0[b]
			cost := (N-hit)*coldCost + gb*(inside+float64(b-a)*after)
			if cost < best {
				best, ba, bb = cost, a, b
			}
		}
	}
	w := c.BinWidth
	return Decision{PreWarm: time.Duration(ba-e) * w, KeepAlive: time.Duration(bb-ba) * w}
}

// Forget implements Policy.
func (p *Hearth) Forget(fn string) { p.fns.forget(fn) }
