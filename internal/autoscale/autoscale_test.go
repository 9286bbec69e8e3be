package autoscale

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sim drives one Autoscaler with a fake clock the way the scheduler would:
// Record on load changes, Decide every tick. With follow, instances become
// ready the moment they are desired.
type sim struct {
	t      *testing.T
	clk    *fakeClock
	a      *Autoscaler
	ready  int
	follow bool
}

func newSim(t *testing.T, cfg Config, ready int, follow bool) *sim {
	clk := &fakeClock{t: t0}
	return &sim{t: t, clk: clk, a: New(cfg, clk), ready: ready, follow: follow}
}

func (s *sim) load(v float64) { s.a.Record(s.clk.Now(), v) }

func (s *sim) tick() Decision {
	s.clk.advance(s.a.Config().TickInterval)
	d := s.a.Decide(s.clk.Now(), s.ready)
	if s.follow {
		s.ready = d.Desired
	}
	return d
}

// run ticks for d and returns the decisions.
func (s *sim) run(d time.Duration) []Decision {
	var out []Decision
	for n := d / s.a.Config().TickInterval; n > 0; n-- {
		out = append(out, s.tick())
	}
	return out
}

func (s *sim) elapsed() time.Duration { return s.clk.Now().Sub(t0) }

func TestDefaults(t *testing.T) {
	got := New(Config{}, nil).Config()
	want := Config{
		Target: 1, Utilisation: 0.7,
		StableWindow: 60 * s, PanicWindow: 6 * s, PanicThreshold: 2,
		MaxScaleUpRate: 1000, MaxScaleDownRate: 2,
		ScaleToZeroGrace: 30 * s, TickInterval: 2 * s,
	}
	if got != want {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if c := New(Config{Min: 6, Max: 4, Utilisation: 3}, nil).Config(); c.Min != 4 || c.Utilisation != 1 {
		t.Errorf("Min above Max and Utilisation above 1: got Min %d Utilisation %v, want 4 and 1", c.Min, c.Utilisation)
	}
}

func TestSteadyLoad(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		load        float64
		want        int
		fromNothing bool // start with no ready instance: panics first, then settles
	}{
		{"target 1", Config{Target: 1}, 5, 8, false}, // ⌈5/0.7⌉
		{"target 1 from zero", Config{Target: 1}, 5, 8, true},
		{"target 10", Config{Target: 10}, 50, 8, false}, // ⌈50/7⌉
		{"target 4", Config{Target: 4}, 6, 3, false},    // ⌈6/2.8⌉
		{"full utilisation", Config{Target: 1, Utilisation: 1}, 3, 3, false},
		{"full utilisation from zero", Config{Target: 2, Utilisation: 1}, 7, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready := tt.want
			if tt.fromNothing {
				ready = 0
			}
			sm := newSim(t, tt.cfg, ready, true)
			sm.load(tt.load)
			ds := sm.run(3 * time.Minute)
			for i, d := range ds {
				if d.Desired != tt.want {
					t.Fatalf("tick %d: desired %d, want %d (%s)", i, d.Desired, tt.want, d)
				}
				approx(t, "stable concurrency", d.StableConcurrency, tt.load)
				approx(t, "panic concurrency", d.PanicConcurrency, tt.load)
			}
			if ds[0].Panic != tt.fromNothing {
				t.Errorf("first decision panic = %v, want %v", ds[0].Panic, tt.fromNothing)
			}
			if last := ds[len(ds)-1]; last.Panic {
				t.Errorf("still panicking after 3 minutes of steady load: %s", last)
			}
		})
	}
}

// TestStepUp shows the two windows: a small step is followed by the stable
// window without panic; a big one crosses the panic threshold and is met
// within the 6 s panic window, where the stable window alone would take a
// minute.
func TestStepUp(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		step      float64
		wantPanic bool
		want      []int // desired on the ticks after the step (ready follows)
	}{
		{"small step, stable mode", Config{Target: 10, Utilisation: 1}, 30, false, []int{3, 3, 3}},
		{"big step, panic mode", Config{Target: 10, Utilisation: 1}, 100, true, []int{5, 8, 10, 10}},
		// The same step with panic disabled: the stable window creeps up.
		{"big step, no panic", Config{Target: 10, Utilisation: 1, PanicThreshold: 1e9}, 100, false, []int{3, 3, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := newSim(t, tt.cfg, 2, true)
			sm.load(20)
			for _, d := range sm.run(2 * time.Minute) {
				if d.Desired != 2 || d.Panic {
					t.Fatalf("before the step: %s, want 2 in stable mode", d)
				}
			}
			sm.load(tt.step)
			for i, want := range tt.want {
				d := sm.tick()
				if d.Desired != want {
					t.Errorf("tick %d after the step: desired %d, want %d (%s)", i+1, d.Desired, want, d)
				}
				if d.Panic != tt.wantPanic {
					t.Errorf("tick %d after the step: panic %v, want %v (%s)", i+1, d.Panic, tt.wantPanic, d)
				}
			}
			// Whichever the mode, the load is met within a stable window.
			ds := sm.run(time.Minute)
			if got, want := ds[len(ds)-1].Desired, int(tt.step/10); got != want {
				t.Errorf("a minute after the step: desired %d, want %d", got, want)
			}
		})
	}
}

// TestPanic checks Knative's panic rules tick by tick through a burst: the
// autoscaler panics exactly while the panic condition held within the last
// stable window, never scales down while panicking, and afterwards scales
// down no faster than MaxScaleDownRate allows.
func TestPanic(t *testing.T) {
	cfg := Config{Target: 1, Utilisation: 1}
	sm := newSim(t, cfg, 2, true)
	sm.load(2)
	sm.run(2 * time.Minute)
	sm.load(12)
	burst := sm.run(10 * time.Second)
	sm.load(2)
	after := sm.run(3 * time.Minute)

	var lastOver time.Time
	entered, left := false, false
	prev := Decision{Desired: 2}
	for i, d := range append(burst, after...) {
		now := t0.Add(2*time.Minute + time.Duration(i+1)*2*s)
		readyBefore := prev.Desired
		if over := float64(ceilDiv(d.PanicConcurrency, 1))/float64(max(readyBefore, 1)) >= 2; over {
			lastOver = now
		}
		wantPanic := !lastOver.IsZero() && !lastOver.Add(60*s).Before(now)
		if d.Panic != wantPanic {
			t.Fatalf("%v into the burst: panic %v, want %v (condition last held %v before)",
				now.Sub(t0.Add(2*time.Minute)), d.Panic, wantPanic, now.Sub(lastOver))
		}
		switch {
		case d.Panic:
			entered = true
			if d.Desired < prev.Desired {
				t.Fatalf("scaled down from %d to %d while panicking (%s)", prev.Desired, d.Desired, d)
			}
		case entered:
			left = true
			if floor := readyBefore / 2; d.Desired < floor {
				t.Fatalf("scaled down from %d to %d, below the rate limit %d", readyBefore, d.Desired, floor)
			}
		}
		prev = d
	}
	if !entered || !left {
		t.Fatalf("panic entered %v, left %v; want both", entered, left)
	}
	if got := burst[len(burst)-1].Desired; got != 12 {
		t.Errorf("desired at the end of the burst = %d, want 12", got)
	}
	if got := after[len(after)-1]; got.Desired != 2 || got.Panic {
		t.Errorf("three minutes after the burst: %s, want 2 in stable mode", got)
	}
}

func TestPanicReason(t *testing.T) {
	sm := newSim(t, Config{Target: 1, Utilisation: 1}, 3, false)
	sm.load(14)
	sm.clk.advance(10 * s)
	d := sm.a.Decide(sm.clk.Now(), 3)
	want := "panic: 6s avg 14.0 in flight needs 14 instances, ≥ 2× the 3 ready"
	if !d.Panic || d.Reason != want {
		t.Errorf("reason = %q, want %q", d.Reason, want)
	}
	if str := d.String(); !strings.HasPrefix(str, "desired 14 (panic mode") {
		t.Errorf("String() = %q", str)
	}
}

func TestScaleRateLimits(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		load   float64
		ready  int
		want   int
		reason string
	}{
		{"down: half of 10", Config{}, 0.5, 10, 5, "scale-down limited to 5"},
		{"down: half of 7, rounded down", Config{}, 0.5, 7, 3, "scale-down limited to 3"},
		{"down: within the limit", Config{}, 0.5, 2, 1, "stable:"},
		{"down: rate 4", Config{MaxScaleDownRate: 4}, 0.5, 10, 2, "scale-down limited to 2"},
		{"up: rate 2 from 2", Config{MaxScaleUpRate: 2, PanicThreshold: 1e9}, 50, 2, 4, "scale-up limited to 4"},
		{"up: rate 1.5 from zero", Config{MaxScaleUpRate: 1.5}, 50, 0, 2, "panic"},
		{"up: default rate", Config{}, 50, 1, 72, "panic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := newSim(t, tt.cfg, tt.ready, false)
			sm.load(tt.load)
			sm.clk.advance(2 * time.Minute)
			d := sm.a.Decide(sm.clk.Now(), tt.ready)
			if d.Desired != tt.want {
				t.Errorf("desired %d, want %d (%s)", d.Desired, tt.want, d)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", d.Reason, tt.reason)
			}
		})
	}

	// Following its own decisions, 10 instances go 10 → 5 → 2 → 1.
	sm := newSim(t, Config{}, 10, true)
	sm.load(0.5)
	sm.clk.advance(2 * time.Minute)
	var got []int
	for range 4 {
		got = append(got, sm.tick().Desired)
	}
	if want := []int{5, 2, 1, 1}; !equal(got, want) {
		t.Errorf("scale-down steps = %v, want %v", got, want)
	}
}

// TestScaleToZero: the last instance goes only once the stable window has
// seen no request and the grace period has passed after that, and never
// with scale.min above zero.
func TestScaleToZero(t *testing.T) {
	cfg := Config{Target: 1, Utilisation: 1}
	const idleAt = 2 * time.Minute

	t.Run("after the window and the grace period", func(t *testing.T) {
		sm := newSim(t, cfg, 1, true)
		sm.load(1)
		sm.run(idleAt)
		sm.load(0)
		var zeroAt time.Duration
		for sm.elapsed() < idleAt+3*time.Minute {
			d := sm.tick()
			if d.Desired == 0 && zeroAt == 0 {
				zeroAt = sm.elapsed() - idleAt
				if !strings.Contains(d.Reason, "scaling to zero") {
					t.Errorf("reason %q", d.Reason)
				}
			}
			if d.Desired > 1 || (zeroAt != 0 && d.Desired != 0) {
				t.Fatalf("%v after going idle: %s", sm.elapsed()-idleAt, d)
			}
		}
		if zeroAt != 90*s {
			t.Errorf("scaled to zero %v after going idle, want 90s (60s window + 30s grace)", zeroAt)
		}
	})

	t.Run("a request during the grace period restarts it", func(t *testing.T) {
		sm := newSim(t, cfg, 1, true)
		sm.load(1)
		sm.run(idleAt)
		sm.load(0)
		sm.run(80 * s) // the window is clean, 20 s into the grace period
		sm.load(1)
		sm.clk.advance(100 * time.Millisecond)
		sm.load(0)
		var zeroAt time.Duration
		for sm.elapsed() < idleAt+5*time.Minute && zeroAt == 0 {
			if d := sm.tick(); d.Desired == 0 {
				zeroAt = sm.elapsed() - idleAt
			} else if d.Desired != 1 {
				t.Fatalf("desired %d, want 1 (%s)", d.Desired, d)
			}
		}
		// Ticks now fall at x.1 s. The request at 80.0–80.1 s has left
		// the 60 s window by the tick at 142.1 s, which starts the grace
		// period.
		if want := 172*s + 100*time.Millisecond; zeroAt != want {
			t.Errorf("scaled to zero %v after first going idle, want %v", zeroAt, want)
		}
	})

	t.Run("never with scale.min", func(t *testing.T) {
		c := cfg
		c.Min = 1
		sm := newSim(t, c, 1, true)
		sm.load(1)
		sm.run(idleAt)
		sm.load(0)
		for _, d := range sm.run(10 * time.Minute) {
			if d.Desired != 1 {
				t.Fatalf("desired %d with scale.min 1 (%s)", d.Desired, d)
			}
		}
	})

	t.Run("a function never invoked stays at zero", func(t *testing.T) {
		sm := newSim(t, cfg, 0, true)
		for _, d := range sm.run(time.Minute) {
			if d.Desired != 0 || d.Panic {
				t.Fatalf("idle function: %s", d)
			}
		}
	})
}

func TestMinMax(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		load  float64
		ready int
		want  int
	}{
		{"min with no load", Config{Min: 3}, 0, 3, 3},
		{"min from zero", Config{Min: 2}, 0, 0, 2},
		{"max under heavy load", Config{Max: 4}, 100, 4, 4},
		{"max caps a panic", Config{Max: 4}, 100, 1, 4},
		{"within bounds", Config{Min: 2, Max: 5, Utilisation: 1}, 3, 3, 3},
		{"min above max is max", Config{Min: 6, Max: 4}, 0, 4, 4},
		{"max 0 is unbounded", Config{Utilisation: 1}, 100, 100, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := newSim(t, tt.cfg, tt.ready, false)
			sm.load(tt.load)
			for _, d := range sm.run(3 * time.Minute) {
				if d.Desired != tt.want {
					t.Fatalf("desired %d, want %d (%s)", d.Desired, tt.want, d)
				}
			}
		})
	}
}

func TestBurst(t *testing.T) {
	tests := []struct {
		name                               string
		cfg                                Config
		inFlight, waiting, ready, starting int
		want                               int
	}{
		{"10 queued at zero, concurrency 1", Config{Target: 1}, 0, 10, 0, 0, 10},
		{"10 queued at zero, concurrency 4", Config{Target: 4}, 0, 10, 0, 0, 3},
		{"scale.max", Config{Target: 1, Max: 5}, 0, 10, 0, 0, 5},
		{"some already starting", Config{Target: 1}, 0, 10, 0, 4, 6},
		{"ready ones full", Config{Target: 2}, 4, 4, 2, 0, 2},
		{"enough slots", Config{Target: 2}, 2, 0, 3, 0, 0},
		{"scale.min", Config{Target: 1, Min: 3}, 0, 1, 0, 0, 3},
		{"scale-up rate", Config{Target: 1, MaxScaleUpRate: 2}, 0, 10, 0, 0, 2},
		{"more than enough starting", Config{Target: 1}, 0, 2, 0, 5, 0},
		{"nonsense input", Config{}, -3, -1, -2, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(tt.cfg, &fakeClock{t: t0})
			if got := a.Burst(tt.inFlight, tt.waiting, tt.ready, tt.starting); got != tt.want {
				t.Errorf("Burst(%d, %d, %d, %d) = %d, want %d",
					tt.inFlight, tt.waiting, tt.ready, tt.starting, got, tt.want)
			}
		})
	}
}

// TestBurstHoldsInPanic: instances a burst started are not undone by the
// next Decide, which sees the burst only partly in its windows.
func TestBurstHoldsInPanic(t *testing.T) {
	sm := newSim(t, Config{Target: 1}, 0, false)
	sm.run(5 * time.Minute) // idle at zero
	sm.load(10)
	if n := sm.a.Burst(0, 10, 0, 0); n != 10 {
		t.Fatalf("Burst = %d, want 10", n)
	}
	d := sm.tick() // the 10 instances are still starting
	if !d.Panic || d.Desired != 10 {
		t.Errorf("after a burst of 10: %s, want 10 in panic mode", d)
	}
}

func TestScaleDownDelay(t *testing.T) {
	const delay = 10 * s
	base := Config{Target: 1, Utilisation: 1, MaxScaleDownRate: 1000}
	withDelay := base
	withDelay.ScaleDownDelay = delay
	plain, delayed := newSim(t, base, 4, false), newSim(t, withDelay, 4, false)
	for _, sm := range []*sim{plain, delayed} {
		sm.load(4)
		sm.run(2 * time.Minute)
		sm.load(1)
	}
	var undelayed []Decision
	for range 40 {
		u, d := plain.tick(), delayed.tick()
		undelayed = append(undelayed, u)
		// The delayed count is the largest undelayed one in (now-delay, now].
		want := 0
		for j := len(undelayed) - 1; j >= 0 && j > len(undelayed)-1-int(delay/(2*s)); j-- {
			want = max(want, undelayed[j].Desired)
		}
		if d.Desired != want {
			t.Fatalf("tick %d: delayed desired %d, want %d (undelayed %d)", len(undelayed), d.Desired, want, u.Desired)
		}
	}
	if undelayed[len(undelayed)-1].Desired != 1 {
		t.Errorf("load of 1 not reached: %s", undelayed[len(undelayed)-1])
	}
}

// TestConcurrentUse hammers one Autoscaler from many goroutines; run with
// -race.
func TestConcurrentUse(t *testing.T) {
	clk := &fakeClock{t: t0}
	a := New(Config{Target: 2, Max: 50}, clk)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				clk.advance(time.Millisecond)
				now := clk.Now()
				switch (g + i) % 3 {
				case 0:
					a.Record(now, float64(i%40))
				case 1:
					if d := a.Decide(now, i%20); d.Desired < 0 || d.Desired > 50 {
						t.Errorf("desired %d out of [0, 50]", d.Desired)
					}
				default:
					if n := a.Burst(i%30, i%7, i%20, i%3); n < 0 {
						t.Errorf("Burst = %d", n)
					}
				}
			}
		})
	}
	wg.Wait()
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
