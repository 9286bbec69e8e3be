// Package conformance is the test suite every isolation driver must pass.
// A driver's own tests call Run with a Harness that builds guests, in the
// driver's technology, for a fixed set of behaviours; the suite then checks
// the driver.Driver contract: responses, request propagation, limits,
// failures, concurrency and clean shutdown.
package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// Behaviours a Harness must provide. Unless stated, a behaviour answers any
// method and path.
const (
	// Hello answers 200 with Content-Type text/plain and the body "hello".
	Hello = "hello"
	// Echo answers 200 with the request body, byte for byte, and the headers
	// X-Echo-Method (request method), X-Echo-Path (the request's
	// driver.Request.Path), X-Echo-Query (the raw query string) and
	// X-Echo-Test (the value of the request header X-Test).
	Echo = "echo"
	// Loop never answers: it spins on the CPU forever.
	Loop = "loop"
	// OOM allocates and touches memory, 1 MiB at a time, without bound.
	OOM = "oom"
	// Crash writes a line containing "boom" to stderr and fails: a panic, a
	// trap or a non-zero exit.
	Crash = "crash"
	// Env answers 200 with the value of the environment variable GREETING.
	Env = "env"
	// Stderr writes the line "a line for the logs" to stderr and answers 200
	// with the body "ok".
	Stderr = "stderr"
)

// Behaviours lists every behaviour the suite uses.
var Behaviours = []string{Hello, Echo, Loop, OOM, Crash, Env, Stderr}

// Harness adapts a driver to the suite.
type Harness struct {
	// Driver is the driver under test.
	Driver driver.Driver
	// Spec returns a spec whose instances run the given behaviour. Set
	// defaults that let every behaviour work (Timeout of 10s or more, enough
	// memory for Hello); the suite lowers Timeout and MemoryBytes, raises
	// Concurrency and adds Env entries where a case needs it.
	Spec func(t *testing.T, behaviour string) driver.Spec
	// Leaks, if set, is called after a case has stopped all its instances
	// and reports resources the driver still holds (processes, cgroups,
	// mounts, mappings, file descriptors).
	Leaks func() error
	// Slack is added to every latency bound the suite checks (default 0),
	// for drivers whose start or kill takes longer by nature.
	Slack time.Duration
}

// Run runs the suite. Cases run one after another (the goroutine accounting
// of the Stop case needs a quiet process).
func Run(t *testing.T, h Harness) {
	if h.Driver == nil || h.Spec == nil {
		t.Fatal("conformance: Harness.Driver and Harness.Spec are required")
	}
	s := &suite{h: h}
	for _, c := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Hello", s.testHello},
		{"Echo1MiB", func(t *testing.T) { s.testEcho(t, 1<<20) }},
		{"Echo5MiB", func(t *testing.T) { s.testEcho(t, 5<<20) }},
		{"RequestPropagation", s.testPropagation},
		{"Env", s.testEnv},
		{"Stderr", s.testStderr},
		{"Timeout", s.testTimeout},
		{"MemoryLimit", s.testMemoryLimit},
		{"Crash", s.testCrash},
		{"Concurrent", s.testConcurrent},
		{"StopDuringInvocation", s.testStopDuringInvocation},
		{"StopReleases", s.testStopReleases},
	} {
		t.Run(c.name, c.fn)
	}
}

type suite struct{ h Harness }

func (s *suite) spec(t *testing.T, behaviour string, adjust func(*driver.Spec)) driver.Spec {
	t.Helper()
	spec := s.h.Spec(t, behaviour)
	if adjust != nil {
		env := make(map[string]string, len(spec.Env)+1)
		for k, v := range spec.Env {
			env[k] = v
		}
		spec.Env = env
		adjust(&spec)
	}
	return spec
}

// start starts an instance that is stopped when the test ends.
func (s *suite) start(t *testing.T, spec driver.Spec) driver.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+s.h.Slack)
	defer cancel()
	inst, err := s.h.Driver.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start(%s): %v", spec.Key(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := inst.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return inst
}

func invoke(inst driver.Instance, req *driver.Request) (*driver.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if req.Method == "" {
		req.Method = http.MethodGet
	}
	if req.Path == "" {
		req.Path = "/"
	}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Host == "" {
		req.Host = "localhost:8080"
	}
	if req.RemoteAddr == "" {
		req.RemoteAddr = "127.0.0.1:40000"
	}
	return inst.Invoke(ctx, req)
}

func mustInvoke(t *testing.T, inst driver.Instance, req *driver.Request) *driver.Response {
	t.Helper()
	resp, err := invoke(inst, req)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	return resp
}

func (s *suite) testHello(t *testing.T) {
	inst := s.start(t, s.spec(t, Hello, nil))
	for range 3 {
		resp := mustInvoke(t, inst, &driver.Request{ID: "hello-1"})
		if resp.Status != http.StatusOK {
			t.Errorf("status = %d, want 200", resp.Status)
		}
		if got := string(resp.Body); got != "hello" {
			t.Errorf("body = %q, want %q", got, "hello")
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type = %q, want text/plain", ct)
		}
	}
}

func (s *suite) testEcho(t *testing.T, size int) {
	inst := s.start(t, s.spec(t, Echo, nil))
	body := make([]byte, size)
	rand.Read(body)
	resp := mustInvoke(t, inst, &driver.Request{Method: http.MethodPost, Path: "/upload", Body: body,
		Header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if resp.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.Status)
	}
	if !bytes.Equal(resp.Body, body) {
		t.Fatalf("echoed %d bytes, sent %d: bodies differ", len(resp.Body), len(body))
	}
}

func (s *suite) testPropagation(t *testing.T) {
	inst := s.start(t, s.spec(t, Echo, nil))
	for _, c := range []struct{ method, path, query string }{
		{http.MethodGet, "/", ""},
		{http.MethodPut, "/some/deep/path", "a=1&b=two"},
		{http.MethodDelete, "/items/42", "force=true"},
		{http.MethodPatch, "/x", "q=%20space"},
	} {
		resp := mustInvoke(t, inst, &driver.Request{Method: c.method, Path: c.path, RawQuery: c.query,
			Header: http.Header{"X-Test": {"propagated"}}, Body: []byte("payload")})
		for h, want := range map[string]string{"X-Echo-Method": c.method, "X-Echo-Path": c.path, "X-Echo-Query": c.query, "X-Echo-Test": "propagated"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s %s?%s: %s = %q, want %q", c.method, c.path, c.query, h, got, want)
			}
		}
		if string(resp.Body) != "payload" {
			t.Errorf("%s %s: body = %q, want %q", c.method, c.path, resp.Body, "payload")
		}
	}
}

func (s *suite) testEnv(t *testing.T) {
	const greeting = "hi from the conformance suite"
	inst := s.start(t, s.spec(t, Env, func(sp *driver.Spec) { sp.Env["GREETING"] = greeting }))
	resp := mustInvoke(t, inst, &driver.Request{})
	if got := string(resp.Body); got != greeting {
		t.Errorf("body = %q, want %q", got, greeting)
	}
}

func (s *suite) testStderr(t *testing.T) {
	inst := s.start(t, s.spec(t, Stderr, nil))
	var stderr lockedBuffer
	resp := mustInvoke(t, inst, &driver.Request{Stderr: &stderr})
	if string(resp.Body) != "ok" {
		t.Errorf("body = %q, want %q", resp.Body, "ok")
	}
	if !strings.Contains(stderr.String(), "a line for the logs") {
		t.Errorf("Request.Stderr got %q, want the guest's line", stderr.String())
	}
}

func (s *suite) testTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	inst := s.start(t, s.spec(t, Loop, func(sp *driver.Spec) { sp.Timeout = timeout }))
	for attempt := range 2 { // the second proves the instance survived the kill
		start := time.Now()
		_, err := invoke(inst, &driver.Request{})
		elapsed := time.Since(start)
		if !errors.Is(err, driver.ErrTimeout) {
			t.Fatalf("attempt %d: err = %v, want ErrTimeout", attempt, err)
		}
		if limit := timeout + time.Second + s.h.Slack; elapsed > limit {
			t.Errorf("attempt %d: timed out after %v, want within %v", attempt, elapsed, limit)
		}
	}
	hello := s.start(t, s.spec(t, Hello, func(sp *driver.Spec) { sp.Timeout = timeout }))
	if resp := mustInvoke(t, hello, &driver.Request{}); string(resp.Body) != "hello" {
		t.Errorf("after a timeout, hello answered %q", resp.Body)
	}
}

func (s *suite) testMemoryLimit(t *testing.T) {
	inst := s.start(t, s.spec(t, OOM, func(sp *driver.Spec) { sp.MemoryBytes = 32 << 20 }))
	_, err := invoke(inst, &driver.Request{})
	if !errors.Is(err, driver.ErrMemoryLimit) {
		t.Fatalf("err = %v, want ErrMemoryLimit", err)
	}
	if !strings.Contains(err.Error(), "memory") {
		t.Errorf("error %q does not say that memory ran out", err)
	}
}

func (s *suite) testCrash(t *testing.T) {
	inst := s.start(t, s.spec(t, Crash, nil))
	var stderr lockedBuffer
	_, err := invoke(inst, &driver.Request{Stderr: &stderr})
	if !errors.Is(err, driver.ErrCrashed) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	if !strings.Contains(err.Error(), "boom") && !strings.Contains(stderr.String(), "boom") {
		t.Errorf("neither the error (%q) nor stderr (%q) mentions boom", err, stderr.String())
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	const concurrency, goroutines, calls = 4, 50, 4
	inst := s.start(t, s.spec(t, Echo, func(sp *driver.Spec) { sp.Concurrency = concurrency }))
	sem := make(chan struct{}, concurrency) // the scheduler's job; the suite honours the contract
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*calls)
	for g := range goroutines {
		wg.Go(func() {
			for c := range calls {
				body := fmt.Appendf(nil, "goroutine %d call %d", g, c)
				sem <- struct{}{}
				resp, err := invoke(inst, &driver.Request{Method: http.MethodPost, Path: fmt.Sprintf("/g/%d", g), Body: body})
				<-sem
				switch {
				case err != nil:
					errs <- err
				case !bytes.Equal(resp.Body, body):
					errs <- fmt.Errorf("got %q, want %q", resp.Body, body)
				case resp.Header.Get("X-Echo-Path") != fmt.Sprintf("/g/%d", g):
					errs <- fmt.Errorf("X-Echo-Path = %q for goroutine %d", resp.Header.Get("X-Echo-Path"), g)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d invocations failed", n, goroutines*calls)
	}
}

func (s *suite) testStopDuringInvocation(t *testing.T) {
	inst := s.start(t, s.spec(t, Loop, func(sp *driver.Spec) { sp.Timeout = time.Minute }))
	errc := make(chan error, 1)
	go func() {
		_, err := invoke(inst, &driver.Request{})
		errc <- err
	}()
	// Give the invocation a chance to enter the guest; whether it has or not,
	// it must end with ErrStopped.
	waitFor(t, 2*time.Second, func() error {
		if inst.Usage().MemoryBytes == 0 {
			return errors.New("instance not running yet")
		}
		return nil
	}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+s.h.Slack)
	defer cancel()
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, driver.ErrStopped) {
			t.Errorf("in-flight invocation: err = %v, want ErrStopped", err)
		}
	case <-time.After(10*time.Second + s.h.Slack):
		t.Fatal("in-flight invocation still running 10s after Stop")
	}
}

func (s *suite) testStopReleases(t *testing.T) {
	spec := s.spec(t, Hello, nil)
	ctx := context.Background()
	// Warm up, so that lazily started driver goroutines are in the baseline.
	warm, err := s.h.Driver.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := invoke(warm, &driver.Request{}); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if err := warm.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	baseline := runtime.NumGoroutine()

	inst, err := s.h.Driver.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	for range 5 {
		if _, err := invoke(inst, &driver.Request{}); err != nil {
			t.Fatalf("Invoke: %v", err)
		}
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := invoke(inst, &driver.Request{}); !errors.Is(err, driver.ErrStopped) {
		t.Errorf("Invoke after Stop: err = %v, want ErrStopped", err)
	}
	if err := inst.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if u := inst.Usage(); u.MemoryBytes != 0 {
		t.Errorf("Usage after Stop: %d bytes of memory, want 0", u.MemoryBytes)
	}
	waitFor(t, 5*time.Second+s.h.Slack, func() error {
		if n := runtime.NumGoroutine(); n > baseline {
			return fmt.Errorf("%d goroutines, baseline %d", n, baseline)
		}
		return nil
	}, false)
	if s.h.Leaks != nil {
		waitFor(t, 5*time.Second+s.h.Slack, s.h.Leaks, false)
	}
}

// waitFor polls cond until it returns nil or the timeout passes; then it
// fails the test, or only logs when soft is set.
func waitFor(t *testing.T, timeout time.Duration, cond func() error, soft bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if soft {
				t.Logf("gave up waiting: %v", err)
			} else {
				t.Fatalf("after %v: %v", timeout, err)
			}
			return
		}
		<-tick.C
	}
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes a driver may
// make to Request.Stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
