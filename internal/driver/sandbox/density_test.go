//go:build linux

package sandbox

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// TestDensity500 starts 500 idle warm sandboxes of the Go http example and
// reports Hearth's own memory per instance beyond the function's process:
// the in-sandbox init (its private pages, from smaps_rollup) and the driver's
// heap in this process. Run with HEARTH_DENSITY=1 (takes a minute).
func TestDensity500(t *testing.T) {
	if os.Getenv("HEARTH_DENSITY") == "" {
		t.Skip("set HEARTH_DENSITY=1 to start 500 sandboxes")
	}
	n := 500
	if v, err := strconv.Atoi(os.Getenv("HEARTH_DENSITY")); err == nil && v > 1 {
		n = v
	}
	d := newTestDriver(t, Config{})
	spec := goHTTPSpec()
	spec.MemoryBytes = 32 << 20
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	insts := make([]driver.Instance, 0, n)
	defer func() {
		for _, in := range insts {
			in.Stop(context.Background())
		}
	}()
	for i := range n {
		inst, err := d.Start(context.Background(), spec)
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		if _, err := inst.Invoke(context.Background(), &driver.Request{Method: "GET", Path: "/"}); err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		insts = append(insts, inst)
	}
	startDur := time.Since(t0)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var initPriv, initPss, fnPriv, fnPss, cgMem int64
	for _, in := range insts {
		sb := in.(*Instance).sb
		pid := sb.cmd.Process.Pid
		p, ps := smapsRollup(pid)
		initPriv += p
		initPss += ps
		for _, q := range sb.cg.procs() {
			if q != pid {
				p, ps := smapsRollup(q)
				fnPriv += p
				fnPss += ps
			}
		}
		cgMem += sb.cg.memoryCurrent()
	}
	per := func(v int64) string { return fmt.Sprintf("%.0f KiB", float64(v)/float64(n)/1024) }
	hostHeap := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	t.Logf("%d warm sandboxes started in %v (%v each)", n, startDur, startDur/time.Duration(n))
	t.Logf("per instance: init private %s (Pss %s, its share of the init program's shared pages included); driver heap+stacks in the host process %s; goroutines %d",
		per(initPriv), per(initPss), per(hostHeap), runtime.NumGoroutine())
	t.Logf("per instance, for comparison: the function's private %s (Pss %s); cgroup memory.current %s",
		per(fnPriv), per(fnPss), per(cgMem))
	t.Logf("Hearth's own memory per instance beyond the function: %s (init private + driver heap)", per(initPriv+hostHeap))
}

// smapsRollup returns a process's private resident memory (Private_Clean +
// Private_Dirty: pages no other process maps) and its proportional set size.
func smapsRollup(pid int) (private, pss int64) {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Private_Clean:", "Private_Dirty:":
			private += v << 10
		case "Pss:":
			pss += v << 10
		}
	}
	return private, pss
}
