//go:build linux

package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestCgroupV2Mechanics runs the cgroup v2 code path — create, move a
// process in, list, kill the whole group, remove — on a cgroup2 hierarchy.
// On a v2 host that is /sys/fs/cgroup (the sandbox tests use it anyway);
// on a hybrid host such as this one's CI the unified hierarchy next to v1
// holds no memory, pids or cpu controller, so the limit files stay
// untested there and only the mechanics run.
func TestCgroupV2Mechanics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	base := ""
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
				base = dir
				break
			}
		}
	}
	if base == "" {
		t.Skip("no cgroup2 hierarchy mounted")
	}
	parent := filepath.Join(base, "hearth-test-v2-"+ownerToken())
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(parent)
	r := &cgroupRoot{v2: true, dir: parent}
	cg, err := r.create("sb", limits{}) // no limits: the controllers may be absent
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cg.dir, "cgroup.kill")); err != nil {
		cg.destroy()
		t.Skipf("kernel without cgroup.kill: %v", err)
	}
	var cmds []*exec.Cmd
	for range 3 {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
		if err := cg.addProc(c.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	got := cg.procs()
	for _, c := range cmds {
		if !slices.Contains(got, c.Process.Pid) {
			t.Errorf("pid %d not in the cgroup's procs %v", c.Process.Pid, got)
		}
	}
	cg.kill()
	for _, c := range cmds {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.Process.Kill()
			t.Fatal("cgroup.kill left a process running")
		}
	}
	if err := cg.destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg.dir); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind: %v", cg.dir, err)
	}
}
