package metering

import (
	"math"
	"testing"
	"time"
)

func TestBilledMsRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 1},
		{time.Nanosecond, 1},
		{999 * time.Microsecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + time.Nanosecond, 2},
		{1500 * time.Millisecond, 1500},
		{1500*time.Millisecond + 1, 1501},
	} {
		if got := BilledMs(tc.d); got != tc.want {
			t.Errorf("BilledMs(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestGBSeconds(t *testing.T) {
	// 128 MiB for 1 s = 0.125 GB-s; 1 GiB for 1 ms = 0.001 GB-s.
	if got := GBSeconds(128<<20, 1000); math.Abs(got-0.125) > 1e-12 {
		t.Errorf("got %v", got)
	}
	if got := GBSeconds(1<<30, 1); math.Abs(got-0.001) > 1e-12 {
		t.Errorf("got %v", got)
	}
	r := Record("id", "f", 2, 256<<20, time.Now(), 2500*time.Microsecond, 200, "", true)
	if r.BilledMs != 3 || r.MemoryMB != 256 || math.Abs(r.GBSeconds-0.25*0.003) > 1e-12 {
		t.Errorf("record = %+v", r)
	}
}
