//go:build linux

package sandbox

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// schedPolicy returns the scheduling policy of task (field 41 of its stat).
func schedPolicy(t *testing.T, task string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(task, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	p, err := strconv.Atoi(fields[41-3])
	if err != nil {
		t.Fatalf("%s/stat: %v", task, err)
	}
	return p
}

// Every thread of the function runs SCHED_BATCH; the init keeps the default.
func TestFunctionRunsSchedBatch(t *testing.T) {
	d := newTestDriver(t, Config{})
	inst := startT(t, d, fnSpec("abuse")).(*Instance)
	fn, init := functionPid(t, inst)
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(fn) + "/task/*")
	if len(tasks) == 0 {
		t.Fatal("the function has no threads")
	}
	for _, task := range tasks {
		if p := schedPolicy(t, task); p != 3 {
			t.Errorf("function thread %s: policy %d, want SCHED_BATCH (3)", task, p)
		}
	}
	if p := schedPolicy(t, "/proc/"+strconv.Itoa(init)); p != 0 {
		t.Errorf("the init's policy is %d, want SCHED_OTHER (0)", p)
	}
}
