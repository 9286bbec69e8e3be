//go:build linux

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The sandbox init is Hearth's own binary re-executed (like runc init): the
// driver starts /proc/self/exe with argv[0] == initArg0 in fresh namespaces;
// MaybeRunInit recognises it, builds the sandbox and never returns.
//
// Protocol with the driver:
//   - the environment variable initEnv holds the JSON rootConfig;
//   - fd 3 (control, read): after "ready", the driver writes one JSON
//     taskConfig and closes its end;
//   - fd 4 (status, write, close-on-exec): "ready\n" once the empty sandbox
//     is built, or "error: ...\n" on failure. It reaches EOF when the
//     function has been started.
//   - fds 1 and 2: the function's output (a pipe read by the driver).
//
// The init's exit status is the function's: its exit code, or 128+signal.

const (
	initArg0 = "hearth-sandbox-init"
	initEnv  = "HEARTH_SANDBOX_INIT"
	ctlFD    = 3
	statusFD = 4
)

// rootConfig describes the empty sandbox (fixed per driver).
type rootConfig struct {
	Root     string       `json:"root"`     // host directory to mount the new root on
	RootFS   string       `json:"rootfs"`   // optional: a prepared root directory bound read-only instead of host dirs
	Binds    []bind       `json:"binds"`    // read-only bind mounts (dirs or files)
	Symlinks [][2]string  `json:"symlinks"` // [link path in root, target]
	Files    [][2]string  `json:"files"`    // [path in root, content]
	Devices  []string     `json:"devices"`  // /dev nodes bound from the host
	Seccomp  []sockFilter `json:"seccomp"`  // the compiled seccomp filter
}

type bind struct {
	Src string `json:"src"` // host path
	Dst string `json:"dst"` // path inside the root
}

// taskConfig specialises an empty sandbox into one function instance.
type taskConfig struct {
	Dir      string   `json:"dir"`  // host directory mounted at /var/task
	Argv     []string `json:"argv"` // the function's command
	Env      []string `json:"env"`
	TmpBytes int64    `json:"tmp"`    // size of /tmp
	NoFile   uint64   `json:"nofile"` // RLIMIT_NOFILE
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	Hostname string   `json:"hostname"`
}

// MaybeRunInit runs the sandbox init and exits if this process was started
// as one; otherwise it returns at once. Call it first thing in main (and in
// TestMain of packages that start sandboxes), before any other work.
func MaybeRunInit() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 || os.Getenv(initEnv) == "" {
		return
	}
	// Capability bounding sets, no_new_privs and the parent-death signal
	// are per thread: do everything on the main thread.
	runtime.LockOSThread()
	runInit()
	os.Exit(0) // unreachable
}

func runInit() {
	// The init is tiny and short-lived: keep the heap small.
	debug.SetGCPercent(20)
	debug.SetMemoryLimit(4 << 20)
	unix.CloseOnExec(statusFD)
	unix.CloseOnExec(ctlFD)
	status := os.NewFile(statusFD, "status")
	fail := func(err error) {
		fmt.Fprintf(status, "error: %v\n", err)
		os.Exit(126)
	}
	var rc rootConfig
	if err := json.Unmarshal([]byte(os.Getenv(initEnv)), &rc); err != nil {
		fail(fmt.Errorf("bad init config: %w", err))
	}
	os.Unsetenv(initEnv)
	if err := buildRoot(&rc); err != nil {
		fail(err)
	}
	if _, err := status.WriteString("ready\n"); err != nil {
		os.Exit(125) // the driver went away
	}
	ctl := os.NewFile(ctlFD, "control")
	b, err := io.ReadAll(ctl)
	ctl.Close()
	if err != nil || len(b) == 0 {
		os.Exit(125) // pooled sandbox discarded
	}
	var tc taskConfig
	if err := json.Unmarshal(b, &tc); err != nil {
		fail(fmt.Errorf("bad task config: %w", err))
	}
	pid, err := startTask(&tc, rc.Seccomp)
	if err != nil {
		fail(err)
	}
	status.Close()
	os.Exit(supervise(pid))
}

func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, dst, err)
	}
	return nil
}

// bindRO bind-mounts src on dst read-only, without setuid and devices.
func bindRO(src, dst string, devices bool) error {
	if err := mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID)
	if !devices {
		flags |= unix.MS_NODEV
	}
	return mount("", dst, "", flags, "")
}

// buildRoot assembles the sandbox's root on a tmpfs and pivots into it,
// keeping the host's root at /.oldroot until the task is known.
func buildRoot(rc *rootConfig) error {
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	root := rc.Root
	if rc.RootFS != "" {
		if err := mount(rc.RootFS, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		// A writable layer is not offered: mount points must already exist
		// in an imported root (var/task, tmp, proc, dev, .oldroot).
	} else if err := mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=755"); err != nil {
		return err
	}
	for _, d := range []string{"var/task", "tmp", "proc", "dev", "etc", ".oldroot"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil && rc.RootFS == "" {
			return err
		}
	}
	for _, b := range rc.Binds {
		dst := filepath.Join(root, b.Dst)
		st, err := os.Stat(b.Src)
		if err != nil {
			continue // optional host path
		}
		if st.IsDir() {
			err = os.MkdirAll(dst, 0o755)
		} else {
			err = os.MkdirAll(filepath.Dir(dst), 0o755)
			if err == nil {
				err = touch(dst)
			}
		}
		if err != nil {
			return err
		}
		if err := bindRO(b.Src, dst, false); err != nil {
			return err
		}
	}
	for _, l := range rc.Symlinks {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	for _, f := range rc.Files {
		if err := os.WriteFile(filepath.Join(root, f[0]), []byte(f[1]), 0o644); err != nil {
			return err
		}
	}
	for _, d := range rc.Devices {
		dst := filepath.Join(root, "dev", d)
		if err := touch(dst); err != nil {
			return err
		}
		if err := mount("/dev/"+d, dst, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	for _, l := range [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}, {"shm", "/tmp"}} {
		_ = os.Symlink(l[1], filepath.Join(root, "dev", l[0]))
	}
	if err := mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", ".oldroot"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	return unix.Chdir("/")
}

func touch(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// startTask mounts the function's files, drops every privilege and starts
// the function. It returns the function's pid.
func startTask(tc *taskConfig, filter []sockFilter) (int, error) {
	if err := bindRO(filepath.Join("/.oldroot", tc.Dir), "/var/task", false); err != nil {
		return 0, err
	}
	opts := "mode=1777"
	if tc.TmpBytes > 0 {
		opts += ",size=" + strconv.FormatInt(tc.TmpBytes, 10)
	}
	if err := mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return 0, err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return 0, fmt.Errorf("unmounting the host root: %w", err)
	}
	_ = unix.Rmdir("/.oldroot")
	// The root itself becomes read-only (ignored for an imported root).
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	if tc.Hostname != "" {
		_ = unix.Sethostname([]byte(tc.Hostname))
	}
	if err := loopbackUp(); err != nil {
		return 0, err
	}
	if tc.NoFile > 0 {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: tc.NoFile, Max: tc.NoFile}); err != nil {
			return 0, fmt.Errorf("setrlimit NOFILE: %w", err)
		}
	}
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	if err := unix.Chdir("/var/task"); err != nil {
		return 0, err
	}
	path, err := lookPath(tc.Argv[0], tc.Env)
	if err != nil {
		return 0, err
	}
	// Privileges are dropped on this (locked) thread and in the forked
	// child: the bounding set, no_new_privs and the seccomp filter are per
	// thread and inherited; the uid and gid change in the child before exec
	// (all-threads setuid in a Go process stops the world: too slow here).
	if err := dropBoundingSet(); err != nil {
		return 0, err
	}
	if err := loadFilter(filter); err != nil {
		return 0, err
	}
	pid, err := forkExec(path, tc.Argv, tc.Env, tc.UID, tc.GID)
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", tc.Argv[0], err)
	}
	return pid, nil
}

// lookPath resolves the command like a shell would, inside the sandbox.
func lookPath(cmd string, env []string) (string, error) {
	if strings.Contains(cmd, "/") {
		return cmd, nil
	}
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		p := filepath.Join(dir, cmd)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found in %s", cmd, pathEnv)
}

// loopbackUp brings up lo, the only interface of the sandbox.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	return nil
}

// dropBoundingSet empties the calling thread's capability bounding and
// ambient sets; the function's permitted and effective sets go when its uid
// changes from root.
func dropBoundingSet() error {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("dropping capability %d: %w", c, err)
		}
	}
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	return nil
}

// supervise is PID 1's loop: reap every child, return the function's
// status when it exits (the kernel then kills the rest of the namespace).
func supervise(pid int) int {
	runtime.GC()
	debug.FreeOSMemory()
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 127
		}
		if p != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// forkExec starts the function with /dev/null as stdin and the init's
// stdout and stderr.
func forkExec(path string, argv, env []string, uid, gid int) (int, error) {
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(null)
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{uintptr(null), 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		},
	})
}
