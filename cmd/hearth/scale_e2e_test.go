package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

// sandboxAvailable skips unless this host can run the sandbox tier.
func sandboxAvailable(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the sandbox tier needs root (namespaces, cgroups); run as root (.ci/run does)")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skip("no cgroup filesystem at /sys/fs/cgroup")
	}
}

// goHTTPDir builds examples/go-http into a function directory with extra
// manifest lines.
func goHTTPDir(t *testing.T, name, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "server"), "./examples/go-http")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building go-http: %v\n%s", err, out)
	}
	man := fmt.Sprintf("name: %s\nisolation: sandbox\nprotocol: http\ncommand: [\"./server\"]\nmemory: 64Mi\ntimeout: 20s\n%s", name, extra)
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte(man), 0o644)
	return dir
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			if pp, _ := strconv.Atoi(fields[1]); pp == pid {
				kids = append(kids, p)
			}
		}
	}
	return kids
}

// cgroupsOf counts the cgroup directories a node created (their names
// start with its pid) under the hearth parent of every hierarchy.
func cgroupsOf(pid int) int {
	n := 0
	for _, parent := range []string{"/sys/fs/cgroup/memory/hearth", "/sys/fs/cgroup/pids/hearth", "/sys/fs/cgroup/hearth"} {
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), strconv.Itoa(pid)+"-") {
				n++
			}
		}
	}
	return n
}

// TestBurstFromZeroAndBack: a sandboxed function at zero takes 200
// concurrent requests; all succeed, instances go up, then back to zero once
// idle, and no process or cgroup is left.
func TestBurstFromZeroAndBack(t *testing.T) {
	sandboxAvailable(t)
	// No pre-built sandbox pool: every sandbox process then belongs to an
	// instance, so "no process left" can be checked by counting children.
	n := startNode(t, t.TempDir(), "--sandbox-pool", "0")
	if out, err := n.cli("deploy", goHTTPDir(t, "burst", "concurrency: 8\nscale: {min: 0, max: 16}\nkeepalive: fixed-3s\n")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	pid := n.cmd.Process.Pid
	var wg sync.WaitGroup
	var mu sync.Mutex
	status := map[int]int{}
	start := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, _ := n.do("GET", "/fn/burst/", nil)
			mu.Lock()
			status[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if status[200] != 200 {
		t.Fatalf("burst of 200: statuses %v", status)
	}
	var f api.Function
	_, body := n.do("GET", "/v1/functions/burst", nil)
	json.Unmarshal(body, &f)
	if f.Status == nil {
		t.Fatalf("after the burst: %s", body)
	}
	// Instances went up: the burst started more than one.
	if starts := startsOf(n, "burst"); starts < 2 {
		t.Fatalf("the burst started %d instances; status %s", starts, body)
	}
	t.Logf("after the burst: %d instances (desired %d: %s)", f.Status.Instances, f.Status.Desired, f.Status.Reason)

	// Idle: the 3 s keep-alive window closes and the function scales to zero.
	waitUntilFor(t, "scale to zero", 60*time.Second, func() bool {
		_, body := n.do("GET", "/v1/functions/burst", nil)
		var f api.Function
		json.Unmarshal(body, &f)
		return f.Status != nil && f.Status.Instances == 0 && f.Status.Starting == 0
	})
	waitUntilFor(t, "no sandbox processes left", 20*time.Second, func() bool { return len(children(pid)) == 0 })
	waitUntilFor(t, "no cgroups left", 20*time.Second, func() bool { return cgroupsOf(pid) == 0 })

	// The metrics saw it all.
	_, metrics := n.do("GET", "/metrics", nil)
	for _, want := range []string{`hearth_instance_starts_total{cause="scale_from_zero",function="burst"}`, `hearth_desired_instances{function="burst"} 0`, `hearth_sandbox_pool_ready 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Shutdown stops everything too.
	if _, err := n.cli("invoke", "burst"); err != nil {
		t.Fatal(err)
	}
	n.stop(15)
	if c := cgroupsOf(pid); c != 0 {
		t.Fatalf("%d cgroups left after shutdown", c)
	}
}

// startsOf sums hearth_instance_starts_total of a function over causes.
func startsOf(n *node, fn string) int {
	_, body := n.do("GET", "/metrics", nil)
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "hearth_instance_starts_total{") && strings.Contains(line, `function="`+fn+`"`) {
			if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				total += int(v)
			}
		}
	}
	return total
}
