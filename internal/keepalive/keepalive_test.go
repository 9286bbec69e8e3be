package keepalive

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const min = time.Minute

// replay drives p with a function that runs for one minute per arrival and
// then stays idle for each of its in turn; it returns the time the function
// last became idle and the Decision for that idle period.
func replay(p Policy, fn string, info FuncInfo, its ...time.Duration) (time.Time, Decision) {
	t := t0
	p.Observe(fn, t, info)
	t = t.Add(min)
	d := p.Idle(fn, t)
	for _, it := range its {
		t = t.Add(it)
		p.Observe(fn, t, info)
		t = t.Add(min)
		d = p.Idle(fn, t)
	}
	return t, d
}

func repeat(n int, d time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = d
	}
	return s
}

func TestNew(t *testing.T) {
	for _, name := range []string{"fixed-10m", "fixed-1m30s", "fixed-1h30m", "hybrid", "hybrid-4h", "hearth"} {
		p, err := New(name)
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		if p.Name() != name {
			t.Errorf("New(%q).Name() = %q", name, p.Name())
		}
	}
	for _, name := range []string{"", "fixed", "fixed-x", "fixed--1m", "lru"} {
		if _, err := New(name); !errors.Is(err, ErrUnknownPolicy) {
			t.Errorf("New(%q) err = %v, want ErrUnknownPolicy", name, err)
		}
	}
	for _, name := range Names() {
		if _, err := New(name); err != nil {
			t.Errorf("Names() lists %q, which New rejects: %v", name, err)
		}
	}
}

func TestFixed(t *testing.T) {
	p := NewFixed(10 * min)
	_, d := replay(p, "f", FuncInfo{}, 3*min, 50*min)
	if want := (Decision{KeepAlive: 10 * min}); d != want {
		t.Errorf("Idle = %+v, want %+v", d, want)
	}
	if d := p.Expired("f", t0); d != (Decision{}) {
		t.Errorf("Expired = %+v, want zero", d)
	}
}

func TestDecisionLoaded(t *testing.T) {
	d := Decision{PreWarm: 5 * min, KeepAlive: 2 * min}
	for off, want := range map[time.Duration]bool{0: false, 5*min - 1: false, 5 * min: true, 7*min - 1: true, 7 * min: false} {
		if got := d.Loaded(off); got != want {
			t.Errorf("Loaded(%v) = %v, want %v", off, got, want)
		}
	}
}

func TestHybrid(t *testing.T) {
	// 100 idle times: 5 of 2 min, 94 of 10 min, 1 of 50 min.
	var mixed []time.Duration
	mixed = append(mixed, repeat(5, 2*min)...)
	mixed = append(mixed, repeat(94, 10*min)...)
	mixed = append(mixed, 50*min)
	// Idle times spread evenly over the range: a flat histogram (CV < 2).
	var flat []time.Duration
	for i := range 240 {
		flat = append(flat, time.Duration(i)*min+30*time.Second)
	}
	tests := []struct {
		name string
		cfg  HybridConfig
		its  []time.Duration
		want Decision
	}{
		{"no idle time yet: range fallback", HybridConfig{}, nil, Decision{KeepAlive: 4 * time.Hour}},
		{"no idle time yet: configured fallback", HybridConfig{Fallback: 10 * min}, nil, Decision{KeepAlive: 10 * min}},
		// Head = tail = bin 30: pre-warm 0.9 × 30 min, keep to 1.1 × 31 min.
		{"periodic", HybridConfig{}, repeat(10, 30*min+20*time.Second), Decision{PreWarm: 27 * min, KeepAlive: 34*min + 6*time.Second - 27*min}},
		// One idle time is enough: one full bin of 240 has CV ≈ 15.5.
		{"single idle time", HybridConfig{}, []time.Duration{30 * min}, Decision{PreWarm: 27 * min, KeepAlive: 34*min + 6*time.Second - 27*min}},
		// 5th percentile in bin 2, 99th in bin 10.
		{"percentiles and margins", HybridConfig{}, mixed, Decision{PreWarm: 108 * time.Second, KeepAlive: 12*min + 6*time.Second - 108*time.Second}},
		// Head in bin 0: no pre-warming, keep alive after the run.
		{"frequent", HybridConfig{}, repeat(20, 10*time.Second), Decision{KeepAlive: 66 * time.Second}},
		{"not representative", HybridConfig{Fallback: 10 * min}, flat, Decision{KeepAlive: 10 * min}},
		// Half the idle times beyond 4 h: forecast ±15 % (smoothing 300, 300, 10 → 155 min... see below).
		{"out of bounds", HybridConfig{}, []time.Duration{300 * min, 300 * min}, Decision{PreWarm: 255 * min, KeepAlive: 90 * min}},
		{"out of bounds smoothed", HybridConfig{}, []time.Duration{5 * time.Hour, 10 * min, 7 * time.Hour}, Decision{
			// forecast = 0.5×420 + 0.5×(0.5×10 + 0.5×300) = 287.5 min
			PreWarm: time.Duration(287.5 * 0.85 * float64(min)), KeepAlive: time.Duration(287.5 * 0.3 * float64(min)),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewHybrid(tt.cfg)
			_, d := replay(p, "f", FuncInfo{}, tt.its...)
			if !near(d, tt.want) {
				t.Errorf("Idle = %+v, want %+v", d, tt.want)
			}
			if d := p.Expired("f", t0); d != (Decision{}) {
				t.Errorf("Expired = %+v, want zero", d)
			}
		})
	}
}

// near compares decisions to the millisecond (float margins round).
func near(a, b Decision) bool {
	abs := func(d time.Duration) time.Duration { return max(d, -d) }
	return abs(a.PreWarm-b.PreWarm) < time.Millisecond && abs(a.KeepAlive-b.KeepAlive) < time.Millisecond
}

func TestHybridCV(t *testing.T) {
	if got := cv(make([]uint32, 240), 0); got != 0 {
		t.Errorf("cv(empty) = %v", got)
	}
	h := make([]uint32, 240)
	h[7] = 3
	if got := cv(h, 3); got < 15 || got > 16 {
		t.Errorf("cv(one bin) = %v, want ≈15.5", got)
	}
	for i := range h {
		h[i] = 1
	}
	if got := cv(h, 240); got != 0 {
		t.Errorf("cv(flat) = %v, want 0", got)
	}
}

func TestHearthPeriodic(t *testing.T) {
	// A timer every 30 minutes (29 idle minutes after a 1-minute run): pre-warm
	// right before the next run, hold for one bin.
	// A big function: just the one bin. (A small one may also cover the
	// neighbouring bins, in case the timer jitters.)
	p := NewHearth(HearthConfig{})
	_, d := replay(p, "timer", FuncInfo{MemoryMB: 8192}, repeat(12, 29*min+10*time.Second)...)
	if d.PreWarm != 29*min || d.KeepAlive > 2*min {
		t.Errorf("periodic 8 GB: Idle = %+v, want pre-warm 29m, keep ≤ 2m", d)
	}
	_, d = replay(NewHearth(HearthConfig{}), "timer", FuncInfo{MemoryMB: 128}, repeat(12, 29*min+10*time.Second)...)
	if !d.Loaded(29*min+10*time.Second) || d.PreWarm < 27*min || d.KeepAlive > 4*min {
		t.Errorf("periodic 128 MB: Idle = %+v, want pre-warm shortly before 29m10s", d)
	}
}

func TestHearthFrequent(t *testing.T) {
	// Invoked again within seconds of going idle, over and over: stay warm.
	p := NewHearth(HearthConfig{})
	_, d := replay(p, "hot", FuncInfo{MemoryMB: 2048}, repeat(50, 15*time.Second)...)
	if d.PreWarm != 0 || d.KeepAlive < min {
		t.Errorf("frequent: Idle = %+v, want no pre-warm and keep ≥ 1m", d)
	}
}

func TestHearthFirstIdle(t *testing.T) {
	p := NewHearth(HearthConfig{Cold: 7 * min})
	_, d := replay(p, "new", FuncInfo{})
	if d != (Decision{KeepAlive: 7 * min}) {
		t.Errorf("first idle: %+v, want keep 7m", d)
	}
	if d := p.Expired("new", t0.Add(8*min)); d != (Decision{}) {
		t.Errorf("first idle expired: %+v, want zero", d)
	}
}

func TestHearthBursts(t *testing.T) {
	// Bursts every hour: idle 1 minute within a burst, 45 minutes between.
	var its []time.Duration
	for range 10 {
		its = append(its, 30*time.Second, 30*time.Second, 45*min)
	}
	its = append(its, 30*time.Second)
	p := NewHearth(HearthConfig{})
	// Holding 8 GB through the gap costs more than a 100 ms cold start is
	// worth; pre-warming for the next burst does not.
	info := FuncInfo{MemoryMB: 8192, ColdStart: 100 * time.Millisecond}
	idle, d := replay(p, "bursty", info, its...)
	if d.PreWarm != 0 || d.KeepAlive != min {
		t.Fatalf("in burst: Idle = %+v, want keep 1m", d)
	}
	// The window ends without an invocation: skip the gap, pre-warm for the
	// next burst.
	d = p.Expired("bursty", idle.Add(min))
	if d.PreWarm != 44*min || d.KeepAlive > 2*min {
		t.Errorf("after burst: Expired = %+v, want pre-warm 44m keep ≤ 2m", d)
	}
	if d := p.Expired("bursty", idle.Add(50*min)); d != (Decision{}) {
		t.Errorf("nothing left to wait for: Expired = %+v, want zero", d)
	}
}

func TestHearthWeighsMemoryAndColdStart(t *testing.T) {
	// Scattered idle times, 1 to 40 minutes: how much of that to hold is a
	// matter of price. (Pre-warming at the longest one is free.)
	var its []time.Duration
	for i := range 40 {
		its = append(its, time.Duration(1+(i*7)%40)*min)
	}
	window := func(info FuncInfo) time.Duration {
		_, d := replay(NewHearth(HearthConfig{}), "f", info, its...)
		return d.KeepAlive
	}
	small, big := window(FuncInfo{MemoryMB: 128, ColdStart: 100 * time.Millisecond}), window(FuncInfo{MemoryMB: 8192, ColdStart: 100 * time.Millisecond})
	if big >= small {
		t.Errorf("8 GB function kept until %v, 128 MB until %v: want a shorter keep-alive for more memory", big, small)
	}
	cheap, dear := window(FuncInfo{MemoryMB: 2048, ColdStart: 50 * time.Millisecond}), window(FuncInfo{MemoryMB: 2048, ColdStart: 5 * time.Second})
	if cheap >= dear {
		t.Errorf("50 ms cold start kept until %v, 5 s until %v: want a longer keep-alive for dearer cold starts", cheap, dear)
	}
}

func TestForget(t *testing.T) {
	for _, name := range Names() {
		p, _ := New(name)
		_, before := replay(p, "f", FuncInfo{}, repeat(10, 30*min)...)
		p.Forget("f")
		fresh, _ := New(name)
		_, want := replay(fresh, "g", FuncInfo{})
		p.Observe("f", t0, FuncInfo{})
		if got := p.Idle("f", t0.Add(min)); got != want {
			t.Errorf("%s: after Forget Idle = %+v, want a fresh policy's %+v (before: %+v)", name, got, want, before)
		}
	}
}

// TestConcurrent hammers every policy from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	for _, name := range Names() {
		p, _ := New(name)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					fn := fmt.Sprintf("f%d", (g+i)%5)
					at := t0.Add(time.Duration(i) * min)
					p.Observe(fn, at, FuncInfo{MemoryMB: 256})
					p.Idle(fn, at.Add(time.Second))
					p.Expired(fn, at.Add(2*min))
					if i%50 == 0 {
						p.Forget(fn)
					}
				}
			}()
		}
		wg.Wait()
	}
}
