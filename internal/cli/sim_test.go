package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTrace writes a two-function, ten-minute trace as N=2 files in dir.
func writeTrace(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"2_inv.csv": "HashFunction,HashApp,HashOwner,1,2,3,4,5,6,7,8,9,10\na,a,o,1,0,0,0,0,0,1,0,0,0\nb,b,o,0,3,0,0,0,0,0,0,0,0\n",
		"2_run.csv": "HashFunction,HashApp,HashOwner,Count,Average\na,a,o,2,100\nb,b,o,3,100\n",
		"2_mem.csv": "HashApp,HashOwner,SampleCount,AverageAllocatedMb\na,o,1,1024\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSim(t *testing.T) {
	dir := t.TempDir()
	writeTrace(t, dir)
	h := newHarness(t)

	out, _, err := h.run("sim", "--trace", dir, "--functions", "2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POLICY", "WASTED GB-S", "fixed-10m", "hybrid", "hearth"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	h.vars[EnvTrace] = dir
	out, _, err = h.run("sim", "--functions", "2", "--policy", "fixed-10m", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	// a: cold at 0, warm at 6 (5 idle minutes), loaded to the end (3); b: one
	// cold start for its three invocations. Per function: 1/2 and 1/3.
	want := map[string]any{
		"policy": "fixed-10m", "invocations": 5.0, "cold_starts": 2.0, "cold_start_fraction": 0.4,
		"p75_function_cold_start_fraction": 0.5, "wasted_memory_gb_seconds": (5+3)*60.0 + 8*60*0.125,
	}
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1: %s", len(rows), out)
	}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("%s = %v, want %v", k, rows[0][k], v)
		}
	}
	if len(rows[0]) != len(want) {
		t.Errorf("fields %v, want exactly %v", rows[0], want)
	}
}

func TestSimErrors(t *testing.T) {
	dir := t.TempDir()
	writeTrace(t, dir)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--trace", dir, "--functions", "2", "--policy", "lru"}, `unknown keep-alive policy "lru"`},
		{[]string{"sim", "--trace", dir, "--functions", "0"}, "--functions 0"},
		{[]string{"sim", "--trace", dir, "--functions", "7"}, "7_inv.csv not found"},
	}
	for _, tt := range tests {
		_, _, err := newHarness(t).run(tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}

func TestFindTrace(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "main")
	sub := filepath.Join(repo, "internal", "cli")
	trace := filepath.Join(root, "shared", "data", "azure2019")
	for _, d := range []string{sub, trace} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := findTrace(sub); got != "" {
		t.Errorf("findTrace without go.mod = %q, want none", got)
	}
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := findTrace(sub); got != trace {
		t.Errorf("findTrace from a subdirectory = %q, want %q", got, trace)
	}
	if got := findTrace(repo); got != trace {
		t.Errorf("findTrace from the repository root = %q, want %q", got, trace)
	}
}
