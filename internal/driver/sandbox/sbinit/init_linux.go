//go:build linux

package sbinit

import (
	"runtime"
	"syscall"
	"unsafe"
)

// Main runs the init: it never returns. Call it only in a process the
// sandbox driver started as an init (argv[0] == Arg0, CtlFD open).
func Main() {
	// The bounding set, no_new_privs and the seccomp filter are per thread
	// and inherited by the function forked from this thread.
	runtime.LockOSThread()
	syscall.Exit(run())
}

// Exit statuses of the init when no function status is available.
const (
	exitDiscarded = 125 // the driver went away or discarded a pooled sandbox
	exitFailed    = 126 // building the sandbox or starting the function failed
)

func run() int {
	syscall.CloseOnExec(CtlFD)
	buf := make([]byte, 256<<10)
	oob := make([]byte, syscall.CmsgSpace(2*4))
	n, oobn, err := recv(buf, oob)
	if err != nil || n == 0 {
		return exitDiscarded
	}
	fds := rights(oob[:oobn])
	what := "bad root config"
	var r Root
	err = r.Unmarshal(buf[:n])
	if err == nil && len(fds) != 2 {
		err = errString("no state and template directories")
	}
	if err == nil {
		what = "building the root"
		umask := syscall.Umask(0)
		err = buildRoot(&r, "/proc/self/fd/"+itoa(uint64(fds[0]))+"/"+r.Mount, "/proc/self/fd/"+itoa(uint64(fds[1])))
		syscall.Umask(umask)
	}
	// Descriptors of host directories lead out of the new root.
	for _, fd := range fds {
		syscall.Close(fd)
	}
	userNS := -1 // the function's, if any
	if err == nil && r.User.HostUID != 0 {
		what = "creating the function's user namespace"
		userNS, err = newUserNS(&r.User)
	}
	if err == nil && r.Probe {
		what = "starting the function's process"
		err = probe(&r, userNS)
	}
	if err != nil {
		return fail(what, err)
	}
	if err := send("ready", -1); err != nil {
		return exitDiscarded
	}
	n, oobn, err = recv(buf, oob)
	if err != nil {
		syscall.Write(2, []byte("hearth-init: reading the task: "+err.Error()+"\n"))
		return exitDiscarded
	}
	if n == 0 {
		return exitDiscarded // a pooled sandbox, discarded
	}
	var t Task
	if err := t.Unmarshal(buf[:n]); err != nil {
		return fail("bad task", err)
	}
	dir := -1
	if fds := rights(oob[:oobn]); len(fds) == 1 {
		dir = fds[0]
	} else {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	if dir < 0 {
		return fail("bad task", errString("no function directory"))
	}
	buf = nil
	pid, err := startTask(&t, dir, &r, userNS)
	if err != nil {
		return fail("starting "+t.Argv[0], err)
	}
	if t.Port != 0 {
		fd, status, err := waitPort(pid, t.Port)
		switch {
		case err != nil:
			return fail("waiting for the function's port", err)
		case fd < 0:
			return status // the function exited first; EOF tells the driver
		}
		send("listening", fd)
		syscall.Close(fd)
	}
	syscall.Close(CtlFD)
	return supervise(pid)
}

// rights returns the descriptors passed in a message's control data.
func rights(oob []byte) []int {
	var out []int
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for i := range msgs {
		if fds, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
			out = append(out, fds...)
		}
	}
	return out
}

type errString string

func (e errString) Error() string { return string(e) }

// fail reports err to the driver and returns the init's exit status.
func fail(what string, err error) int {
	send("error: "+what+": "+err.Error(), -1)
	return exitFailed
}

func recv(buf, oob []byte) (n, oobn int, err error) {
	for {
		n, oobn, _, _, err = syscall.Recvmsg(CtlFD, buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err != syscall.EINTR {
			return n, oobn, err
		}
	}
}

// send writes one message, with fd attached if fd >= 0.
func send(msg string, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
	}
	for {
		err := syscall.Sendmsg(CtlFD, []byte(msg), oob, nil, 0)
		if err != syscall.EINTR {
			return err
		}
	}
}

// mountErr names a failed mount.
type mountErr struct {
	target string
	err    error
}

func (e *mountErr) Error() string { return "mount " + e.target + ": " + e.err.Error() }

func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := syscall.Mount(src, dst, fstype, flags, data); err != nil {
		return &mountErr{dst, err}
	}
	return nil
}

// devices are the /dev nodes of a sandbox: name, major, minor.
var devices = [...]struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

// buildRoot mounts the read-only template as the sandbox's root, with the
// host directories bound into it, a private /dev and /proc, pivots into it
// and detaches the host's root. It then sets the process-wide limits and
// drops the capability bounding set, so a pooled sandbox waits for its task
// with as little left to do as possible.
func buildRoot(r *Root, root, template string) error {
	if err := mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return err
	}
	const ro = syscall.MS_BIND | syscall.MS_REMOUNT | syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV
	if err := mount(template, root, "", syscall.MS_BIND, ""); err != nil {
		return err
	}
	if err := mount("", root, "", ro, ""); err != nil {
		return err
	}
	for _, b := range r.Binds {
		dst := root + "/" + b.Dst
		if err := mount(b.Src, dst, "", syscall.MS_BIND, ""); err != nil {
			return err
		}
		if err := mount("", dst, "", ro, ""); err != nil {
			return err
		}
	}
	dev := root + "/dev"
	if err := mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID|syscall.MS_NOEXEC, "mode=755,size=16k,nr_inodes=32"); err != nil {
		return err
	}
	for _, d := range devices {
		if err := syscall.Mknod(dev+"/"+d.name, syscall.S_IFCHR|0o666, mkdev(d.major, d.minor)); err != nil {
			return &mountErr{dev + "/" + d.name, err}
		}
	}
	for _, l := range [...][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}, {"shm", "/tmp"}} {
		syscall.Symlink(l[1], dev+"/"+l[0])
	}
	if err := mount("", dev, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := mount("proc", root+"/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := syscall.Chdir(root); err != nil {
		return err
	}
	if err := syscall.PivotRoot(".", ".oldroot"); err != nil {
		return &mountErr{"pivot_root", err}
	}
	if err := syscall.Chdir("/"); err != nil {
		return err
	}
	if err := syscall.Unmount("/.oldroot", syscall.MNT_DETACH); err != nil {
		return &mountErr{"unmount host root", err}
	}
	if r.Hostname != "" {
		syscall.Sethostname([]byte(r.Hostname))
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	if r.NoFile > 0 {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: r.NoFile, Max: r.NoFile}); err != nil {
			return err
		}
	}
	syscall.Setrlimit(rlimitCore, &syscall.Rlimit{})
	return dropBoundingSet()
}

// loopbackUp brings up lo, the only interface of the sandbox.
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr [40]byte // struct ifreq
	copy(ifr[:], "lo")
	*(*uint16)(unsafe.Pointer(&ifr[syscall.IFNAMSIZ])) = syscall.IFF_UP | syscall.IFF_LOOPBACK | syscall.IFF_RUNNING
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return &mountErr{"lo", e}
	}
	return nil
}

// dropBoundingSet empties this thread's capability bounding and ambient
// sets, which a function started without a user namespace inherits (one in
// a user namespace starts with a full bounding set and empties it itself,
// see fork_linux.go). The init keeps its own capabilities (it never
// executes).
func dropBoundingSet() error {
	for c := uintptr(0); c < 64; c++ {
		_, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapbsetDrop, c, 0, 0, 0, 0)
		if e == syscall.EINVAL {
			break // past CAP_LAST_CAP
		}
		if e != 0 {
			return e
		}
	}
	syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0)
	return nil
}

// startTask mounts the function's files and /tmp and starts the function
// as r's user, in the user namespace userNS if it is a descriptor (see
// fork_linux.go). It returns its pid.
func startTask(t *Task, dir int, r *Root, userNS int) (int, error) {
	err := moveMount(dir, "/var/task")
	syscall.Close(dir)
	if err != nil {
		return 0, &mountErr{"/var/task", err}
	}
	opts := "mode=1777"
	if t.TmpBytes > 0 {
		opts += ",size=" + itoa(uint64(t.TmpBytes))
	}
	if err := mount("tmpfs", "/tmp", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return 0, err
	}
	if err := syscall.Chdir("/var/task"); err != nil {
		return 0, err
	}
	path, err := lookPath(t.Argv[0], t.Env)
	if err != nil {
		return 0, err
	}
	p := &process{user: r.User, userNS: userNS, exec: true}
	if p.prog, err = fprog(r.Seccomp); err != nil {
		return 0, err
	}
	if p.path, err = syscall.BytePtrFromString(path); err != nil {
		return 0, err
	}
	if p.argv, err = syscall.SlicePtrFromStrings(t.Argv); err != nil {
		return 0, err
	}
	if p.envv, err = syscall.SlicePtrFromStrings(t.Env); err != nil {
		return 0, err
	}
	if p.stdin, err = syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
		return 0, err
	}
	defer syscall.Close(p.stdin)
	return startProcess(p)
}

// probe checks that a function could start as r's user, in userNS: a
// child goes through every step of startProcess but the exec, and exits.
func probe(r *Root, userNS int) error {
	p := &process{user: r.User, userNS: userNS, stdin: -1}
	var err error
	if p.prog, err = fprog(r.Seccomp); err != nil {
		return err
	}
	pid, err := startProcess(p)
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil && (!ws.Exited() || ws.ExitStatus() != 0) {
		err = errString("the probe exited with status " + itoa(uint64(exitStatus(ws))))
	}
	return err
}

// fprog returns the seccomp program prog as the kernel takes it.
func fprog(prog []SockFilter) (sockFprog, error) {
	if len(prog) == 0 {
		return sockFprog{}, errString("seccomp: empty filter")
	}
	return sockFprog{len: uint16(len(prog)), filter: &prog[0]}, nil
}

// lookPath resolves the command like a shell would, inside the sandbox.
func lookPath(cmd string, env []string) (string, error) {
	for i := 0; i < len(cmd); i++ {
		if cmd[i] == '/' {
			return cmd, nil
		}
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			path = kv[5:]
		}
	}
	for len(path) > 0 {
		dir := path
		for i := 0; i < len(path); i++ {
			if path[i] == ':' {
				dir, path = path[:i], path[i+1:]
				break
			}
		}
		if dir == path {
			path = ""
		}
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + cmd
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil && st.Mode&syscall.S_IFMT != syscall.S_IFDIR && st.Mode&0o111 != 0 {
			return p, nil
		}
	}
	return "", errString(cmd + ": command not found")
}

// waitPort polls the function's port on loopback until it accepts a
// connection, which it returns. If the function exits first it returns
// fd -1 and the function's status.
func waitPort(pid int, port uint16) (fd, status int, err error) {
	sa := &syscall.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}
	// A connect to a loopback port nobody listens on fails at once, so the
	// poll can be tight; the interval only bounds the wasted CPU.
	delay := int64(20_000) // ns
	for {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, 0, err
		}
		err = syscall.Connect(fd, sa)
		if err == nil {
			return fd, 0, nil
		}
		syscall.Close(fd)
		if err != syscall.ECONNREFUSED && err != syscall.EINTR {
			return -1, 0, err
		}
		var ws syscall.WaitStatus
		if p, _ := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); p == pid {
			return -1, exitStatus(ws), nil
		}
		ts := syscall.NsecToTimespec(delay)
		syscall.Nanosleep(&ts, nil)
		delay = min(delay*2, 200_000)
	}
}

func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// supervise is PID 1's loop: reap every child, return the function's
// status when it exits (the kernel then kills the rest of the namespace).
func supervise(pid int) int {
	var ws syscall.WaitStatus
	for {
		p, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 127
		}
		if p == pid {
			return exitStatus(ws)
		}
	}
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}

// Constants and calls the syscall package lacks (golang.org/x/sys/unix has
// them, but would pull reflection into the init).
const (
	prCapbsetDrop        = 24
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	rlimitCore           = 4
	seccompSetModeFilter = 1
	schedBatch           = 3   // SCHED_BATCH
	sysMoveMount         = 429 // the same on every architecture since Linux 5.2
	moveMountFEmptyPath  = 0x4
	atFDCWD              = -100
)

func mkdev(major, minor uint32) int {
	return int(uint64(major&0xfffff000)<<32 | uint64(major&0xfff)<<8 | uint64(minor&0xffffff00)<<12 | uint64(minor&0xff))
}

// moveMount attaches the detached mount fd at path (move_mount(2)).
func moveMount(fd int, path string) error {
	dirfd := atFDCWD
	empty, _ := syscall.BytePtrFromString("")
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	_, _, e := syscall.Syscall6(sysMoveMount, uintptr(fd), uintptr(unsafe.Pointer(empty)), uintptr(dirfd), uintptr(unsafe.Pointer(p)), moveMountFEmptyPath, 0)
	if e != 0 {
		return e
	}
	return nil
}
