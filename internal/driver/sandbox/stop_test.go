//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// logBuffer collects an instance's logs (written from the output reader).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServing starts spec and checks it answers, so the function is past
// its start-up when the test stops it.
func startServing(t *testing.T, d *Driver, spec driver.Spec) *Instance {
	t.Helper()
	inst := startT(t, d, spec).(*Instance)
	if _, err := call(t, inst, http.MethodGet, "/", "", ""); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	return inst
}

// stopTimed stops inst and returns how long Stop took.
func stopTimed(t *testing.T, inst driver.Instance) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	return time.Since(start)
}

// TestGracefulStop: Stop gives the function SIGTERM and the grace period to
// exit, returns as soon as it has, kills it at the end of the grace period
// otherwise, and leaves nothing behind either way. (A timeout still kills at
// once: TestTimeoutKillsEverything, whose function ignores SIGTERM.)
func TestGracefulStop(t *testing.T) {
	const grace = 3 * time.Second
	d := newTestDriver(t, Config{StopGrace: grace})

	t.Run("clean-up on SIGTERM", func(t *testing.T) {
		var logs logBuffer
		spec := fnSpec("term-cleanup") // logs, sleeps 200ms, logs, exits 0
		spec.Logs = &logs
		inst := startServing(t, d, spec)
		inst.mu.Lock()
		sb := inst.sb
		inst.mu.Unlock()
		took := stopTimed(t, inst)
		if got := logs.String(); !strings.Contains(got, "fn: got SIGTERM") || !strings.Contains(got, "fn: clean-up done") {
			t.Errorf("the function's logs lack its SIGTERM clean-up: %q", got)
		}
		if took < 200*time.Millisecond {
			t.Errorf("Stop took %v: it did not wait for the 200ms clean-up", took)
		}
		if took > grace/2 {
			t.Errorf("Stop took %v although the function exited after ~200ms", took)
		}
		if sb.exitCode != 0 {
			t.Errorf("the sandbox exited with %d, want the function's 0", sb.exitCode)
		}
		if err := waitNoLeaks(d, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("default SIGTERM action", func(t *testing.T) {
		inst := startServing(t, d, fnSpec("hello")) // a Go program: SIGTERM ends it
		if took := stopTimed(t, inst); took > grace/2 {
			t.Errorf("Stop took %v for a function that dies of SIGTERM", took)
		}
		if err := waitNoLeaks(d, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("SIGTERM ignored", func(t *testing.T) {
		d := newTestDriver(t, Config{StopGrace: 400 * time.Millisecond})
		// Started means listening, which it does after ignoring SIGTERM (and
		// an invocation would spin).
		inst := startT(t, d, fnSpec("ignore-term")).(*Instance)
		inst.mu.Lock()
		sb := inst.sb
		inst.mu.Unlock()
		took := stopTimed(t, inst)
		if took < 400*time.Millisecond || took > 400*time.Millisecond+3*time.Second {
			t.Errorf("Stop took %v, want the 400ms grace and a prompt kill", took)
		}
		select {
		case <-sb.done:
		default:
			t.Fatal("Stop returned before the sandbox was released")
		}
		if sb.exitCode != 128+9 {
			t.Errorf("exit status %d, want 137 (SIGKILL)", sb.exitCode)
		}
		if err := waitNoLeaks(d, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("context ends the grace", func(t *testing.T) {
		inst := startT(t, d, fnSpec("ignore-term"))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := inst.Stop(ctx)
		if took := time.Since(start); took > grace/2 {
			t.Errorf("Stop took %v past its context's 100ms", took)
		}
		if err != nil && err != context.DeadlineExceeded {
			t.Errorf("Stop: %v", err)
		}
		if err := waitNoLeaks(d, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no grace", func(t *testing.T) {
		d := newTestDriver(t, Config{StopGrace: -1})
		var logs logBuffer
		spec := fnSpec("term-cleanup")
		spec.Logs = &logs
		inst := startServing(t, d, spec)
		stopTimed(t, inst)
		if got := logs.String(); strings.Contains(got, "SIGTERM") {
			t.Errorf("StopGrace < 0 still sent SIGTERM: %q", got)
		}
	})

	t.Run("Close stops gracefully", func(t *testing.T) {
		d, err := New(Config{StateDir: d.cfg.StateDir, StopGrace: grace})
		if err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		spec := fnSpec("term-cleanup")
		spec.Logs = &logs
		startServing(t, d, spec)
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := logs.String(); !strings.Contains(got, "fn: clean-up done") {
			t.Errorf("Close did not let the function clean up: %q", got)
		}
		if err := waitNoLeaks(d, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}
