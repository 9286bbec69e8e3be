//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file is Hearth's cgroup layer: the handful of files the sandbox needs
// on cgroup v2 (unified) and cgroup v1 (legacy or hybrid) hosts. It writes the
// interface files directly instead of going through containerd/cgroups: a
// sandbox needs three controllers and a dozen files, and doing it by hand
// keeps a cold start to a few hundred microseconds (no D-Bus, no spec
// translation, no controllers the sandbox does not use).

// cgroupRoot describes where Hearth's cgroups live on this host.
type cgroupRoot struct {
	v2 bool
	// v2: the single directory of the parent cgroup (e.g. /sys/fs/cgroup/hearth).
	// v1: one parent directory per controller we use, keyed by controller.
	dir     string
	v1      map[string]string // controller -> parent dir
	created []string          // parent dirs New created (removed by Close when empty)
}

// v1Controllers are the legacy hierarchies a sandbox joins.
var v1Controllers = []string{"memory", "pids", "cpu", "cpuacct"}

// openCgroupRoot finds the cgroup hierarchy and creates parent (a path
// relative to the hierarchy root, e.g. "hearth").
func openCgroupRoot(parent string) (*cgroupRoot, error) {
	parent = strings.Trim(filepath.Clean("/"+parent), "/")
	if parent == "" || parent == "." {
		return nil, errors.New("sandbox: empty cgroup parent")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		r := &cgroupRoot{v2: true, dir: filepath.Join("/sys/fs/cgroup", parent)}
		// Enable the controllers down the path to the parent and in it.
		cur := "/sys/fs/cgroup"
		for _, part := range strings.Split(parent, "/") {
			_ = os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0)
			cur = filepath.Join(cur, part)
			if err := os.Mkdir(cur, 0o755); err == nil {
				r.created = append(r.created, cur)
			} else if !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("sandbox: creating cgroup %s: %w", cur, err)
			}
		}
		if err := os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0); err != nil {
			return nil, fmt.Errorf("sandbox: enabling memory, pids and cpu controllers in %s: %w", cur, err)
		}
		return r, nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	r := &cgroupRoot{v1: map[string]string{}}
	for _, c := range v1Controllers {
		m, ok := mounts[c]
		if !ok {
			if c == "cpuacct" || c == "cpu" {
				continue // optional: CPU accounting and quota
			}
			return nil, fmt.Errorf("sandbox: cgroup v1 controller %q is not mounted", c)
		}
		dir := filepath.Join(m, parent)
		if err := os.Mkdir(dir, 0o755); err == nil {
			r.created = append(r.created, dir)
		} else if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("sandbox: creating cgroup %s: %w", dir, err)
		}
		r.v1[c] = dir
	}
	return r, nil
}

// v1Mounts maps each v1 controller to its mount point.
func v1Mounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || fields[sep+1] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(fields[sep+3], ",") {
			if _, ok := out[opt]; !ok {
				out[opt] = fields[4]
			}
		}
	}
	return out, sc.Err()
}

// close removes the parent directories openCgroupRoot created, if empty.
func (r *cgroupRoot) close() {
	for i := len(r.created) - 1; i >= 0; i-- {
		_ = os.Remove(r.created[i])
	}
}

// children lists the instance cgroups under the parent (for leak checks).
func (r *cgroupRoot) children() []string {
	var dirs []string
	if r.v2 {
		dirs = []string{r.dir}
	} else {
		for _, d := range r.v1 {
			dirs = append(dirs, d)
		}
	}
	var out []string
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// limits are the resource limits of one sandbox.
type limits struct {
	memory int64   // bytes
	pids   int64   // tasks (processes and threads)
	cpus   float64 // CPU quota in CPUs; 0 = no quota
}

// cgroup is one sandbox's cgroup (one directory on v2, one per controller on v1).
type cgroup struct {
	v2   bool
	dir  string            // v2
	v1   map[string]string // v1: controller -> dir
	dirf *os.File          // v2: open directory, for CLONE_INTO_CGROUP
	lim  limits            // the limits last set
}

func (r *cgroupRoot) create(name string, l limits) (*cgroup, error) {
	cg := &cgroup{v2: r.v2}
	if r.v2 {
		cg.dir = filepath.Join(r.dir, name)
		if err := os.Mkdir(cg.dir, 0o755); err != nil {
			return nil, fmt.Errorf("sandbox: creating cgroup: %w", err)
		}
		f, err := os.Open(cg.dir)
		if err != nil {
			cg.destroy()
			return nil, err
		}
		cg.dirf = f
		// Kill the whole sandbox when any process in it hits the limit.
		_ = writeFile(filepath.Join(cg.dir, "memory.oom.group"), "1")
	} else {
		cg.v1 = make(map[string]string, len(r.v1))
		for c, parent := range r.v1 {
			d := filepath.Join(parent, name)
			if err := os.Mkdir(d, 0o755); err != nil {
				cg.destroy()
				return nil, fmt.Errorf("sandbox: creating cgroup: %w", err)
			}
			cg.v1[c] = d
		}
	}
	if err := cg.setLimits(l); err != nil {
		cg.destroy()
		return nil, err
	}
	return cg, nil
}

func writeFile(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(bytes.TrimSpace(b))
}

// setLimits writes the limits that differ from the last ones set (a pooled
// sandbox usually needs none written when it becomes an instance).
func (cg *cgroup) setLimits(l limits) error {
	if l == cg.lim {
		return nil
	}
	prev := cg.lim
	cg.lim = limits{} // unknown until every write succeeded
	mem := strconv.FormatInt(l.memory, 10)
	pids := "max"
	if l.pids > 0 {
		pids = strconv.FormatInt(l.pids, 10)
	}
	if cg.v2 {
		if l.memory != prev.memory {
			for _, kv := range [][2]string{{"memory.max", mem}, {"memory.swap.max", "0"}} {
				if err := writeFile(filepath.Join(cg.dir, kv[0]), kv[1]); err != nil && kv[0] != "memory.swap.max" {
					return fmt.Errorf("sandbox: setting %s: %w", kv[0], err)
				}
			}
		}
		if l.pids != prev.pids {
			if err := writeFile(filepath.Join(cg.dir, "pids.max"), pids); err != nil {
				return fmt.Errorf("sandbox: setting pids.max: %w", err)
			}
		}
		if l.cpus > 0 && l.cpus != prev.cpus {
			_ = writeFile(filepath.Join(cg.dir, "cpu.max"), fmt.Sprintf("%d 100000", int64(l.cpus*100000)))
		}
		cg.lim = l
		return nil
	}
	if m := cg.v1["memory"]; l.memory != prev.memory {
		// memsw must stay >= the memory limit: order the writes accordingly.
		cur := prev.memory
		if cur == 0 {
			cur, _ = strconv.ParseInt(readFile(filepath.Join(m, "memory.limit_in_bytes")), 10, 64)
		}
		files := []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
		if l.memory > cur {
			files[0], files[1] = files[1], files[0]
		}
		for _, f := range files {
			if err := writeFile(filepath.Join(m, f), mem); err != nil && !(f == "memory.memsw.limit_in_bytes" && errors.Is(err, os.ErrNotExist)) {
				return fmt.Errorf("sandbox: setting %s: %w", f, err)
			}
		}
	}
	if d, ok := cg.v1["pids"]; ok && l.pids != prev.pids {
		if err := writeFile(filepath.Join(d, "pids.max"), pids); err != nil {
			return fmt.Errorf("sandbox: setting pids.max: %w", err)
		}
	}
	if d, ok := cg.v1["cpu"]; ok && l.cpus > 0 && l.cpus != prev.cpus {
		_ = writeFile(filepath.Join(d, "cpu.cfs_period_us"), "100000")
		_ = writeFile(filepath.Join(d, "cpu.cfs_quota_us"), strconv.FormatInt(int64(l.cpus*100000), 10))
	}
	cg.lim = l
	return nil
}

// addProc moves pid into the cgroup (v1; v2 starts the child inside it).
func (cg *cgroup) addProc(pid int) error {
	if cg.v2 {
		return writeFile(filepath.Join(cg.dir, "cgroup.procs"), strconv.Itoa(pid))
	}
	p := strconv.Itoa(pid)
	for c, d := range cg.v1 {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), p); err != nil {
			return fmt.Errorf("sandbox: joining %s cgroup: %w", c, err)
		}
	}
	return nil
}

// oomKills reports how many processes the kernel killed for the memory limit.
func (cg *cgroup) oomKills() int64 {
	var path string
	if cg.v2 {
		path = filepath.Join(cg.dir, "memory.events")
	} else {
		path = filepath.Join(cg.v1["memory"], "memory.oom_control")
	}
	for _, line := range strings.Split(readFile(path), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// memoryFailures reports how often the memory limit was hit (v1 failcnt, v2
// "max" events): a hint that an exit was caused by memory pressure even when
// the process died of an allocation failure rather than the OOM killer.
func (cg *cgroup) memoryFailures() int64 {
	if cg.v2 {
		for _, line := range strings.Split(readFile(filepath.Join(cg.dir, "memory.events")), "\n") {
			if v, ok := strings.CutPrefix(line, "max "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return 0
	}
	n, _ := strconv.ParseInt(readFile(filepath.Join(cg.v1["memory"], "memory.failcnt")), 10, 64)
	return n
}

func (cg *cgroup) memoryCurrent() int64 {
	var s string
	if cg.v2 {
		s = readFile(filepath.Join(cg.dir, "memory.current"))
	} else {
		s = readFile(filepath.Join(cg.v1["memory"], "memory.usage_in_bytes"))
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func (cg *cgroup) cpuTime() time.Duration {
	if cg.v2 {
		for _, line := range strings.Split(readFile(filepath.Join(cg.dir, "cpu.stat")), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return time.Duration(n) * time.Microsecond
			}
		}
		return 0
	}
	d, ok := cg.v1["cpuacct"]
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(readFile(filepath.Join(d, "cpuacct.usage")), 10, 64)
	return time.Duration(n)
}

// procs lists the pids in the cgroup.
func (cg *cgroup) procs() []int {
	var path string
	if cg.v2 {
		path = filepath.Join(cg.dir, "cgroup.procs")
	} else {
		path = filepath.Join(cg.v1["memory"], "cgroup.procs")
	}
	var out []int
	for _, f := range strings.Fields(readFile(path)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// kill kills every process in the cgroup.
func (cg *cgroup) kill() {
	if cg.v2 {
		if err := writeFile(filepath.Join(cg.dir, "cgroup.kill"), "1"); err == nil {
			return
		}
	}
	for _, p := range cg.procs() {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// destroy removes the cgroup, killing what is left in it, and waits up to
// about a second for the kernel to let go of exiting processes.
func (cg *cgroup) destroy() error {
	if cg.dirf != nil {
		cg.dirf.Close()
		cg.dirf = nil
	}
	var dirs []string
	if cg.v2 {
		if cg.dir != "" {
			dirs = []string{cg.dir}
		}
	} else {
		for _, d := range cg.v1 {
			dirs = append(dirs, d)
		}
	}
	var last error
	for _, d := range dirs {
		delay := 50 * time.Microsecond
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				last = fmt.Errorf("sandbox: removing cgroup %s: %w", d, err)
				break
			}
			if errors.Is(err, unix.EBUSY) {
				cg.kill()
			}
			time.Sleep(delay)
			delay = min(delay*2, 20*time.Millisecond)
		}
	}
	return last
}
