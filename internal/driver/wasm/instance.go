package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/hearthdev/hearth/internal/driver"
)

// instance is one driver.Instance: a function version ready to serve. Module
// instances are pooled and reverted between requests: to the snapshot
// (reactors, snapshot.go) or to the post-instantiation state (commands
// without file access, command.go). Commands with file access get a new
// module instance per request.
type instance struct {
	d     *Driver
	m     *module
	spec  driver.Spec
	limit uint64    // memory limit in bytes, page-aligned
	snap  *snapshot // reactor only

	usage   atomic.Int64 // bytes of live linear memory
	busy    atomic.Int64 // nanoseconds spent running the guest
	invoked atomic.Bool

	stopCtx context.Context // done when Stop is called
	stopNow context.CancelFunc

	mu       sync.Mutex
	stopped  bool
	released bool // module and snapshot references dropped
	inflight sync.WaitGroup
	idle     []*pooled  // reactor only: reverted module instances
	cmdIdle  []*cmdInst // command reuse path: reverted module instances

	cmdMu   sync.Mutex
	cmdSnap *cmdSnapshot // command reuse path: state after instantiation
	noReuse atomic.Bool  // the module cannot take the reuse path

	// cmdSlots recycles the per-call plumbing of command modules together
	// with the module configuration bound to it: building a wazero
	// ModuleConfig copies it once per option, which on the hot path costs
	// more than keeping finished ones.
	cmdSlots sync.Pool // of *cmdSlot
}

// cmdSlot is a slot and the command-module configuration that reads and
// writes through it.
type cmdSlot struct {
	s   *slot
	cfg wazero.ModuleConfig
}

func newInstance(ctx context.Context, d *Driver, m *module, spec driver.Spec) (*instance, error) {
	i := &instance{d: d, m: m, spec: spec, limit: pageLimit(spec.MemoryBytes)}
	if min := m.info.memMin * pageSize; m.info.hasMemory && min > i.limit {
		return nil, driver.Errorf(driver.ErrMemoryLimit, "module %s needs at least %s of memory, more than the function's limit of %s", m.name, formatBytes(int64(min)), formatBytes(int64(i.limit)))
	}
	if m.reactor {
		s, err := m.snapshot(ctx, d, &i.spec)
		if err != nil {
			return nil, err
		}
		i.snap = s
	}
	i.stopCtx, i.stopNow = context.WithCancel(context.Background())
	return i, nil
}

// Invoke implements driver.Instance.
func (i *instance) Invoke(ctx context.Context, req *driver.Request) (*driver.Response, error) {
	i.mu.Lock()
	if i.stopped {
		i.mu.Unlock()
		return nil, driver.Errorf(driver.ErrStopped, "instance of %s was stopped", i.spec.Key())
	}
	i.inflight.Add(1)
	i.mu.Unlock()
	defer i.inflight.Done()

	var cancel context.CancelFunc
	if i.spec.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, i.spec.Timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	defer context.AfterFunc(i.stopCtx, cancel)()

	env := cgiEnv(&i.spec, req)
	stdout := &outputBuffer{}
	stderr := &stderrWriter{dst: req.Stderr}
	start := time.Now()
	var (
		cold bool
		err  error
	)
	if i.snap != nil {
		cold, err = i.invokeReactor(ctx, req, env, stdout, stderr)
	} else {
		reused := false
		if !i.spec.AllowFiles && !i.noReuse.Load() {
			cold, reused, err = i.invokeReused(ctx, req, env, stdout, stderr)
		}
		if !reused {
			cold = !i.invoked.Swap(true)
			err = i.invokeCommand(ctx, req, env, stdout, stderr)
		}
	}
	i.busy.Add(int64(time.Since(start)))
	if err != nil {
		return nil, err
	}
	if stdout.overflow {
		return nil, driver.Errorf(driver.ErrContract, "the module wrote more than %s to stdout (response body limit %s)", formatBytes(maxOutputBytes), formatBytes(maxBodyBytes))
	}
	resp, err := parseCGI(stdout.buf.Bytes())
	if err != nil {
		return nil, err
	}
	resp.Cold = cold
	return resp, nil
}

// invokeCommand runs a WASI command in a fresh module instance: the path of
// modules with file access (see command.go for the others).
func (i *instance) invokeCommand(ctx context.Context, req *driver.Request, env []string, stdout *outputBuffer, stderr *stderrWriter) error {
	cs, _ := i.cmdSlots.Get().(*cmdSlot)
	if cs == nil {
		s := newSlot()
		cs = &cmdSlot{s: s, cfg: baseConfig(i.m, &i.spec, s).WithStartFunctions("_start")}
	}
	s, cfg := cs.s, cs.cfg
	s.origin.Store(monotonic()) // a fresh guest's clock starts at zero
	s.set(ctx, req.Body, stdout, stderr)
	defer func() {
		s.set(context.Background(), nil, nil, nil)
		i.cmdSlots.Put(cs)
	}()
	alloc := newAllocator(i.limit, -1, i.d.mem, &i.usage, &i.d.live)
	callCtx := experimental.WithMemoryAllocator(withRequestEnv(ctx, env), alloc)
	mod, err := i.d.runtime.InstantiateModule(callCtx, i.m.compiled, cfg)
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	return i.guestError(ctx, err, alloc, stderr)
}

// guestError maps what wazero returned for a guest call to the driver's
// error kinds. The explanation of a failure is also written to the
// invocation's stderr so that it lands in the function's logs.
func (i *instance) guestError(ctx context.Context, err error, alloc *allocator, stderr *stderrWriter) error {
	if err == nil {
		return nil
	}
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	if isExit && exit.ExitCode() == 0 {
		return nil
	}
	if ctx.Err() != nil || (isExit && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled)) {
		switch {
		case i.stopCtx.Err() != nil:
			return driver.Errorf(driver.ErrStopped, "instance of %s was stopped during the invocation", i.spec.Key())
		case errors.Is(ctx.Err(), context.DeadlineExceeded) || (isExit && exit.ExitCode() == sys.ExitCodeDeadlineExceeded):
			return i.report(stderr, driver.Errorf(driver.ErrTimeout, "function did not answer within %s", i.timeoutText()))
		default:
			return fmt.Errorf("invocation abandoned: %w", context.Canceled)
		}
	}
	if alloc.limitHit.Load() {
		return i.report(stderr, driver.Errorf(driver.ErrMemoryLimit, "function exceeded its memory limit of %s", formatBytes(int64(i.limit))))
	}
	if isExit {
		detail := fmt.Sprintf("exit code %d", exit.ExitCode())
		if h := stderr.hint(); h != "" {
			detail += ": " + h
		}
		return driver.Errorf(driver.ErrCrashed, "%s", detail)
	}
	// A trap: "wasm error: unreachable" and a wasm stack trace.
	msg := err.Error()
	if j := strings.Index(msg, "wasm error: "); j >= 0 {
		msg = msg[j:]
	}
	first, _, _ := strings.Cut(msg, "\n")
	if h := stderr.hint(); h != "" {
		first += " (stderr: " + h + ")"
	}
	_, _ = fmt.Fprintf(stderr, "hearth: %s\n", msg)
	return driver.Errorf(driver.ErrCrashed, "%s", first)
}

func (i *instance) report(stderr *stderrWriter, err error) error {
	_, _ = fmt.Fprintf(stderr, "hearth: %v\n", err)
	return err
}

func (i *instance) timeoutText() string {
	if i.spec.Timeout > 0 {
		return i.spec.Timeout.String()
	}
	return "its deadline"
}

// Stop implements driver.Instance. It abandons in-flight invocations (they
// return ErrStopped), waits for them to leave the guest, and frees every
// module instance. Safe to call more than once.
func (i *instance) Stop(ctx context.Context) error {
	i.mu.Lock()
	i.stopped = true
	i.mu.Unlock()
	i.stopNow()

	done := make(chan struct{})
	go func() {
		i.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wasm: stopping %s: %w", i.spec.Key(), ctx.Err())
	}
	i.mu.Lock()
	release := !i.released
	i.released = true
	idle, cmdIdle := i.idle, i.cmdIdle
	i.idle, i.cmdIdle = nil, nil
	i.mu.Unlock()
	for _, p := range idle {
		p.close()
	}
	for _, c := range cmdIdle {
		c.close()
	}
	if release {
		if i.snap != nil {
			i.snap.release()
		}
		i.m.release()
	}
	return nil
}

// Usage implements driver.Instance: the linear memory of live module
// instances, and the time spent running guest code (wasm runs on the calling
// goroutine, so this is the guest's CPU time plus host-call time).
func (i *instance) Usage() driver.Usage {
	return driver.Usage{MemoryBytes: i.usage.Load(), CPUTime: time.Duration(i.busy.Load())}
}
