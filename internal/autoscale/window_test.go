package autoscale

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const s = time.Second

func approx(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestSignalAverage(t *testing.T) {
	type rec struct {
		at time.Duration
		v  float64
	}
	tests := []struct {
		name string
		recs []rec
		now  time.Duration
		w    time.Duration
		want float64
	}{
		{"nothing recorded", nil, 10 * s, 6 * s, 0},
		{"constant", []rec{{0, 4}}, 90 * s, 60 * s, 4},
		{"young signal averages over its life", []rec{{0, 0}, {5 * s, 10}}, 10 * s, 60 * s, 5},
		{"step inside the window", []rec{{0, 2}, {57 * s, 8}}, 60 * s, 6 * s, 5},
		{"step before the window", []rec{{0, 2}, {10 * s, 8}}, 60 * s, 6 * s, 8},
		{"sub-second steps", []rec{{0, 0}, {1500 * time.Millisecond, 4}, {2250 * time.Millisecond, 0}}, 3 * s, 60 * s, 1},
		{"window edge inside a bucket", []rec{{0, 3}, {10 * s, 0}}, 15500 * time.Millisecond, 6 * s, 0.25},
		{"gap longer than the ring", []rec{{0, 1}, {30 * s, 7}}, time.Hour, 60 * s, 7},
		{"idle for longer than the window", []rec{{0, 9}, {5 * s, 0}}, 2 * time.Minute, 60 * s, 0},
		{"time running backwards is ignored", []rec{{0, 2}, {20 * s, 4}, {10 * s, 6}}, 30 * s, 10 * s, 6},
		{"zero-length window is the level", []rec{{0, 3}}, 0, 6 * s, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := newSignal(t0, 60*s, s)
			for _, r := range tt.recs {
				sig.set(at(r.at), r.v)
			}
			sig.advance(at(tt.now))
			approx(t, "average", sig.average(at(tt.now), tt.w), tt.want)
		})
	}
}

// The average is time-weighted: calling Record a hundred times while the
// level is 10 and once while it is 0 does not pull the average towards 10.
func TestIrregularSamplingIsNotBiased(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dense := newSignal(t0, 60*s, s)  // sampled at random, mostly while busy
	sparse := newSignal(t0, 60*s, s) // recorded only on changes
	const half = 500 * time.Millisecond
	end := 3 * time.Minute
	for p := time.Duration(0); p < end; p += 2 * half {
		sparse.set(at(p), 10)
		sparse.set(at(p+half), 0)
		for q := p; q < p+half; q += time.Duration(rng.IntN(20)+1) * time.Millisecond {
			dense.set(at(q), 10)
		}
		dense.set(at(p+half), 0)
	}
	for _, sig := range []*signal{dense, sparse} {
		sig.advance(at(end))
		approx(t, "stable average", sig.average(at(end), 60*s), 5)
		approx(t, "panic average", sig.average(at(end), 6*s), 5)
	}
}

func TestCeilDiv(t *testing.T) {
	tests := []struct {
		x, y float64
		want int
	}{
		{5, 0.7, 8},
		{7, 0.7, 10}, // 7/0.7 is 10.000000000000002 in floats
		{0, 0.7, 0},
		{-1, 1, 0},
		{0.000001, 1, 1},
		{21, 2.1, 10},
		{30, 10, 3},
		{30.000001, 10, 4},
	}
	for _, tt := range tests {
		if got := ceilDiv(tt.x, tt.y); got != tt.want {
			t.Errorf("ceilDiv(%v, %v) = %d, want %d", tt.x, tt.y, got, tt.want)
		}
	}
}
