package autoscale

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// Clock tells the time. Tests pass a fake one.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function such as time.Now to Clock.
type ClockFunc func() time.Time

// Now implements Clock.
func (f ClockFunc) Now() time.Time { return f() }

// Config holds one function's autoscaling parameters. A zero field takes
// Knative's default, given in brackets.
type Config struct {
	// Target is the number of in-flight requests one instance takes: the
	// function's `concurrency` [1].
	Target float64
	// Utilisation is the share of Target the autoscaler aims for, leaving
	// headroom for bursts [0.7]; values above 1 are taken as 1.
	Utilisation float64
	// StableWindow is the averaging window of normal operation [60 s].
	StableWindow time.Duration
	// PanicWindow is the short window that detects bursts [StableWindow/10,
	// at least 1 s].
	PanicWindow time.Duration
	// PanicThreshold is the ratio of the instances the panic window needs to
	// the ready instances at which panic mode begins [2].
	PanicThreshold float64
	// MaxScaleUpRate bounds one decision to MaxScaleUpRate × ready
	// instances [1000]; it must exceed 1.
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds one decision to ready / MaxScaleDownRate
	// instances at least [2]; it must exceed 1.
	MaxScaleDownRate float64
	// ScaleToZeroGrace is how long the desired count must stay at zero
	// before the last instance goes [30 s].
	ScaleToZeroGrace time.Duration
	// ScaleDownDelay holds scale-downs until the lower count has been
	// desired for this long [0: none].
	ScaleDownDelay time.Duration
	// Min and Max bound the instance count: the function's scale.min and
	// scale.max. Max 0 means unbounded; Min above Max is taken as Max.
	Min, Max int
	// TickInterval is how often the caller should call Decide [2 s]. The
	// autoscaler does not use it.
	TickInterval time.Duration
}

func (c Config) withDefaults() Config {
	def := func(v *float64, d float64) {
		if !(*v > 0) { // also catches NaN
			*v = d
		}
	}
	def(&c.Target, 1)
	def(&c.Utilisation, 0.7)
	c.Utilisation = min(c.Utilisation, 1)
	def(&c.PanicThreshold, 2)
	if !(c.MaxScaleUpRate > 1) {
		c.MaxScaleUpRate = 1000
	}
	if !(c.MaxScaleDownRate > 1) {
		c.MaxScaleDownRate = 2
	}
	if c.StableWindow <= 0 {
		c.StableWindow = 60 * time.Second
	}
	if c.PanicWindow <= 0 {
		c.PanicWindow = max(c.StableWindow/10, time.Second)
	}
	c.PanicWindow = min(c.PanicWindow, c.StableWindow)
	if c.ScaleToZeroGrace <= 0 {
		c.ScaleToZeroGrace = 30 * time.Second
	}
	c.ScaleDownDelay = max(c.ScaleDownDelay, 0)
	c.Min = max(c.Min, 0)
	c.Max = max(c.Max, 0)
	if c.Max > 0 && c.Min > c.Max {
		c.Min = c.Max
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 2 * time.Second
	}
	return c
}

// Decision is the outcome of one Decide.
type Decision struct {
	// Desired is the number of instances the function should have.
	Desired int
	// Panic reports panic mode: scaling up on the short window, never down.
	Panic bool
	// StableConcurrency and PanicConcurrency are the average in-flight
	// requests over the stable and panic windows.
	StableConcurrency, PanicConcurrency float64
	// Reason explains Desired in words, for `hearth describe`.
	Reason string
}

// String returns a one-line summary of d.
func (d Decision) String() string {
	mode := "stable"
	if d.Panic {
		mode = "panic"
	}
	return fmt.Sprintf("desired %d (%s mode; in flight %.1f stable, %.1f panic): %s",
		d.Desired, mode, d.StableConcurrency, d.PanicConcurrency, d.Reason)
}

// Autoscaler decides the instance count of one function. It is safe for
// concurrent use.
type Autoscaler struct {
	cfg    Config
	target float64 // in-flight requests aimed for per instance: Target × Utilisation
	clock  Clock

	mu        sync.Mutex
	sig       *signal
	panicTime time.Time // last time the panic condition held; zero when not panicking
	maxPanic  int       // the highest count desired in this panic
	delay     []sample  // recent desired counts, decreasing: a sliding-window maximum
	zeroSince time.Time // since when zero instances have been desired; zero if not
}

type sample struct {
	t time.Time
	n int
}

// New returns an autoscaler that observes the function from clock.Now() on,
// with nothing in flight. A nil clock means the wall clock. The times given
// to Record and Decide must come from the same clock: Burst reads it to
// date the panic it may begin.
func New(cfg Config, clock Clock) *Autoscaler {
	cfg = cfg.withDefaults()
	if clock == nil {
		clock = ClockFunc(time.Now)
	}
	width := min(time.Second, cfg.PanicWindow/6)
	width = max(width, time.Millisecond)
	return &Autoscaler{
		cfg:    cfg,
		target: cfg.Target * cfg.Utilisation,
		clock:  clock,
		sig:    newSignal(clock.Now(), cfg.StableWindow, width),
	}
}

// Config returns the configuration in effect, defaults filled in.
func (a *Autoscaler) Config() Config { return a.cfg }

// Record notes that inFlight requests are in flight (running or queued) from
// now until the next Record. A time before the previous one counts as the
// previous one.
func (a *Autoscaler) Record(now time.Time, inFlight float64) {
	if !(inFlight > 0) {
		inFlight = 0
	}
	a.mu.Lock()
	a.sig.set(now, inFlight)
	a.mu.Unlock()
}

// Decide returns the instance count the function should have now, given its
// ready instances. Call it every TickInterval: panic mode, the scale-down
// delay and the scale-to-zero grace period are measured between calls.
func (a *Autoscaler) Decide(now time.Time, ready int) Decision {
	cfg := &a.cfg
	ready = max(ready, 0)
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Before(a.sig.last) {
		now = a.sig.last
	}
	a.sig.advance(now)
	stable := a.sig.average(now, cfg.StableWindow)
	panicC := a.sig.average(now, cfg.PanicWindow)

	// Knative divides by the ready count and treats zero as one.
	readyF := math.Max(1, float64(ready))
	maxUp := int(math.Ceil(cfg.MaxScaleUpRate * readyF))
	maxDown := int(math.Floor(readyF / cfg.MaxScaleDownRate))
	stableN := ceilDiv(stable, a.target)
	panicN := ceilDiv(panicC, a.target)
	boundedStable := min(max(stableN, maxDown), maxUp)
	boundedPanic := min(max(panicN, maxDown), maxUp)

	var why []string
	over := float64(panicN)/readyF >= cfg.PanicThreshold
	switch {
	case over:
		a.panicTime = now // begin, or extend, the panic
	case !a.panicTime.IsZero() && a.panicTime.Add(cfg.StableWindow).Before(now):
		// The burst has made its way into the stable window.
		a.panicTime = time.Time{}
		a.maxPanic = 0
	}
	d := Decision{
		Panic:             !a.panicTime.IsZero(),
		StableConcurrency: stable,
		PanicConcurrency:  panicC,
	}
	desired := boundedStable
	if d.Panic {
		desired = max(boundedStable, boundedPanic)
		switch {
		case over:
			why = append(why, fmt.Sprintf("panic: %s avg %.1f in flight needs %d instances, ≥ %g× the %d ready",
				fmtDur(cfg.PanicWindow), panicC, panicN, cfg.PanicThreshold, ready))
		default:
			why = append(why, fmt.Sprintf("panic until %s pass without a burst (%s avg %.1f in flight)",
				fmtDur(a.panicTime.Add(cfg.StableWindow).Sub(now)), fmtDur(cfg.PanicWindow), panicC))
		}
		if desired < a.maxPanic {
			why = append(why, fmt.Sprintf("not scaling down while panicking: holding %d", a.maxPanic))
		}
		a.maxPanic = max(a.maxPanic, desired)
		desired = a.maxPanic
	} else {
		why = append(why, fmt.Sprintf("stable: %s avg %.1f in flight at %.3g per instance needs %d",
			fmtDur(cfg.StableWindow), stable, a.target, stableN))
	}
	switch {
	case !d.Panic && stableN > maxUp:
		why = append(why, fmt.Sprintf("scale-up limited to %d (%g× the ready)", maxUp, cfg.MaxScaleUpRate))
	case !d.Panic && stableN < maxDown:
		why = append(why, fmt.Sprintf("scale-down limited to %d (1/%g of the ready)", maxDown, cfg.MaxScaleDownRate))
	}

	if cfg.ScaleDownDelay > 0 {
		// Sliding-window maximum: the front is the largest count desired
		// within the delay.
		for len(a.delay) > 0 && a.delay[len(a.delay)-1].n <= desired {
			a.delay = a.delay[:len(a.delay)-1]
		}
		a.delay = append(a.delay, sample{now, desired})
		for len(a.delay) > 1 && !a.delay[0].t.After(now.Add(-cfg.ScaleDownDelay)) {
			a.delay = a.delay[1:]
		}
		if held := a.delay[0].n; held > desired {
			why = append(why, fmt.Sprintf("scale-down delayed %s: keeping %d", fmtDur(cfg.ScaleDownDelay), held))
			desired = held
		}
	}

	if cfg.Max > 0 && desired > cfg.Max {
		desired = cfg.Max
		why = append(why, fmt.Sprintf("capped at scale.max %d", cfg.Max))
	}
	if desired < cfg.Min {
		desired = cfg.Min
		why = append(why, fmt.Sprintf("kept at scale.min %d", cfg.Min))
	}

	if desired == 0 {
		if a.zeroSince.IsZero() {
			a.zeroSince = now
		}
		if ready > 0 {
			if idle := now.Sub(a.zeroSince); idle < cfg.ScaleToZeroGrace {
				desired = 1
				why = append(why, fmt.Sprintf("idle: keeping 1 instance for %s more (scale-to-zero grace %s)",
					fmtDur(cfg.ScaleToZeroGrace-idle), fmtDur(cfg.ScaleToZeroGrace)))
			} else {
				why = append(why, fmt.Sprintf("idle for the %s window and the %s grace: scaling to zero",
					fmtDur(cfg.StableWindow), fmtDur(cfg.ScaleToZeroGrace)))
			}
		} else {
			why = append(why, "at zero")
		}
	} else {
		a.zeroSince = time.Time{}
	}

	d.Desired = desired
	d.Reason = strings.Join(why, "; ")
	return d
}

// Burst returns how many instances to start right now, on top of the ready
// and starting ones, so that every request in flight (running on ready
// instances) or waiting (queued for a slot) has a slot: ⌈(inFlight +
// waiting) / Target⌉ in all, at least Min, at most Max and MaxScaleUpRate ×
// ready. A burst of N requests at zero thus starts all the instances it
// needs at once.
//
// Burst divides by Target, the hard per-instance limit, not by Target ×
// Utilisation: the requests are here now and the scheduler gives each
// instance exactly Target of them, so ⌈n/Target⌉ instances drain the queue
// with no request left waiting for a later start, and none started that no
// queued request can use. The utilisation headroom is the steady-state
// loop's job: the next Decide sees the same burst in its panic window.
//
// When the burst is big enough to panic (the total reaches PanicThreshold ×
// ready), Burst puts the autoscaler in panic mode holding the total, as
// Knative's autoscaler does when the activator reports a burst at zero, so
// the next Decide does not undo the instances Burst started.
func (a *Autoscaler) Burst(inFlight, waiting, ready, starting int) int {
	cfg := &a.cfg
	ready, starting = max(ready, 0), max(starting, 0)
	need := max(ceilDiv(float64(max(inFlight, 0)+max(waiting, 0)), cfg.Target), cfg.Min)
	if cfg.Max > 0 {
		need = min(need, cfg.Max)
	}
	readyF := math.Max(1, float64(ready))
	need = min(need, int(math.Ceil(cfg.MaxScaleUpRate*readyF)))
	have := ready + starting
	add := need - have
	if add <= 0 {
		return 0
	}
	if float64(need)/readyF >= cfg.PanicThreshold {
		now := a.clock.Now()
		a.mu.Lock()
		if now.After(a.panicTime) {
			a.panicTime = now
		}
		a.maxPanic = max(a.maxPanic, need)
		a.mu.Unlock()
	}
	return add
}

// fmtDur formats whole seconds as "60s" rather than "1m0s".
func fmtDur(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.Round(100 * time.Millisecond).String()
}
