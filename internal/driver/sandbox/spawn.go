//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/sandbox/sbinit"
)

// sandbox is one running init (an empty sandbox, or a function instance
// after specialise). An Instance replaces its sandbox when it dies.
type sandbox struct {
	d     *Driver
	name  string
	cmd   *exec.Cmd
	cg    *cgroup
	nsMu  sync.RWMutex
	netns int      // the sandbox's network namespace; -1 once closed
	ctl   *os.File // the init's control socket (see sbinit.CtlFD)
	out   *output
	spec  driver.Spec
	image string // digest of the function's own root file system, if any
	// hostID is the function's host uid and gid (see userns.go), 0 without
	// a user namespace.
	hostID uint32

	http   *connPool   // http contract
	lambda *runtimeAPI // lambda contract
	events *eventsAPI  // $HEARTH_EVENTS_API; nil without Config.Emitter

	invocations atomic.Int64
	killReason  atomic.Value // string: why the driver killed it

	done     chan struct{} // closed when the init has exited and everything is released
	exitCode int           // valid after done
	oomKills int64         // valid after done
	memFails int64         // valid after done
}

// spawn starts an empty sandbox: namespaces, cgroup, a read-only root made
// of the directory template (the driver's template or Config.RootFS, or a
// function's own image) as root describes, and the function's user
// namespace, waiting for a task. image is the digest of the function's
// image ("" for the driver's root), released when the sandbox ends.
func (d *Driver) spawn(ctx context.Context, memory int64, root sbinit.Root, template, image string) (_ *sandbox, err error) {
	if memory <= 0 {
		memory = defaultMemory
	}
	name := d.prefix + "-" + strconv.FormatUint(d.seq.Add(1), 10)
	cg, err := d.cg.create(name, limits{memory: memory, pids: d.cfg.PidsMax, cpus: d.cfg.CPUs})
	if err != nil {
		return nil, err
	}
	sb := &sandbox{d: d, name: name, cg: cg, netns: -1, done: make(chan struct{})}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
		if err != nil {
			if sb.cmd != nil && sb.cmd.Process != nil {
				sb.cmd.Process.Kill()
				sb.cmd.Wait()
			}
			if sb.ctl != nil {
				sb.ctl.Close()
			}
			if sb.out != nil {
				sb.out.close()
			}
			if sb.netns >= 0 {
				unix.Close(sb.netns)
			}
			cg.destroy()
			if sb.hostID != 0 {
				d.hostIDs.put(sb.hostID)
			}
		}
	}()
	if d.userNS {
		if sb.hostID, err = d.hostIDs.get(); err != nil {
			return nil, err
		}
		root.User.HostUID, root.User.HostGID = sb.hostID, sb.hostID
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: control socket: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	sb.ctl = os.NewFile(uintptr(fds[0]), "sandbox-ctl")
	ctlInit := os.NewFile(uintptr(fds[1]), "sandbox-ctl-init")
	closers = append(closers, ctlInit)
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	closers = append(closers, outW)
	sb.out = newOutput(outR)

	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig: syscall.SIGKILL,
		Setsid:    true,
	}
	if cg.v2 {
		attr.UseCgroupFD = true
		attr.CgroupFD = int(cg.dirf.Fd())
	}
	sb.cmd = &exec.Cmd{
		Path: d.init.path,
		Args: []string{sbinit.Arg0},
		// One P: the init is single-threaded work; fewer runtime threads
		// and per-P caches keep its memory small.
		Env:         []string{sbinit.Env + "=1", "GOMAXPROCS=1"},
		Stdout:      outW,
		Stderr:      outW,
		ExtraFiles:  []*os.File{ctlInit}, // fd 3 = sbinit.CtlFD
		SysProcAttr: attr,
	}
	if err := sb.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: starting init: %w", err)
	}
	for _, c := range closers {
		c.Close()
	}
	closers = nil
	if !cg.v2 {
		if err := cg.addProc(sb.cmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	if err := sb.sendRoot(root.Marshal(), template); err != nil {
		return nil, fmt.Errorf("sandbox: configuring init: %w", err)
	}
	line, fd, err := sb.readMsg(ctx)
	if fd >= 0 {
		unix.Close(fd)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: waiting for init: %w", err)
	}
	if line != "ready" {
		if line == "" {
			line = "the init exited"
		}
		return nil, fmt.Errorf("sandbox: init: %s", strings.TrimPrefix(line, "error: "))
	}
	sb.netns, err = unix.Open("/proc/"+strconv.Itoa(sb.cmd.Process.Pid)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: opening network namespace: %w", err)
	}
	sb.image = image
	go sb.wait()
	return sb, nil
}

// sendRoot sends the init its root configuration with the state directory
// and template, opened through /proc/PID/root so that they belong to the
// init's mount namespace (see sbinit.CtlFD).
func (sb *sandbox) sendRoot(msg []byte, template string) error {
	base := "/proc/" + strconv.Itoa(sb.cmd.Process.Pid) + "/root"
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, dir := range []string{sb.d.cfg.StateDir, template} {
		fd, err := unix.Open(base+dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", dir, err)
		}
		fds = append(fds, fd)
	}
	return sb.sendMsg(msg, fds...)
}

// sendMsg sends one message to the init, with fds attached.
func (sb *sandbox) sendMsg(msg []byte, fds ...int) error {
	rc, err := sb.ctl.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var serr error
	err = rc.Write(func(s uintptr) bool {
		serr = unix.Sendmsg(int(s), msg, oob, nil, 0)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	return err
}

// readMsg reads one message from the init and the descriptor that came
// with it (-1 if none). At EOF (the init closed its end: the function
// started, or the init exited) it returns "".
func (sb *sandbox) readMsg(ctx context.Context) (string, int, error) {
	if dl, ok := ctx.Deadline(); ok {
		sb.ctl.SetReadDeadline(dl)
	} else {
		sb.ctl.SetReadDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { sb.ctl.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := sb.ctl.SyscallConn()
	if err != nil {
		return "", -1, err
	}
	var buf [4096]byte
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(s uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(s), buf[:], oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return "", -1, err
	}
	fd := -1
	if oobn > 0 {
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if fds, err := unix.ParseUnixRights(&m); err == nil {
					for _, f := range fds {
						if fd < 0 {
							fd = f
						} else {
							unix.Close(f)
						}
					}
				}
			}
		}
	}
	return string(buf[:n]), fd, nil
}

// wait reaps the init and releases everything the sandbox holds.
func (sb *sandbox) wait() {
	err := sb.cmd.Wait()
	code := 0
	if err != nil {
		code = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = ee.ExitCode()
			}
		}
	}
	sb.exitCode = code
	sb.oomKills = sb.cg.oomKills()
	sb.memFails = sb.cg.memoryFailures()
	sb.cg.kill() // anything left (cannot happen: the PID namespace died with its init)
	sb.nsMu.Lock()
	unix.Close(sb.netns)
	sb.netns = -1
	h, l, ev := sb.http, sb.lambda, sb.events
	sb.nsMu.Unlock()
	if h != nil {
		h.close()
	}
	if l != nil {
		l.close()
	}
	if ev != nil {
		ev.close()
	}
	sb.ctl.Close()
	if err := sb.cg.destroy(); err != nil {
		sb.d.log.Warn("sandbox: cgroup not removed", "err", err)
	}
	if sb.hostID != 0 {
		sb.d.hostIDs.put(sb.hostID) // its processes are gone with the PID namespace
	}
	sb.out.drain()
	sb.out.close() // every writer is gone: the reader has seen or will see EOF
	if sb.image != "" {
		sb.d.images.release(sb.image)
	}
	close(sb.done)
}

func (sb *sandbox) alive() bool {
	select {
	case <-sb.done:
		return false
	default:
		return true
	}
}

// kill kills the whole sandbox (its init, hence its PID namespace).
func (sb *sandbox) kill(reason string) {
	sb.killReason.CompareAndSwap(nil, reason)
	sb.cmd.Process.Signal(syscall.SIGKILL)
}

// destroy kills the sandbox and waits until everything is released.
func (sb *sandbox) destroy() {
	sb.kill("stopped")
	<-sb.done
}

// stop ends a running function's sandbox, the way Lambda and Knative end an
// instance they no longer need: the function's processes get SIGTERM and up
// to grace to exit (stop returns as soon as they have), then whatever is
// left is killed. A grace <= 0 kills at once. It returns once everything is
// released, or with ctx's error when ctx ends first; the sandbox is then
// already killed and its reaper (wait) finishes the release.
func (sb *sandbox) stop(ctx context.Context, grace time.Duration) error {
	if grace > 0 && sb.killReason.CompareAndSwap(nil, "stopped") && sb.signalFunction(unix.SIGTERM) > 0 {
		t := time.NewTimer(grace)
		select {
		case <-sb.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	sb.kill("stopped")
	select {
	case <-sb.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signalFunction sends sig to every process of the sandbox but its init
// and returns how many it signalled. The pids come from the cgroup; each is
// opened as a pidfd and checked to still be in the sandbox's PID namespace
// before it is signalled, so a pid reused by a host process in between is
// never hit.
func (sb *sandbox) signalFunction(sig unix.Signal) int {
	init := sb.cmd.Process.Pid
	ns, err := os.Readlink("/proc/" + strconv.Itoa(init) + "/ns/pid")
	if err != nil {
		return 0 // the init is gone, and the namespace with it
	}
	n := 0
	for _, pid := range sb.cg.procs() {
		if pid == init {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // exited
		}
		if cur, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid"); err == nil && cur == ns {
			if unix.PidfdSendSignal(fd, sig, nil, 0) == nil {
				n++
			}
		}
		unix.Close(fd)
	}
	return n
}

// functionDir returns spec's directory as a detached, read-only mount the
// init attaches at /var/task (the init no longer sees the host's files).
func functionDir(dir string) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("sandbox: cloning %s: %w", dir, err)
	}
	err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
	})
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sandbox: making %s read-only: %w", dir, err)
	}
	return fd, nil
}

// specialise starts spec's function in an empty sandbox and waits until it
// is ready to serve.
func (sb *sandbox) specialise(ctx context.Context, spec driver.Spec) error {
	sb.spec = spec
	mem := spec.MemoryBytes
	if mem <= 0 {
		mem = defaultMemory
	}
	if err := sb.cg.setLimits(limits{memory: mem, pids: sb.d.cfg.PidsMax, cpus: sb.d.cfg.CPUs}); err != nil {
		return err
	}
	sb.out.setLogs(spec.Logs)
	// The contract's side is set up under nsMu: wait releases it when the
	// init dies, which may already have happened.
	sb.nsMu.Lock()
	if sb.netns < 0 {
		sb.nsMu.Unlock()
		return sb.exitedEarly(ctx, spec)
	}
	switch spec.Protocol {
	case "http":
		sb.http = &connPool{max: max(spec.Concurrency, 4), dial: func(ctx context.Context) (net.Conn, error) {
			sb.nsMu.RLock()
			defer sb.nsMu.RUnlock()
			if sb.netns < 0 {
				return nil, net.ErrClosed
			}
			return dialNetns(ctx, sb.d.hostNS, sb.netns, "127.0.0.1:"+strconv.Itoa(funcPort))
		}}
	case "lambda":
		api, err := newRuntimeAPI(sb)
		if err != nil {
			sb.nsMu.Unlock()
			return err
		}
		sb.lambda = api
	}
	if sb.d.cfg.Emitter != nil {
		ev, err := newEventsAPI(sb)
		if err != nil {
			sb.nsMu.Unlock()
			return err
		}
		sb.events = ev
	}
	sb.nsMu.Unlock()
	task := sb.d.taskFor(spec)
	dir, err := functionDir(spec.Dir)
	if err != nil {
		return err
	}
	err = sb.sendMsg(task.Marshal(), dir)
	unix.Close(dir)
	if err != nil {
		return fmt.Errorf("sandbox: sending task: %w", err)
	}
	line, fd, err := sb.readMsg(ctx)
	switch {
	case err != nil && ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
		if spec.Protocol == "http" {
			return driver.Errorf(driver.ErrTimeout, "the function did not listen on $PORT (%d) in time", funcPort)
		}
		return driver.Errorf(driver.ErrTimeout, "the function did not start in time")
	case err != nil:
		// The init exited and the control socket was closed under us.
		return sb.exitedEarly(ctx, spec)
	case strings.HasPrefix(line, "error: "):
		return driver.Errorf(driver.ErrInvalidArtifact, "%s", strings.TrimPrefix(line, "error: "))
	case line == "listening" && fd >= 0:
		f := os.NewFile(uintptr(fd), "function")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("sandbox: connection to the function: %w", err)
		}
		sb.http.put(newHTTPConn(c))
		return nil
	case fd >= 0:
		unix.Close(fd)
		return fmt.Errorf("sandbox: unexpected message from init: %q", line)
	case line != "":
		return fmt.Errorf("sandbox: unexpected message from init: %q", line)
	}
	// EOF: a lambda function started; an http function exited before it
	// listened.
	if spec.Protocol == "lambda" {
		return sb.lambda.waitReady(ctx)
	}
	return sb.exitedEarly(ctx, spec)
}

// exitedEarly waits for a sandbox whose init is exiting and describes why.
func (sb *sandbox) exitedEarly(ctx context.Context, spec driver.Spec) error {
	select {
	case <-sb.done:
	case <-ctx.Done():
		return driver.Errorf(driver.ErrTimeout, "the function did not start in time")
	}
	if spec.Protocol == "lambda" {
		if sb.lambda != nil {
			if err := sb.lambda.waitReady(ctx); err != nil {
				return err
			}
		}
		return sb.exitError("the runtime exited before asking for an invocation")
	}
	return sb.exitError("the function exited before listening on $PORT")
}

// exitError describes why the sandbox ended; call after done.
func (sb *sandbox) exitError(what string) error {
	tail := strings.TrimSpace(sb.out.lastLines())
	if len(tail) > 512 {
		tail = "…" + tail[len(tail)-512:]
	}
	if tail != "" {
		tail = "; output: " + tail
	}
	if sb.oomKills > 0 {
		return driver.Errorf(driver.ErrMemoryLimit, "the function exceeded its memory limit of %s and was killed", mib(sb.spec.MemoryBytes))
	}
	var status string
	switch c := sb.exitCode; {
	case c > 128:
		status = "killed by signal " + unix.SignalName(syscall.Signal(c-128))
		if status == "killed by signal " {
			status = "killed by signal " + strconv.Itoa(c-128)
		}
	case c >= 0:
		status = "exit status " + strconv.Itoa(c)
	default:
		status = "unknown status"
	}
	return driver.Errorf(driver.ErrCrashed, "%s (%s)%s", what, status, tail)
}

func mib(b int64) string {
	if b <= 0 {
		b = defaultMemory
	}
	if b%(1<<20) == 0 {
		return strconv.FormatInt(b>>20, 10) + " MiB"
	}
	return strconv.FormatInt(b, 10) + " bytes"
}
