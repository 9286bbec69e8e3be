package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/trigger"
)

const asyncTestKey = "test-key"

// asyncFunctions is a registry with fixed functions.
type asyncFunctions map[string]*scheduler.Function

func (f asyncFunctions) Lookup(name string) (*scheduler.Function, bool) {
	fn, ok := f[name]
	return fn, ok
}
func (asyncFunctions) Deploy(context.Context, string, []byte) (api.Version, error) {
	return api.Version{}, nil
}
func (asyncFunctions) Get(context.Context, string) (api.Function, error) { return api.Function{}, nil }
func (asyncFunctions) List(context.Context) ([]api.Function, error)      { return nil, nil }
func (asyncFunctions) Delete(context.Context, string) (api.Deleted, error) {
	return api.Deleted{}, nil
}

// asyncInvoker answers "ok" with the request echoed, "fail" with HTTP 500.
type asyncInvoker struct{}

func (asyncInvoker) Invoke(ctx context.Context, fn *scheduler.Function, req *driver.Request) (*driver.Response, scheduler.Outcome, error) {
	if fn.Spec.Function == "fail" {
		return &driver.Response{Status: 500, Body: []byte("nope")}, scheduler.Outcome{}, nil
	}
	body := req.Method + " " + req.Path + "?" + req.RawQuery + " " + string(req.Body)
	seen := req.Header.Get(trigger.HeaderTrigger) + req.Header.Get(trigger.HeaderTriggerType) + req.Header.Get(trigger.HeaderEventHops)
	return &driver.Response{Status: 200, Header: http.Header{"X-Out": {"1"}, "X-Seen": {seen}}, Body: []byte(body)}, scheduler.Outcome{}, nil
}
func (asyncInvoker) Status(string) api.FunctionStatus { return api.FunctionStatus{} }

type asyncRecords struct {
	mu   sync.Mutex
	invs []api.Invocation
}

func (r *asyncRecords) AppendLog(api.LogEntry) {}
func (r *asyncRecords) RecordInvocation(i api.Invocation) {
	r.mu.Lock()
	r.invs = append(r.invs, i)
	r.mu.Unlock()
}
func (r *asyncRecords) Logs(context.Context, LogQuery, func(api.LogEntry) error) error { return nil }
func (r *asyncRecords) Usage(context.Context, time.Time, time.Time) ([]api.FunctionUsage, error) {
	return nil, nil
}

func asyncGateway(t *testing.T, withQueue bool) (*Gateway, *async.Queue, *asyncRecords) {
	t.Helper()
	fns := asyncFunctions{}
	for _, n := range []string{"ok", "fail"} {
		fns[n] = &scheduler.Function{Spec: driver.Spec{Function: n, Version: 1, Timeout: 5 * time.Second, MemoryBytes: 64 << 20}}
	}
	recs := &asyncRecords{}
	cfg := Config{Key: asyncTestKey, Functions: fns, Invoker: asyncInvoker{}, Records: recs, MaxBody: 1 << 10}
	if !withQueue {
		return New(cfg), nil, recs
	}
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var gw *Gateway
	q, err := async.New(context.Background(), async.Config{
		JS: st.JetStream(),
		Invoke: func(ctx context.Context, fn string, req *driver.Request) (*driver.Response, error) {
			return gw.RunAsync(ctx, fn, req)
		},
		Policy: func(name string) (manifest.Retry, manifest.Destinations, bool) {
			_, ok := fns[name]
			return manifest.Retry{Attempts: 1}, manifest.Destinations{}, ok
		},
		Workers: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	cfg.Async = q
	gw = New(cfg)
	return gw, q, recs
}

func do(t *testing.T, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+asyncTestKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func errCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var eb api.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	return eb.Error.Code
}

func TestAsyncNotConfigured(t *testing.T) {
	gw, _, _ := asyncGateway(t, false)
	for _, p := range []string{"/async/fn/ok", "/v1/invocations/x", "/v1/dlq"} {
		if w := do(t, gw, "POST", p, ""); w.Code != http.StatusNotImplemented {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
}

func TestAsyncRoutes(t *testing.T) {
	gw, q, recs := asyncGateway(t, true)

	req := httptest.NewRequest("POST", "/async/fn/ok", nil)
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("without key: %d", w.Code)
	}
	if w := do(t, gw, "POST", "/async/fn/missing", "x"); w.Code != http.StatusNotFound || errCode(t, w) != api.CodeNotFound {
		t.Errorf("unknown function: %d %s", w.Code, w.Body)
	}
	if w := do(t, gw, "POST", "/async/fn/ok", strings.Repeat("x", 1025)); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d %s", w.Code, w.Body)
	}
	if w := do(t, gw, "POST", "/async/fn/ok", "x", "Idempotency-Key", "bad\x7f"); w.Code != http.StatusBadRequest || errCode(t, w) != api.CodeBadIdempotencyKey {
		t.Errorf("bad key: %d %s", w.Code, w.Body)
	}

	w = do(t, gw, "POST", "/async/fn/ok/a/b?c=d", "hello", "Content-Type", "text/plain")
	if w.Code != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", w.Code, w.Body)
	}
	var acc api.AsyncAccepted
	if err := json.Unmarshal(w.Body.Bytes(), &acc); err != nil || acc.ID == "" || w.Header().Get("X-Hearth-Invocation-Id") != acc.ID || w.Header().Get("Location") != "/v1/invocations/"+acc.ID {
		t.Fatalf("202 body %q headers %v: %v", w.Body, w.Header(), err)
	}
	okID := acc.ID
	w = do(t, gw, "GET", "/v1/invocations/"+okID, "")
	var st api.InvocationStatus
	if json.Unmarshal(w.Body.Bytes(), &st); w.Code != 200 || st.Status != api.StatusQueued || st.Function != "ok" {
		t.Errorf("queued status: %d %s", w.Code, w.Body)
	}

	// Idempotency: the same key answers the same id.
	w1 := do(t, gw, "POST", "/async/fn/ok", "1", "Idempotency-Key", "k1")
	w2 := do(t, gw, "POST", "/async/fn/ok", "1", "Idempotency-Key", "k1")
	if w1.Code != 202 || w2.Code != 202 || w1.Body.String() != w2.Body.String() || w2.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("idempotent enqueue: %s %s / %v", w1.Body, w2.Body, w2.Header())
	}

	w = do(t, gw, "POST", "/async/fn/fail", "")
	json.Unmarshal(w.Body.Bytes(), &acc)
	failID := acc.ID

	q.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w = do(t, gw, "GET", "/v1/invocations/"+okID, "")
		st = api.InvocationStatus{}
		json.Unmarshal(w.Body.Bytes(), &st)
		if st.Status == api.StatusSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not succeeded: %s", w.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Attempts != 1 || st.Response == nil || string(st.Response.Body) != "POST /a/b?c=d hello" || st.Response.Header.Get("X-Out") != "1" {
		t.Errorf("final status %s", w.Body)
	}
	recs.mu.Lock()
	recorded := len(recs.invs) > 0
	recs.mu.Unlock()
	if !recorded {
		t.Error("RunAsync recorded no invocation for usage")
	}

	if w := do(t, gw, "GET", "/v1/invocations/ffffffffffffffffffffffff", ""); w.Code != http.StatusNotFound {
		t.Errorf("unknown invocation: %d %s", w.Code, w.Body)
	}

	// Dead letters.
	var list api.DeadLetterList
	deadline = time.Now().Add(10 * time.Second)
	for len(list.DeadLetters) == 0 {
		w = do(t, gw, "GET", "/v1/dlq?function=fail", "")
		if w.Code != 200 {
			t.Fatalf("dlq: %d %s", w.Code, w.Body)
		}
		json.Unmarshal(w.Body.Bytes(), &list)
		if time.Now().After(deadline) {
			t.Fatal("nothing in the dead-letter queue")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dl := list.DeadLetters[0]; dl.ID != failID || dl.Attempts != 1 || dl.Error != "function answered HTTP 500" {
		t.Errorf("dead letter %+v", dl)
	}
	if w := do(t, gw, "GET", "/v1/dlq?function=ok", ""); !strings.Contains(w.Body.String(), `"dead_letters": []`) {
		t.Errorf("empty list: %s", w.Body)
	}
	if w := do(t, gw, "GET", "/v1/dlq?limit=0", ""); w.Code != http.StatusBadRequest {
		t.Errorf("limit=0: %d", w.Code)
	}
	if w := do(t, gw, "POST", "/v1/dlq/"+failID+"/replay", ""); w.Code != http.StatusAccepted || !strings.Contains(w.Body.String(), `"replays": 1`) {
		t.Errorf("replay: %d %s", w.Code, w.Body)
	}
	if w := do(t, gw, "POST", "/v1/dlq/nope/replay", ""); w.Code != http.StatusNotFound {
		t.Errorf("replay unknown: %d %s", w.Code, w.Body)
	}
}

// TestCallersCannotForgeTriggerHeaders: the headers Hearth sets on the
// requests of triggers and emitted events are dropped from callers' own.
func TestCallersCannotForgeTriggerHeaders(t *testing.T) {
	gw, _, _ := asyncGateway(t, false)
	w := do(t, gw, "POST", "/fn/ok/x", "b", trigger.HeaderTrigger, "h", trigger.HeaderTriggerType, "http", trigger.HeaderEventHops, "0")
	if w.Code != 200 || w.Header().Get("X-Seen") != "" {
		t.Errorf("the function saw %q (status %d)", w.Header().Get("X-Seen"), w.Code)
	}
}
