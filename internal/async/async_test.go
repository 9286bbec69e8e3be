package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/store"
)

// fakeFuncs is the function side: behaviours by function name, and a log
// of every execution.
type fakeFuncs struct {
	mu       sync.Mutex
	behave   map[string]func(n int, req *driver.Request) (*driver.Response, error) // n: executions of this id so far, 1-based
	runs     map[string][]time.Time                                                // by invocation id
	bodies   map[string][]byte                                                     // last body by id
	policies map[string]policy
}

type policy struct {
	retry manifest.Retry
	dests manifest.Destinations
}

func newFakeFuncs() *fakeFuncs {
	return &fakeFuncs{
		behave:   map[string]func(int, *driver.Request) (*driver.Response, error){},
		runs:     map[string][]time.Time{},
		bodies:   map[string][]byte{},
		policies: map[string]policy{},
	}
}

func (f *fakeFuncs) add(name string, p policy, fn func(n int, req *driver.Request) (*driver.Response, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.behave[name], f.policies[name] = fn, p
}

func (f *fakeFuncs) invoke(ctx context.Context, name string, req *driver.Request) (*driver.Response, error) {
	f.mu.Lock()
	fn := f.behave[name]
	f.runs[req.ID] = append(f.runs[req.ID], time.Now())
	f.bodies[req.ID] = req.Body
	n := len(f.runs[req.ID])
	f.mu.Unlock()
	if fn == nil {
		return nil, fmt.Errorf("function %q not found", name)
	}
	return fn(n, req)
}

func (f *fakeFuncs) policy(name string) (manifest.Retry, manifest.Destinations, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.policies[name]
	return p.retry, p.dests, ok
}

func (f *fakeFuncs) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.runs[id])
}

func (f *fakeFuncs) times(id string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.runs[id]...)
}

func ok200(body string) (*driver.Response, error) {
	return &driver.Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte(body)}, nil
}

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newQueue(t testing.TB, cfg Config) (*Queue, *fakeFuncs) {
	t.Helper()
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	f := newFakeFuncs()
	cfg.JS = st.JetStream()
	if cfg.Invoke == nil {
		cfg.Invoke = f.invoke
	}
	if cfg.Policy == nil {
		cfg.Policy = f.policy
	}
	q, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return q, f
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitStatus(t testing.TB, q *Queue, id, want string, d time.Duration) api.InvocationStatus {
	t.Helper()
	var st api.InvocationStatus
	waitFor(t, d, id+" to be "+want, func() bool {
		var err error
		st, err = q.Status(context.Background(), id)
		return err == nil && st.Status == want
	})
	return st
}

func enqueue(t testing.TB, q *Queue, r Request) string {
	t.Helper()
	if r.Method == "" {
		r.Method = http.MethodPost
	}
	a, err := q.Enqueue(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func TestRunsAndStoresResponse(t *testing.T) {
	q, f := newQueue(t, Config{Workers: 4})
	f.add("echo", policy{}, func(n int, req *driver.Request) (*driver.Response, error) {
		if req.Header.Get("Authorization") != "" {
			return nil, errors.New("the API key reached the function")
		}
		return ok200(fmt.Sprintf("%s %s?%s attempt=%s %s", req.Method, req.Path, req.RawQuery, req.Header.Get("X-Hearth-Attempt"), req.Body))
	})
	id := enqueue(t, q, Request{Function: "echo", Path: "/a/b", RawQuery: "x=1", Body: []byte("hi"),
		Header: http.Header{"Authorization": {"Bearer secret"}, "X-Custom": {"v"}}})

	st, err := q.Status(context.Background(), id)
	if err != nil || st.Status != api.StatusQueued || st.Function != "echo" {
		t.Fatalf("before Start: %+v, %v", st, err)
	}
	q.Start()
	st = waitStatus(t, q, id, api.StatusSucceeded, 10*time.Second)
	if st.Attempts != 1 || st.Response == nil || st.Response.Status != 200 || string(st.Response.Body) != "POST /a/b?x=1 attempt=1 hi" {
		t.Errorf("status %+v, response %+v", st, st.Response)
	}
	if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) || st.EnqueuedAt.After(st.StartedAt) {
		t.Errorf("times: %+v", st)
	}
	if _, err := q.Status(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := q.Status(context.Background(), "a.b*"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bad id: %v", err)
	}
}

func TestRetriesPerPolicy(t *testing.T) {
	q, f := newQueue(t, Config{Workers: 2})
	q.Start()
	backoff := 100 * time.Millisecond
	f.add("flaky", policy{retry: manifest.Retry{Attempts: 3, Backoff: manifest.Duration(backoff)}},
		func(n int, req *driver.Request) (*driver.Response, error) {
			switch n {
			case 1:
				return nil, fmt.Errorf("%w: boom", driver.ErrCrashed)
			case 2:
				return &driver.Response{Status: 503, Body: []byte("later")}, nil
			}
			return ok200("fine")
		})
	id := enqueue(t, q, Request{Function: "flaky"})
	st := waitStatus(t, q, id, api.StatusSucceeded, 10*time.Second)
	if st.Attempts != 3 || string(st.Response.Body) != "fine" || st.Error != "" {
		t.Errorf("status %+v", st)
	}
	runs := f.times(id)
	if len(runs) != 3 {
		t.Fatalf("ran %d times, want 3", len(runs))
	}
	// Backoff × 2^(n-1): 100ms then 200ms.
	if d := runs[1].Sub(runs[0]); d < backoff {
		t.Errorf("second attempt %s after the first, want ≥ %s", d, backoff)
	}
	if d := runs[2].Sub(runs[1]); d < 2*backoff {
		t.Errorf("third attempt %s after the second, want ≥ %s", d, 2*backoff)
	}
	// A 4xx is the function's answer, not a failure.
	f.add("teapot", policy{}, func(int, *driver.Request) (*driver.Response, error) {
		return &driver.Response{Status: 418}, nil
	})
	id = enqueue(t, q, Request{Function: "teapot"})
	if st := waitStatus(t, q, id, api.StatusSucceeded, 10*time.Second); st.Attempts != 1 || st.Response.Status != 418 {
		t.Errorf("teapot: %+v", st)
	}
}

func TestDeadLetterAndReplay(t *testing.T) {
	hook := make(chan api.DestinationEvent, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev api.DestinationEvent
		json.NewDecoder(r.Body).Decode(&ev)
		if r.Header.Get(HeaderInvocationID) != ev.ID {
			t.Errorf("callback header id %q, body id %q", r.Header.Get(HeaderInvocationID), ev.ID)
		}
		hook <- ev
	}))
	defer srv.Close()

	q, f := newQueue(t, Config{Workers: 2})
	q.Start()
	var mu sync.Mutex
	healthy := false
	f.add("broken", policy{
		retry: manifest.Retry{Attempts: 3, Backoff: manifest.Duration(100 * time.Millisecond)},
		dests: manifest.Destinations{OnFailure: srv.URL + "/failed", OnSuccess: "sink"},
	}, func(n int, req *driver.Request) (*driver.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		if healthy {
			return ok200("finally")
		}
		return nil, fmt.Errorf("%w: always", driver.ErrCrashed)
	})
	sunk := make(chan *driver.Request, 10)
	f.add("sink", policy{}, func(n int, req *driver.Request) (*driver.Response, error) {
		sunk <- req
		return ok200("")
	})
	f.add("other", policy{retry: manifest.Retry{Attempts: 1}}, func(int, *driver.Request) (*driver.Response, error) {
		return &driver.Response{Status: 500}, nil
	})

	id := enqueue(t, q, Request{Function: "broken", Body: []byte("payload")})
	other := enqueue(t, q, Request{Function: "other"})
	st := waitStatus(t, q, id, api.StatusFailed, 10*time.Second)
	if st.Attempts != 3 || st.Error == "" {
		t.Errorf("failed status %+v", st)
	}
	if n := f.count(id); n != 3 {
		t.Errorf("ran %d times, want 3", n)
	}
	waitStatus(t, q, other, api.StatusFailed, 10*time.Second)

	select {
	case ev := <-hook:
		if ev.ID != id || ev.Status != api.StatusFailed || ev.Attempts != 3 {
			t.Errorf("failure callback %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure callback")
	}

	ctx := context.Background()
	all, err := q.DeadLetters(ctx, "", 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("DeadLetters = %+v, %v", all, err)
	}
	dls, err := q.DeadLetters(ctx, "broken", 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters(broken) = %+v, %v", dls, err)
	}
	dl := dls[0]
	if dl.ID != id || dl.Attempts != 3 || dl.Reason != api.ReasonExhausted || dl.BodySize != 7 || dl.Error == "" {
		t.Errorf("dead letter %+v", dl)
	}
	if _, err := q.Replay(ctx, "0000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("replay of unknown id: %v", err)
	}

	mu.Lock()
	healthy = true
	mu.Unlock()
	rst, err := q.Replay(ctx, id)
	if err != nil || rst.Status != api.StatusQueued || rst.Replays != 1 {
		t.Fatalf("Replay = %+v, %v", rst, err)
	}
	st = waitStatus(t, q, id, api.StatusSucceeded, 10*time.Second)
	if st.Attempts != 1 || st.Replays != 1 || string(st.Response.Body) != "finally" {
		t.Errorf("after replay: %+v", st)
	}
	if n := f.count(id); n != 4 {
		t.Errorf("ran %d times in all, want 4", n)
	}
	f.mu.Lock()
	body := string(f.bodies[id])
	f.mu.Unlock()
	if body != "payload" {
		t.Errorf("replayed body %q", body)
	}
	if dls, _ := q.DeadLetters(ctx, "broken", 0); len(dls) != 0 {
		t.Errorf("dead letter still listed after replay: %+v", dls)
	}
	if _, err := q.Replay(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second replay: %v", err)
	}

	// on_success: the function destination receives the result.
	select {
	case req := <-sunk:
		var ev api.DestinationEvent
		if err := json.Unmarshal(req.Body, &ev); err != nil || ev.ID != id || ev.Status != api.StatusSucceeded || string(ev.Response.Body) != "finally" {
			t.Errorf("destination event %s: %v", req.Body, err)
		}
		if req.Header.Get(HeaderSourceID) != id {
			t.Errorf("destination headers %v", req.Header)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("on_success destination not invoked")
	}
}

func TestMaxAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	q, f := newQueue(t, Config{Workers: 1, Now: clock})
	f.add("slow", policy{retry: manifest.Retry{MaxAge: manifest.Duration(time.Minute)}}, func(int, *driver.Request) (*driver.Response, error) {
		return ok200("")
	})
	id := enqueue(t, q, Request{Function: "slow"})
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	q.Start()
	st := waitStatus(t, q, id, api.StatusFailed, 10*time.Second)
	if st.Attempts != 0 || f.count(id) != 0 {
		t.Errorf("expired invocation ran: %+v", st)
	}
	dls, err := q.DeadLetters(context.Background(), "slow", 0)
	if err != nil || len(dls) != 1 || dls[0].Reason != api.ReasonExpired {
		t.Errorf("dead letters %+v, %v", dls, err)
	}

	// A function that is gone goes to the dead-letter queue at once.
	id = enqueue(t, q, Request{Function: "gone"})
	st = waitStatus(t, q, id, api.StatusFailed, 10*time.Second)
	if dls, _ := q.DeadLetters(context.Background(), "gone", 0); len(dls) != 1 || dls[0].Reason != api.ReasonNoFunc {
		t.Errorf("gone: %+v %+v", st, dls)
	}
}

func TestIdempotencyKey(t *testing.T) {
	q, f := newQueue(t, Config{Workers: 2})
	f.add("pay", policy{}, func(int, *driver.Request) (*driver.Response, error) { return ok200("paid") })
	ctx := context.Background()
	a1, err := q.Enqueue(ctx, Request{Function: "pay", Method: "POST", IdempotencyKey: "order-17"})
	if err != nil || a1.Duplicate {
		t.Fatal(a1, err)
	}
	a2, err := q.Enqueue(ctx, Request{Function: "pay", Method: "POST", IdempotencyKey: "order-17"})
	if err != nil || !a2.Duplicate || a2.ID != a1.ID {
		t.Fatalf("second enqueue %+v, %v; first %+v", a2, err, a1)
	}
	// Same key, other function: another invocation.
	a3, err := q.Enqueue(ctx, Request{Function: "pay2", Method: "POST", IdempotencyKey: "order-17"})
	if err != nil || a3.ID == a1.ID {
		t.Fatalf("other function: %+v, %v", a3, err)
	}
	q.Start()
	waitStatus(t, q, a1.ID, api.StatusSucceeded, 10*time.Second)
	a4, err := q.Enqueue(ctx, Request{Function: "pay", Method: "POST", IdempotencyKey: "order-17"})
	if err != nil || a4.ID != a1.ID {
		t.Fatalf("after success: %+v, %v", a4, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := f.count(a1.ID); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
	for _, bad := range []string{"\x01", "é", string(make([]byte, MaxKeyLen+1))} {
		if _, err := q.Enqueue(ctx, Request{Function: "pay", IdempotencyKey: bad}); !errors.Is(err, ErrBadKey) {
			t.Errorf("key %q: %v", bad, err)
		}
	}
}

// A job longer than the ack-wait runs once: the worker keeps it in progress.
func TestLongJobRunsOnce(t *testing.T) {
	q, f := newQueue(t, Config{Workers: 4, AckWait: time.Second})
	q.Start()
	f.add("long", policy{}, func(int, *driver.Request) (*driver.Response, error) {
		time.Sleep(3500 * time.Millisecond)
		return ok200("done")
	})
	id := enqueue(t, q, Request{Function: "long"})
	st := waitStatus(t, q, id, api.StatusSucceeded, 20*time.Second)
	time.Sleep(2500 * time.Millisecond) // longer than the ack-wait again
	if n := f.count(id); n != 1 || st.Attempts != 1 {
		t.Errorf("ran %d times (attempts %d), want 1", n, st.Attempts)
	}
}

func TestCloseWaitsForRunningAttempts(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	f := newFakeFuncs()
	started := make(chan struct{})
	f.add("job", policy{}, func(int, *driver.Request) (*driver.Response, error) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return ok200("")
	})
	q, err := New(context.Background(), Config{JS: st.JetStream(), Invoke: f.invoke, Policy: f.policy, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	q.Start()
	id := enqueue(t, q, Request{Function: "job"})
	<-started
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, err := q.Status(context.Background(), id); err != nil || s.Status != api.StatusSucceeded {
		t.Errorf("after Close: %+v, %v", s, err)
	}
	if _, err := q.Enqueue(context.Background(), Request{Function: "job"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	q, _ := newQueue(t, Config{})
	_, err := q.Enqueue(context.Background(), Request{Function: "x", Body: make([]byte, q.MaxBody()+1)})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v", err)
	}
	if _, err := q.Enqueue(context.Background(), Request{Function: "x", Body: make([]byte, q.MaxBody())}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}

// policyAll is a Policy under which every function exists with the defaults.
func (f *fakeFuncs) policyAll(string) (manifest.Retry, manifest.Destinations, bool) {
	return manifest.Retry{}, manifest.Destinations{}, true
}

func TestCachedPolicy(t *testing.T) {
	errGone := errors.New("gone")
	errFlaky := errors.New("flaky")
	calls := 0
	var next error
	get := func(ctx context.Context, name string) (api.Function, error) {
		calls++
		if next != nil {
			return api.Function{}, next
		}
		return api.Function{Name: name, Latest: 2, Versions: []api.Version{
			{Number: 1},
			{Number: 2, Manifest: manifest.Manifest{Retry: manifest.Retry{Attempts: 7}, Destinations: manifest.Destinations{OnFailure: "x"}}},
		}}, nil
	}
	p := CachedPolicy(get, func(err error) bool { return errors.Is(err, errGone) }, time.Hour)
	r, d, ok := p("f")
	if !ok || r.Attempts != 7 || d.OnFailure != "x" {
		t.Errorf("got %+v %+v %v", r, d, ok)
	}
	p("f")
	if calls != 1 {
		t.Errorf("%d lookups, want 1 (cached)", calls)
	}
	next = errFlaky
	if _, _, ok := p("new"); !ok {
		t.Error("a failing lookup made the function count as gone")
	}
	next = errGone
	if _, _, ok := p("gone"); ok {
		t.Error("a missing function counts as deployed")
	}
	next = nil
	if _, _, ok := p("gone"); !ok {
		t.Error("a function deployed after a miss is not seen")
	}
}

// TestStatusOfFirstAttempt: a first attempt's running record lives in
// memory; Status shows it while the function runs, and the stored final
// record as soon as it is written, before the worker lets go of the id.
func TestStatusOfFirstAttempt(t *testing.T) {
	var q *Queue
	var id string
	var atFinish api.InvocationStatus
	cfg := Config{Workers: 2, testHookFinished: func(fid string) {
		atFinish, _ = q.Status(context.Background(), fid)
	}}
	q, f := newQueue(t, cfg)
	running := make(chan api.InvocationStatus, 1)
	f.add("slow", policy{}, func(n int, req *driver.Request) (*driver.Response, error) {
		st, err := q.Status(context.Background(), req.ID)
		if err != nil {
			return nil, err
		}
		running <- st
		return ok200("done")
	})
	id = enqueue(t, q, Request{Function: "slow"})
	q.Start()
	select {
	case st := <-running:
		if st.Status != api.StatusRunning || st.Attempts != 1 || st.StartedAt.IsZero() {
			t.Errorf("while running: %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the function did not run")
	}
	waitStatus(t, q, id, api.StatusSucceeded, 10*time.Second)
	time.Sleep(50 * time.Millisecond) // the hook runs before the ack returns
	if atFinish.Status != api.StatusSucceeded {
		t.Errorf("Status once the final record was stored: %+v", atFinish)
	}
}
