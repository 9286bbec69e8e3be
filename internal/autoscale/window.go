package autoscale

import (
	"math"
	"time"
)

// signal is the time-weighted history of one step function: the number of
// in-flight requests, which holds its last recorded value until the next
// record. It keeps the integral of the signal (request-seconds) in a ring of
// fixed-width buckets covering the longest window asked of it, so a window
// average costs one pass over the ring whatever the sampling rate, and the
// memory is bounded however often the signal changes.
//
// Knative's queue-proxy does the same job in two steps: it reports a
// time-weighted average concurrency per second, and the autoscaler averages
// those per-second buckets (aggregation.TimedFloat64Buckets). Hearth sees
// every change of the in-flight count in process, so it integrates directly.
//
// signal is not safe for concurrent use; Autoscaler guards it.
type signal struct {
	width  time.Duration // bucket width
	origin time.Time     // first observation; bucket k covers [origin+k·width, origin+(k+1)·width)
	last   time.Time     // the integral is complete up to here
	value  float64       // the level since last
	ring   []bucket      // bucket k lives at ring[k % len(ring)]
}

type bucket struct {
	k   int64   // which bucket the sum belongs to; a stale k reads as empty
	sum float64 // ∫ value dt over the bucket, in request-seconds
}

// newSignal returns a signal observed from start on, at level zero, able to
// average over windows up to span long.
func newSignal(start time.Time, span, width time.Duration) *signal {
	n := int(math.Ceil(float64(span)/float64(width))) + 1 // +1: a window straddles one more bucket
	ring := make([]bucket, n)
	for i := range ring {
		ring[i].k = -1
	}
	return &signal{width: width, origin: start, last: start, ring: ring}
}

func (s *signal) bucketOf(t time.Time) int64 { return int64(t.Sub(s.origin) / s.width) }

func (s *signal) bucketStart(k int64) time.Time {
	return s.origin.Add(time.Duration(k) * s.width)
}

// advance extends the integral to now at the current level. Times at or
// before the last one are ignored: the signal never runs backwards.
func (s *signal) advance(now time.Time) {
	if !now.After(s.last) {
		return
	}
	if s.value != 0 {
		t := s.last
		// After a long gap only the buckets the ring can hold matter.
		if oldest := s.bucketOf(now) - int64(len(s.ring)) + 1; s.bucketOf(t) < oldest {
			t = s.bucketStart(oldest)
		}
		for t.Before(now) {
			k := s.bucketOf(t)
			end := s.bucketStart(k + 1)
			if end.After(now) {
				end = now
			}
			b := &s.ring[k%int64(len(s.ring))]
			if b.k != k {
				*b = bucket{k: k}
			}
			b.sum += s.value * end.Sub(t).Seconds()
			t = end
		}
	}
	s.last = now
}

// set records that the level is v from now on.
func (s *signal) set(now time.Time, v float64) {
	s.advance(now)
	s.value = v
}

// average returns the time-weighted mean of the signal over the window
// [now-w, now], or over [origin, now] while the signal is younger than w
// (as Knative averages over a partial window after a revision starts).
// The caller has advanced the signal to now. Inside the one bucket that
// straddles the window's start the signal is taken as uniform, so with
// one-second buckets the window edge is exact to within a second.
func (s *signal) average(now time.Time, w time.Duration) float64 {
	start := now.Add(-w)
	if start.Before(s.origin) {
		start = s.origin
	}
	d := now.Sub(start)
	if d <= 0 {
		return s.value
	}
	var total float64
	first := s.bucketOf(start)
	for k := first; k <= s.bucketOf(now); k++ {
		b := s.ring[k%int64(len(s.ring))]
		if b.k != k {
			continue // nothing recorded in it: the level was zero
		}
		sum := b.sum
		if k == first {
			bs := s.bucketStart(k)
			filledEnd := bs.Add(s.width)
			if filledEnd.After(now) {
				filledEnd = now
			}
			filled := filledEnd.Sub(bs)
			if overlap := filledEnd.Sub(start); filled > 0 && overlap < filled {
				sum *= float64(overlap) / float64(filled)
			}
		}
		total += sum
	}
	return round6(total / d.Seconds())
}

// round6 rounds to six decimals so that sums of float request-seconds that
// should be whole (5.0000000001) don't push a ceiling up by one.
func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// ceilDiv returns ⌈x/y⌉ for y > 0, tolerant of float noise in x/y.
func ceilDiv(x, y float64) int {
	if x <= 0 {
		return 0
	}
	q := x / y
	c := math.Ceil(q)
	if c-q > 1-1e-9 { // q is a whole number plus noise
		c--
	}
	return int(c)
}
