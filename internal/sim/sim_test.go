package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/keepalive"
)

// synthetic builds a trace: fns maps a function name to its invocation
// minutes (repeated minutes add invocations); run and mem rows are given as is.
func synthetic(t *testing.T, minutes int, fns map[string][]int, run, mem string) *Trace {
	t.Helper()
	var inv strings.Builder
	inv.WriteString("HashFunction,HashApp,HashOwner")
	for m := 1; m <= minutes; m++ {
		fmt.Fprintf(&inv, ",%d", m)
	}
	inv.WriteString("\n")
	for _, name := range []string{"a", "b", "c"} {
		ms, ok := fns[name]
		if !ok {
			continue
		}
		counts := make([]int, minutes)
		for _, m := range ms {
			counts[m]++
		}
		fmt.Fprintf(&inv, "%s,%s,o", name, name)
		for _, c := range counts {
			fmt.Fprintf(&inv, ",%d", c)
		}
		inv.WriteString("\n")
	}
	tr, err := Parse(
		Named{"inv.csv", strings.NewReader(inv.String())},
		Named{"run.csv", strings.NewReader("HashFunction,HashApp,HashOwner,Count,Average\n" + run)},
		Named{"mem.csv", strings.NewReader("HashApp,HashOwner,SampleCount,AverageAllocatedMb\n" + mem)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRunFixed(t *testing.T) {
	// a: 1 GB, 100 ms, invoked twice at 0 and once at 5 and 20, over 30 minutes.
	//   fixed-10m: 0 cold; idle at 1, 5 warm (4 idle minutes); idle at 6,
	//   loaded until 16, 20 cold (10); idle at 21, loaded to the end (9).
	// b: 90 s (2 minutes busy), no memory row (128 MB), invoked at 0 and 2:
	//   2 touches the busy period (warm), idle at 4, loaded until 14 (10).
	tr := synthetic(t, 30, map[string][]int{"a": {0, 0, 5, 20}, "b": {0, 2}},
		"a,a,o,4,100\nb,b,o,2,90000\n", "a,o,10,1024\n")
	if got := tr.Functions[1].MemoryMB; got != DefaultMemoryMB {
		t.Fatalf("b memory = %d, want default %d", got, DefaultMemoryMB)
	}
	tests := []struct {
		policy string
		want   Result
	}{
		{"fixed-10m", Result{Policy: "fixed-10m", Invocations: 6, ColdStarts: 3, ColdStartFraction: 0.5,
			P75FunctionColdStartFraction: 0.5, WastedMemoryGBSeconds: (4+10+9)*60 + 10*60*0.125}},
		// 3 minutes: 5 is cold (4 idle minutes), 3 idle minutes each after.
		{"fixed-3m", Result{Policy: "fixed-3m", Invocations: 6, ColdStarts: 4, ColdStartFraction: 4.0 / 6,
			P75FunctionColdStartFraction: 0.75, WastedMemoryGBSeconds: (3+3+3)*60 + 3*60*0.125}},
		{"fixed-0s", Result{Policy: "fixed-0s", Invocations: 6, ColdStarts: 4, ColdStartFraction: 4.0 / 6,
			P75FunctionColdStartFraction: 0.75}},
	}
	for _, tt := range tests {
		p, err := keepalive.New(tt.policy)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Run(context.Background(), tr, p)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.policy, got, tt.want)
		}
	}
}

// script is a policy that returns fixed windows, to test how Run applies them.
type script struct {
	idle, expired keepalive.Decision
	keepalive.Policy
}

func (s *script) Idle(string, time.Time) keepalive.Decision    { return s.idle }
func (s *script) Expired(string, time.Time) keepalive.Decision { return s.expired }

func TestRunWindows(t *testing.T) {
	// Invoked at 0 and 30: idle from 1, next arrival after 29 idle minutes,
	// idle again from 31. Pre-warming 28 minutes loads at 29 and 59.
	tr := synthetic(t, 40, map[string][]int{"a": {0, 30}}, "", "a,o,1,1024\n")
	tests := []struct {
		name          string
		idle, expired keepalive.Decision
		cold          int64
		wasteMin      float64
	}{
		{"pre-warm hits", keepalive.Decision{PreWarm: 28 * time.Minute, KeepAlive: 5 * time.Minute}, keepalive.Decision{}, 1, 1},
		{"pre-warm too late", keepalive.Decision{PreWarm: 30 * time.Minute, KeepAlive: 5 * time.Minute}, keepalive.Decision{}, 2, 0},
		// Windows [1, 3), [29, 31) (hit after 1 minute); then [31, 33) and
		// [59, 61), past the end.
		{"second window", keepalive.Decision{KeepAlive: 2 * time.Minute}, keepalive.Decision{PreWarm: 26 * time.Minute, KeepAlive: 2 * time.Minute}, 1, 2 + 1 + 2},
	}
	for _, tt := range tests {
		p := &script{idle: tt.idle, expired: tt.expired, Policy: keepalive.NewFixed(0)}
		got, err := Run(context.Background(), tr, p)
		if err != nil {
			t.Fatal(err)
		}
		if got.ColdStarts != tt.cold || got.WastedMemoryGBSeconds != tt.wasteMin*60 {
			t.Errorf("%s: cold %d waste %v GB-s, want %d and %v", tt.name, got.ColdStarts, got.WastedMemoryGBSeconds, tt.cold, tt.wasteMin*60)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := "HashFunction,HashApp,HashOwner,1,2\nf,f,o,1,0\n"
	tests := []struct {
		inv, run, mem, want string
	}{
		{"", "", "", "inv.csv: empty file"},
		{"x,y\n", "", "", "inv.csv:1: want header"},
		{"HashFunction,HashApp,HashOwner,1,2\nf,f,o,1\n", "", "", "inv.csv:2:"},
		{"HashFunction,HashApp,HashOwner,1,2\nf,f,o,1,-3\n", "", "", `inv.csv:2: minute 2: invocation count "-3"`},
		{"HashFunction,HashApp,HashOwner,1,2\nf,f,o,1,0\nf,f,o,0,0\n", "", "", "inv.csv:3: function f listed twice"},
		{good, "HashFunction,HashApp,HashOwner,Count,Average\nf,f,o,1,soon\n", "HashApp,HashOwner,SampleCount,AverageAllocatedMb\n", `run.csv:2: average duration "soon"`},
		{good, "HashFunction,Average\n", "nope\n", "mem.csv:1: want header"},
	}
	for _, tt := range tests {
		run, mem := tt.run, tt.mem
		if run == "" {
			run = "HashFunction,HashApp,HashOwner,Count,Average\n"
		}
		if mem == "" {
			mem = "HashApp,HashOwner,SampleCount,AverageAllocatedMb\n"
		}
		_, err := Parse(Named{"inv.csv", strings.NewReader(tt.inv)}, Named{"run.csv", strings.NewReader(run)}, Named{"mem.csv", strings.NewReader(mem)})
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) err = %v, want a ParseError containing %q", tt.inv, err, tt.want)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(t.TempDir(), 1000)
	if err == nil || !strings.Contains(err.Error(), "1000_inv.csv") {
		t.Errorf("Load(empty dir) err = %v, want it to name 1000_inv.csv", err)
	}
}

// TraceDir finds the real Azure 2019 trace: $HEARTH_TRACE_DIR, else a
// shared/data/azure2019 beside the working directory or one of its parents.
func traceDir(t *testing.T) string {
	if d := os.Getenv("HEARTH_TRACE_DIR"); d != "" {
		return d
	}
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(filepath.Dir(d), "shared", "data", "azure2019")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	t.Skip("Azure 2019 trace not found: set HEARTH_TRACE_DIR or put it at ../shared/data/azure2019 beside the repository")
	return ""
}

// TestRealTrace checks the qualitative results on the real trace: the
// hybrid policy beats fixed-10m on cold starts at similar memory, and
// Hearth's beats hybrid on cold starts at no more memory and fixed-10m on
// both.
func TestRealTrace(t *testing.T) {
	dir := traceDir(t)
	for _, n := range []int{100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if n == 1000 && testing.Short() {
				t.Skip("1000-function trace skipped in -short mode")
			}
			tr, err := Load(dir, n)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := RunPolicies(context.Background(), tr, keepalive.Names())
			if err != nil {
				t.Fatal(err)
			}
			fixed, hybrid, hearth := rs[0], rs[1], rs[2]
			for _, r := range rs {
				t.Logf("%-9s cold %6d (%.5f) p75 %.4f waste %.0f GB-s", r.Policy, r.ColdStarts, r.ColdStartFraction, r.P75FunctionColdStartFraction, r.WastedMemoryGBSeconds)
			}
			if hybrid.ColdStarts >= fixed.ColdStarts || hybrid.WastedMemoryGBSeconds > fixed.WastedMemoryGBSeconds*1.05 {
				t.Errorf("hybrid does not beat fixed-10m: %+v vs %+v", hybrid, fixed)
			}
			if hearth.ColdStarts >= hybrid.ColdStarts || hearth.WastedMemoryGBSeconds > hybrid.WastedMemoryGBSeconds {
				t.Errorf("hearth does not beat hybrid: %+v vs %+v", hearth, hybrid)
			}
			if hearth.ColdStarts >= fixed.ColdStarts || hearth.WastedMemoryGBSeconds >= fixed.WastedMemoryGBSeconds {
				t.Errorf("hearth does not beat fixed-10m on both: %+v vs %+v", hearth, fixed)
			}
			again, err := RunPolicies(context.Background(), tr, keepalive.Names())
			if err != nil {
				t.Fatal(err)
			}
			for i := range rs {
				if again[i] != rs[i] {
					t.Errorf("not deterministic: %+v then %+v", rs[i], again[i])
				}
			}
		})
	}
}
