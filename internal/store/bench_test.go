package store

import (
	"strings"
	"testing"
	"time"
)

// The hot-path benchmarks measure the sustained cost per stored record on a
// real embedded server: they wait for the acknowledgements every flushEvery
// records, so nothing is dropped and ns/op is the end-to-end ingest rate.
// The Burst variants do not wait: they measure what the caller pays when the
// server falls behind (most records are then dropped, see dropped/op).

const flushEvery = 1024

func BenchmarkRecordInvocation(b *testing.B) {
	s := openStore(b, b.TempDir())
	inv := invocation("hello", time.Now().UTC(), 12, 200, "")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.RecordInvocation(inv)
		if i%flushEvery == flushEvery-1 {
			if err := s.Flush(testCtx(b)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportLost(b, s)
}

func BenchmarkAppendLog(b *testing.B) {
	s := openStore(b, b.TempDir())
	e := logEntry("hello", 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.AppendLog(e)
		if i%flushEvery == flushEvery-1 {
			if err := s.Flush(testCtx(b)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportLost(b, s)
}

func BenchmarkRecordInvocationBurst(b *testing.B) {
	s := openStore(b, b.TempDir())
	inv := invocation("hello", time.Now().UTC(), 12, 200, "")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.RecordInvocation(inv)
		}
	})
	b.StopTimer()
	if err := s.Flush(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	reportLost(b, s)
}

func BenchmarkAppendLogBurst(b *testing.B) {
	s := openStore(b, b.TempDir())
	e := logEntry("hello", 1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.AppendLog(e)
		}
	})
	if err := s.Flush(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportLost(b, s)
}

// BenchmarkUsage measures scanning invocation records (reported as records/s).
func BenchmarkUsage(b *testing.B) {
	s := openStore(b, b.TempDir())
	const n = 100_000
	now := time.Now().UTC()
	for i := range n {
		s.RecordInvocation(invocation([]string{"a", "b", "c"}[i%3], now, 12, 200, ""))
		if i%flushEvery == flushEvery-1 {
			if err := s.Flush(testCtx(b)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	if st := s.Stats(); st.Dropped+st.PublishErrors > 0 {
		b.Fatalf("lost records while filling: %+v", st)
	}
	b.ResetTimer()
	for b.Loop() {
		u, err := s.Usage(testCtx(b), now.Add(-time.Minute), now.Add(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		var total int64
		for _, f := range u {
			total += f.Invocations
		}
		if total != n {
			b.Fatalf("counted %d of %d", total, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func reportLost(b *testing.B, s *Store) {
	st := s.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
	if st.PublishErrors > 0 {
		b.Fatalf("publish errors: %+v", st)
	}
}

// BenchmarkRecordInvocationSyncAlways shows the price of Options.SyncAlways
// (an fsync per record) next to BenchmarkRecordInvocation.
func BenchmarkRecordInvocationSyncAlways(b *testing.B) {
	s, err := Open(testCtx(b), Options{Dir: b.TempDir(), SyncAlways: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	inv := invocation("hello", time.Now().UTC(), 12, 200, "")
	for i := 0; b.Loop(); i++ {
		s.RecordInvocation(inv)
		if i%flushEvery == flushEvery-1 {
			if err := s.Flush(testCtx(b)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(testCtx(b)); err != nil {
		b.Fatal(err)
	}
	reportLost(b, s)
}

func BenchmarkPutVersion(b *testing.B) {
	s := openStore(b, b.TempDir())
	artifact := strings.Repeat("x", 256<<10)
	m := testManifest("hello")
	for b.Loop() {
		if _, err := s.PutVersion(testCtx(b), m, strings.NewReader(artifact)); err != nil {
			b.Fatal(err)
		}
	}
}
