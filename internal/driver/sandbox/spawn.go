//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
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
)

// sandbox is one running init (an empty sandbox, or a function instance
// after specialise). An Instance replaces its sandbox when it dies.
type sandbox struct {
	d      *Driver
	name   string
	cmd    *exec.Cmd
	cg     *cgroup
	nsMu   sync.RWMutex
	netns  int // the sandbox's network namespace; -1 once closed
	ctl    *os.File
	status *os.File
	out    *output
	spec   driver.Spec

	http   *connPool   // http contract
	lambda *runtimeAPI // lambda contract

	invocations atomic.Int64
	killReason  atomic.Value // string: why the driver killed it

	done     chan struct{} // closed when the init has exited and everything is released
	exitCode int           // valid after done
	oomKills int64         // valid after done
	memFails int64         // valid after done

	destroyOnce sync.Once
}

// spawn starts an empty sandbox: namespaces, cgroup, root, waiting for a task.
func (d *Driver) spawn(ctx context.Context, memory int64) (_ *sandbox, err error) {
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
			if sb.status != nil {
				sb.status.Close()
			}
			if sb.out != nil {
				sb.out.close()
			}
			if sb.netns >= 0 {
				unix.Close(sb.netns)
			}
			cg.destroy()
		}
	}()
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	sb.ctl = ctlW
	closers = append(closers, ctlR)
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	sb.status = statusR
	closers = append(closers, statusW)
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
		Path:        "/proc/self/exe",
		Args:        []string{initArg0},
		Env:         []string{initEnv + "=" + d.initEnv},
		Stdout:      outW,
		Stderr:      outW,
		ExtraFiles:  []*os.File{ctlR, statusW},
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
	sb.netns, err = unix.Open("/proc/"+strconv.Itoa(sb.cmd.Process.Pid)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: opening network namespace: %w", err)
	}
	line, err := readStatus(ctx, sb.status)
	if err != nil {
		return nil, fmt.Errorf("sandbox: waiting for init: %w", err)
	}
	if line != "ready" {
		return nil, fmt.Errorf("sandbox: init: %s", strings.TrimPrefix(line, "error: "))
	}
	go sb.wait()
	return sb, nil
}

// readStatus reads one line (or EOF, as "") from the init's status pipe.
func readStatus(ctx context.Context, f *os.File) (string, error) {
	if dl, ok := ctx.Deadline(); ok {
		f.SetReadDeadline(dl)
	} else {
		f.SetReadDeadline(time.Time{})
	}
	var buf [4096]byte
	n := 0
	for n < len(buf) {
		m, err := f.Read(buf[n:])
		n += m
		if i := strings.IndexByte(string(buf[:n]), '\n'); i >= 0 {
			return string(buf[:i]), nil
		}
		if err == io.EOF {
			return strings.TrimSpace(string(buf[:n])), nil
		}
		if err != nil {
			return "", err
		}
	}
	return string(buf[:n]), nil
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
	if sb.http != nil {
		sb.http.close()
	}
	if sb.lambda != nil {
		sb.lambda.close()
	}
	sb.ctl.Close()
	sb.status.Close()
	sb.nsMu.Lock()
	unix.Close(sb.netns)
	sb.netns = -1
	sb.nsMu.Unlock()
	if err := sb.cg.destroy(); err != nil {
		sb.d.log.Warn("sandbox: cgroup not removed", "err", err)
	}
	sb.out.drain()
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
	sb.destroyOnce.Do(func() {
		sb.kill("stopped")
		<-sb.done
		sb.out.close()
	})
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
			return err
		}
		sb.lambda = api
	}
	task, err := json.Marshal(sb.d.taskFor(spec))
	if err != nil {
		return err
	}
	if _, err := sb.ctl.Write(task); err != nil {
		return fmt.Errorf("sandbox: sending task: %w", err)
	}
	sb.ctl.Close()
	line, err := readStatus(ctx, sb.status)
	if err != nil {
		return fmt.Errorf("sandbox: starting %s: %w", spec.Key(), err)
	}
	if line != "" {
		return driver.Errorf(driver.ErrInvalidArtifact, "%s", strings.TrimPrefix(line, "error: "))
	}
	if spec.Protocol == "lambda" {
		return sb.lambda.waitReady(ctx)
	}
	return sb.waitListening(ctx)
}

// waitListening polls the function's port through the network namespace
// with a tight backoff (connect to a loopback port that nobody listens on
// fails at once), keeping the first connection.
func (sb *sandbox) waitListening(ctx context.Context) error {
	delay := 20 * time.Microsecond
	for {
		c, err := sb.http.dial(ctx)
		if err == nil {
			sb.http.put(newHTTPConn(c))
			return nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("sandbox: connecting to the function: %w", err)
		}
		select {
		case <-sb.done:
			return sb.exitError("the function exited before listening on $PORT")
		case <-ctx.Done():
			return driver.Errorf(driver.ErrTimeout, "the function did not listen on $PORT (%d) in time", funcPort)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Millisecond)
	}
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
