//go:build linux

package sandbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// Instance is one warm function instance. It owns one sandbox at a time:
// when the sandbox dies (crash, memory limit, timeout kill) Healthy reports
// false so the scheduler replaces the instance; an Invoke that still
// arrives starts a fresh sandbox (a cold start, reported in Response.Cold).
type Instance struct {
	d    *Driver
	spec driver.Spec

	mu      sync.Mutex
	sb      *sandbox
	stopped bool
}

var (
	_ driver.Instance      = (*Instance)(nil)
	_ driver.HealthChecker = (*Instance)(nil)
)

// current returns the live sandbox, starting a new one if the last died.
func (in *Instance) current(ctx context.Context) (*sandbox, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped {
		return nil, driver.ErrStopped
	}
	if in.sb != nil && in.sb.usable() {
		return in.sb, nil
	}
	if in.sb != nil {
		in.sb.destroy()
		in.sb = nil
	}
	sb, err := in.d.startSandbox(ctx, in.spec)
	if err != nil {
		return nil, err
	}
	in.sb = sb
	return sb, nil
}

// Invoke implements driver.Instance.
func (in *Instance) Invoke(ctx context.Context, req *driver.Request) (*driver.Response, error) {
	// The gateway has usually set this deadline already; a second timer
	// would only cost.
	if dl, ok := ctx.Deadline(); in.spec.Timeout > 0 && (!ok || time.Until(dl) > in.spec.Timeout) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.spec.Timeout)
		defer cancel()
	}
	sb, err := in.current(ctx)
	if err != nil {
		if errors.Is(err, driver.ErrStopped) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, driver.Errorf(driver.ErrTimeout, "the function did not start within %v", in.spec.Timeout)
		}
		return nil, err
	}
	cold := sb.invocations.Add(1) == 1
	hops := sb.events.invoking(req) // the events endpoint's loop guard; nil-safe
	s := sb.out.begin(req.Stderr)
	stop := context.AfterFunc(ctx, func() { sb.kill("timeout") })
	var resp *driver.Response
	if sb.lambda != nil {
		resp, err = sb.lambda.invoke(ctx, req)
	} else {
		resp, err = roundTrip(ctx, sb.http, req, in.d.cfg.MaxResponseBytes)
	}
	if err != nil {
		err = in.classify(ctx, sb, err)
	}
	stop()
	sb.events.done(hops)
	sb.out.end(s)
	if err != nil {
		return nil, err
	}
	resp.Cold = cold
	return resp, nil
}

// classify turns a failed round trip into the driver's sentinel errors.
func (in *Instance) classify(ctx context.Context, sb *sandbox, err error) error {
	in.mu.Lock()
	stopped := in.stopped
	in.mu.Unlock()
	if stopped {
		return driver.Errorf(driver.ErrStopped, "the instance was stopped during the invocation")
	}
	if expired(ctx) {
		sb.kill("timeout")
		return driver.Errorf(driver.ErrTimeout, "no answer within %v: the sandbox was killed", in.spec.Timeout)
	}
	var ge *driver.GuestError
	if errors.As(err, &ge) {
		if sb.alive() {
			return err // contract errors and lambda function errors
		}
		return sb.exitError(ge.Detail)
	}
	// The connection failed: give the sandbox a moment to finish dying so
	// the exit status and the memory events are known.
	select {
	case <-sb.done:
	case <-time.After(2 * time.Second):
		return driver.Errorf(driver.ErrContract, "the function closed the connection without answering: %v", err)
	}
	if r, _ := sb.killReason.Load().(string); r == "timeout" {
		return driver.Errorf(driver.ErrCrashed, "the sandbox was killed because a concurrent invocation timed out")
	}
	return sb.exitError("the function exited")
}

// Healthy implements driver.HealthChecker: false once the sandbox died.
func (in *Instance) Healthy() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return !in.stopped && in.sb != nil && in.sb.usable() && in.sb.healthy()
}

// Stop implements driver.Instance: the function gets SIGTERM and up to
// Config.StopGrace to exit before its sandbox is killed (see sandbox.stop);
// a ctx that ends first cuts the grace short. In-flight invocations fail
// with ErrStopped.
func (in *Instance) Stop(ctx context.Context) error {
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		return nil
	}
	in.stopped = true
	sb := in.sb
	in.sb = nil
	in.mu.Unlock()
	if sb != nil {
		if err := sb.stop(ctx, in.d.cfg.StopGrace); err != nil {
			return err
		}
	}
	in.d.forget(in)
	return nil
}

// Usage implements driver.Instance, from the sandbox's cgroup.
func (in *Instance) Usage() driver.Usage {
	in.mu.Lock()
	sb := in.sb
	in.mu.Unlock()
	if sb == nil || !sb.alive() {
		return driver.Usage{}
	}
	return driver.Usage{MemoryBytes: sb.cg.memoryCurrent(), CPUTime: sb.cg.cpuTime()}
}

// usable reports whether new invocations may use the sandbox: it runs and
// the driver has not started killing it.
func (sb *sandbox) usable() bool {
	return sb.killReason.Load() == nil && sb.alive()
}

func (sb *sandbox) healthy() bool {
	if sb.lambda != nil {
		return sb.lambda.healthy()
	}
	return true
}

// expired reports whether ctx is done or its deadline has passed (a socket
// deadline may fire a moment before the context's timer).
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
