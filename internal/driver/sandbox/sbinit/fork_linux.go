//go:build linux

package sbinit

import (
	"syscall"
	"unsafe"
)

// The function runs in a user namespace of its own whose only ids are its
// user and group, mapped to host ids no other sandbox uses. The init starts
// it with a fork of its own rather than syscall.ForkExec, whose only way to
// a new user namespace is a clone with CLONE_NEWUSER: the parent then
// writes the child's id maps while the child waits, so it must fork (copy
// the parent's memory) instead of vfork, which costs milliseconds. And
// between the clone and the exec the child must do what ForkExec cannot:
// empty its capability bounding set (a new user namespace starts with a
// full one) and install the seccomp filter, which forbids namespaces and so
// cannot be in force before.
//
// So the namespace is made while the sandbox is built (newUserNS): a child
// that shares the init's memory (no copy) and does nothing is cloned into a
// new user namespace, the init writes its maps, keeps a descriptor of the
// namespace and kills it. The function's process is then vforked, like
// ForkExec's, joins the namespace with setns, becomes the function's user,
// drops the bounding set, sets no_new_privs, installs the filter and
// executes (startProcess). Without a user namespace (where the kernel
// refuses one) it does the same but setns.
//
// The namespace's owner is the effective uid of the thread that clones it,
// and what processes inside create is counted, in the host's namespace,
// against the owner's per-user limits (inotify instances, message queue
// bytes, pending signals, user namespaces): the init clones with its
// effective ids set to the function's host ids for that one call, so that
// functions never spend root's.
//
// Between the clones and the exec, the children run raw system calls only,
// in nosplit functions, between the runtime's fork hooks: what ForkExec's
// child does, with the hooks ForkExec uses (the runtime keeps them for
// linkname users: go.dev/issue/67401).

//go:linkname runtimeBeforeFork syscall.runtime_BeforeFork
func runtimeBeforeFork()

//go:linkname runtimeAfterFork syscall.runtime_AfterFork
func runtimeAfterFork()

//go:linkname runtimeAfterForkInChild syscall.runtime_AfterForkInChild
func runtimeAfterForkInChild()

// newUserNS creates the user namespace of a function running as u (see
// above) and returns a descriptor of it.
func newUserNS(u *User) (int, error) {
	pid, errno := cloneUserNS(u)
	// Changing its effective ids made the init not dumpable: its /proc
	// files then take CAP_SYS_PTRACE to open, which the driver may lack.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 1, 0)
	// It also cleared the init's parent-death signal: without it, a driver
	// killed with SIGKILL leaves the sandbox running. (The node dying in
	// the microseconds between the two calls would still leave it.)
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	if errno != 0 {
		return -1, opErr{"clone", errno}
	}
	err := writeIDMaps(int(pid), u)
	fd := -1
	if err == nil {
		fd, err = syscall.Open("/proc/"+itoa(uint64(pid))+"/ns/user", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	syscall.Kill(int(pid), syscall.SIGKILL)
	var ws syscall.WaitStatus
	for {
		if _, e := syscall.Wait4(int(pid), &ws, 0, nil); e != syscall.EINTR {
			break
		}
	}
	return fd, err
}

// cloneUserNS starts a cloneWaiter in a new user namespace owned by u's
// host ids.
//
//go:noinline
//go:norace
//go:nocheckptr
func cloneUserNS(u *User) (pid uintptr, err syscall.Errno) {
	const keep = ^uintptr(0) // -1: an id setres[ug]id leaves as it is
	runtimeBeforeFork()
	// Only nosplit functions until AfterFork: the runtime can neither
	// preempt this goroutine nor start a thread from this one (which would
	// copy its ids). Root's saved uid brings its capabilities back.
	if _, _, err = syscall.RawSyscall(sysSetresgid, keep, uintptr(u.HostGID), keep); err == 0 {
		if _, _, err = syscall.RawSyscall(sysSetresuid, keep, uintptr(u.HostUID), keep); err == 0 {
			pid, err = cloneWaiter(syscall.CLONE_NEWUSER | uintptr(syscall.SIGCHLD))
			if _, _, e := syscall.RawSyscall(sysSetresuid, keep, 0, keep); e != 0 {
				// Cannot happen (the saved uid is root's); an init that is
				// not root any more must not go on.
				for {
					syscall.RawSyscall(syscall.SYS_EXIT_GROUP, exitFailed, 0, 0)
				}
			}
		}
		syscall.RawSyscall(sysSetresgid, keep, 0, keep)
	}
	runtimeAfterFork()
	return pid, err
}

// writeIDMaps maps the user namespace of the process pid: u's uid and gid
// to their host ids, nothing else; setgroups denied (the function cannot
// drop a group, and has none).
func writeIDMaps(pid int, u *User) error {
	dir := "/proc/" + itoa(uint64(pid)) + "/"
	for _, f := range [...][2]string{
		{"setgroups", "deny"},
		{"gid_map", itoa(uint64(u.GID)) + " " + itoa(uint64(u.HostGID)) + " 1\n"},
		{"uid_map", itoa(uint64(u.UID)) + " " + itoa(uint64(u.HostUID)) + " 1\n"},
	} {
		fd, err := syscall.Open(dir+f[0], syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err == nil {
			_, err = syscall.Write(fd, []byte(f[1]))
			syscall.Close(fd)
		}
		if err != nil {
			return opErr{"writing " + f[0], err}
		}
	}
	return nil
}

// process is everything a child needs, prepared before the fork: the child
// may not allocate.
type process struct {
	path       *byte
	argv, envv []*byte // nil-terminated
	stdin      int     // made the child's stdin if >= 0
	prog       sockFprog
	user       User
	userNS     int   // descriptor of the user namespace to join, or -1
	exec       bool  // false (the probe): exit 0 instead of executing
	schedParam int32 // struct sched_param for SCHED_BATCH: priority 0

	status  [2]int // close-on-exec: the child's failure, or EOF once it executed
	failure [2]uintptr
}

// sockFprog is struct sock_fprog.
type sockFprog struct {
	len    uint16
	filter *SockFilter
}

// The child's steps, reported with its errno when one fails.
const (
	stepSetns = iota
	stepBoundingSet
	stepSetgid
	stepSetuid
	stepNoNewPrivs
	stepSeccomp
	stepStdin
	stepExec
)

var stepNames = [...]string{"joining the user namespace", "dropping the capability bounding set",
	"setresgid", "setresuid", "no_new_privs", "seccomp", "stdin", "exec"}

// startProcess starts p's child and returns its pid once it has executed
// (for the probe, once it has exited), or why it failed; a child that
// failed has been reaped. The child runs as p.user, in p.userNS if it is a
// namespace, with no capabilities, no supplementary groups, no_new_privs
// and the seccomp filter.
func startProcess(p *process) (int, error) {
	// The child inherits this thread's supplementary groups and cannot
	// drop them in a user namespace whose setgroups is denied: the init
	// drops its own first (on this thread, the one that forks).
	if _, _, e := syscall.RawSyscall(sysSetgroups, 0, 0, 0); e != 0 {
		return 0, opErr{"setgroups", e}
	}
	if err := syscall.Pipe2(p.status[:], syscall.O_CLOEXEC); err != nil {
		return 0, err
	}
	pid, errno := fork(p)
	syscall.Close(p.status[1])
	var err error
	if errno != 0 {
		err = opErr{"clone", errno}
	} else {
		b := (*[unsafe.Sizeof(p.failure)]byte)(unsafe.Pointer(&p.failure))
		n, rerr := readFull(p.status[0], b[:])
		switch {
		case rerr != nil:
			err = rerr
		case n == len(b) && p.failure[0] < uintptr(len(stepNames)):
			err = opErr{stepNames[p.failure[0]], syscall.Errno(p.failure[1])}
		case n != 0:
			err = errString("the child failed before exec")
		}
		if err != nil {
			var ws syscall.WaitStatus
			for {
				if _, e := syscall.Wait4(int(pid), &ws, 0, nil); e != syscall.EINTR {
					break
				}
			}
		}
	}
	syscall.Close(p.status[0])
	if err != nil {
		return 0, err
	}
	return int(pid), nil
}

func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := syscall.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// fork vforks a child that runs child and never returns; the parent gets
// its pid once the child has executed or exited. As in ForkExec, the
// parent returns at once: the child ran on its stack.
//
//go:noinline
//go:norace
//go:nocheckptr
func fork(p *process) (pid uintptr, err syscall.Errno) {
	runtimeBeforeFork()
	pid, err = vfork()
	if err != 0 || pid != 0 {
		runtimeAfterFork()
		return pid, err
	}
	step, errno := child(p)
	p.failure = [2]uintptr{uintptr(step), uintptr(errno)}
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(p.status[1]), uintptr(unsafe.Pointer(&p.failure)), unsafe.Sizeof(p.failure))
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 127, 0, 0)
	}
}

// child turns the new process into the function and executes it; it
// returns only on failure.
//
//go:nosplit
//go:norace
//go:nocheckptr
func child(p *process) (step int, err syscall.Errno) {
	if p.userNS >= 0 {
		if _, _, e := syscall.RawSyscall(sysSetns, uintptr(p.userNS), syscall.CLONE_NEWUSER, 0); e != 0 {
			return stepSetns, e
		}
	}
	// Default signal handlers and the init's original signal mask.
	runtimeAfterForkInChild()
	// Still with every capability (of the user namespace, if any): the
	// bounding set goes first, which takes CAP_SETPCAP.
	for c := uintptr(0); c < 64; c++ {
		_, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapbsetDrop, c, 0, 0, 0, 0)
		if e == syscall.EINVAL {
			break // past CAP_LAST_CAP
		}
		if e != 0 {
			return stepBoundingSet, e
		}
	}
	// In a user namespace with no uid 0, changing uids keeps the permitted
	// set: the exec empties it (no root, an empty bounding set, no ambient
	// set). Without one, leaving root empties it.
	if _, _, e := syscall.RawSyscall(sysSetresgid, uintptr(p.user.GID), uintptr(p.user.GID), uintptr(p.user.GID)); e != 0 {
		return stepSetgid, e
	}
	if _, _, e := syscall.RawSyscall(sysSetresuid, uintptr(p.user.UID), uintptr(p.user.UID), uintptr(p.user.UID)); e != 0 {
		return stepSetuid, e
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
		return stepNoNewPrivs, e
	}
	// SCHED_BATCH: the function still gets its fair share of CPU (within
	// its cgroup's), but waking up does not preempt the running task. The
	// gateway that wrote a request then keeps its CPU until it blocks on
	// the answer a moment later, instead of being switched out on every
	// request; in a CPU cgroup that halves the function's CPU per request
	// (see the documentation of package sandbox). Best effort: a kernel that refuses
	// leaves the default policy.
	syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, 0, schedBatch, uintptr(unsafe.Pointer(&p.schedParam)))
	if _, _, e := syscall.RawSyscall(sysSeccomp, seccompSetModeFilter, 0, uintptr(unsafe.Pointer(&p.prog))); e != 0 {
		return stepSeccomp, e
	}
	if p.stdin >= 0 {
		if _, _, e := syscall.RawSyscall(syscall.SYS_DUP3, uintptr(p.stdin), 0, 0); e != 0 {
			return stepStdin, e
		}
	}
	if !p.exec {
		for {
			syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
		}
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(p.path)),
		uintptr(unsafe.Pointer(unsafe.SliceData(p.argv))), uintptr(unsafe.Pointer(unsafe.SliceData(p.envv))))
	return stepExec, e
}

// opErr names a failed operation.
type opErr struct {
	op  string
	err error
}

func (e opErr) Error() string { return e.op + ": " + e.err.Error() }
