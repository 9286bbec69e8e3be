package async

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStore compares the CPU per message of store with a synchronous
// PublishMsg of the same message, from 16 goroutines on the node's
// in-process connection, measured alternately in the same run. It reports
// both and their ratio (store/publish; below 1 means store is cheaper).
func BenchmarkStore(b *testing.B) {
	q, _ := newQueue(b, Config{})
	ctx := context.Background()
	data := []byte(strings.Repeat("x", 400))
	msg := func() *nats.Msg { return &nats.Msg{Subject: subjectPrefix + "bench." + NewID(), Data: data} }
	ways := map[string]func() error{
		"publish": func() error { _, err := q.js.PublishMsg(ctx, msg()); return err },
		"store":   func() error { _, err := q.store(ctx, msg()); return err },
	}
	cpu := map[string]time.Duration{}
	per := max(1, b.N/16)
	for range 4 {
		for _, name := range []string{"publish", "store"} {
			c0 := processCPU()
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per / 4 {
						if err := ways[name](); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			cpu[name] += processCPU() - c0
		}
	}
	n := float64(16 * (per / 4) * 4)
	if n == 0 {
		return
	}
	pub, st := float64(cpu["publish"].Microseconds())/n, float64(cpu["store"].Microseconds())/n
	b.ReportMetric(pub, "publish-cpu-µs/msg")
	b.ReportMetric(st, "store-cpu-µs/msg")
	b.ReportMetric(st/pub, "store/publish")
}
