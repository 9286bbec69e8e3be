package async

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStore compares the CPU per message of store (the publisher) with
// the library's asynchronous publish and a wait on its future, which store
// used before, from 16 goroutines on the node's in-process connection,
// measured alternately in the same run. It reports both and their ratio
// (store/library; below 1 means store is cheaper).
func BenchmarkStore(b *testing.B) {
	q, _ := newQueue(b, Config{})
	ctx := context.Background()
	lib, err := jetstream.New(q.js.Conn(), jetstream.WithPublishAsyncTimeout(publishTimeout), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(strings.Repeat("x", 400))
	msg := func() *nats.Msg { return &nats.Msg{Subject: subjectPrefix + "bench", Data: data} }
	ways := map[string]func() error{
		"library": func() error {
			f, err := lib.PublishMsgAsync(msg())
			if err != nil {
				return err
			}
			select {
			case <-f.Ok():
				return nil
			case err := <-f.Err():
				return err
			}
		},
		"store": func() error { _, err := q.store(ctx, msg(), ""); return err },
	}
	cpu := map[string]time.Duration{}
	per := max(1, b.N/16)
	for range 4 {
		for _, name := range []string{"library", "store"} {
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
	libCPU, st := float64(cpu["library"].Microseconds())/n, float64(cpu["store"].Microseconds())/n
	b.ReportMetric(libCPU, "library-cpu-µs/msg")
	b.ReportMetric(st, "store-cpu-µs/msg")
	b.ReportMetric(st/libCPU, "store/library")
}
