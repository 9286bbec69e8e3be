package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/funclog"
)

// AsyncQueue is the asynchronous invocation queue as the gateway uses it.
type AsyncQueue interface {
	Enqueue(ctx context.Context, r async.Request) (async.Accepted, error)
	Status(ctx context.Context, id string) (api.InvocationStatus, error)
	DeadLetters(ctx context.Context, function string, limit int) ([]api.DeadLetter, error)
	Replay(ctx context.Context, id string) (api.InvocationStatus, error)
	// MaxBody is the largest request body the queue takes.
	MaxBody() int64
}

var _ AsyncQueue = (*async.Queue)(nil)

// HeaderIdempotencyKey makes POST /async/fn/{name} idempotent: the same key
// for the same function answers the same invocation id and runs it once.
const HeaderIdempotencyKey = "Idempotency-Key"

// mountAsync adds the asynchronous invocation routes; without a queue they
// answer 501.
func (g *Gateway) mountAsync() {
	if g.cfg.Async == nil {
		g.mountUnavailable("asynchronous invocation is not available on this server; invoke synchronously on /fn/{name}",
			"/async/fn/{name}", "/async/fn/{name}/{path...}", "/v1/invocations/{id}", "/v1/dlq", "/v1/dlq/{id}/replay")
		return
	}
	g.mux.HandleFunc("/async/fn/{name}", g.auth(g.enqueue))
	g.mux.HandleFunc("/async/fn/{name}/{path...}", g.auth(g.enqueue))
	g.mux.HandleFunc("GET /v1/invocations/{id}", g.auth(g.invocation))
	g.mux.HandleFunc("GET /v1/dlq", g.auth(g.deadLetters))
	g.mux.HandleFunc("POST /v1/dlq/{id}/replay", g.auth(g.replay))
}

// enqueue serves /async/fn/{name}/{path...}: 202 {"id": ...} once the
// invocation is stored.
func (g *Gateway) enqueue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := g.cfg.Functions.Lookup(name); !ok {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("function %q not found", name))
		return
	}
	key := r.Header.Get(HeaderIdempotencyKey)
	if key != "" && !async.ValidKey(key) {
		writeError(w, http.StatusBadRequest, api.CodeBadIdempotencyKey,
			fmt.Sprintf("the %s header must be 1 to %d printable ASCII characters", HeaderIdempotencyKey, async.MaxKeyLen))
		return
	}
	dropInternalHeaders(r.Header)
	r.Header.Del("Authorization") // the key is not stored with the request
	limit := min(g.cfg.MaxBody, g.cfg.Async.MaxBody())
	body, err := readBody(w, r, limit)
	if err != nil {
		writeBodyError(w, err, limit)
		return
	}
	acc, err := g.cfg.Async.Enqueue(r.Context(), async.Request{
		Function: name, Method: r.Method, Path: "/" + r.PathValue("path"), RawQuery: r.URL.RawQuery,
		Header: r.Header, Body: body, IdempotencyKey: key,
	})
	if err != nil {
		g.asyncError(w, err, limit)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Hearth-Invocation-Id", acc.ID)
	h.Set("Location", "/v1/invocations/"+acc.ID)
	if acc.Duplicate {
		h.Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"id":"` + acc.ID + `"}` + "\n")) // ids are [A-Za-z0-9_-]
}

// invocation serves GET /v1/invocations/{id}.
func (g *Gateway) invocation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, err := g.cfg.Async.Status(r.Context(), id)
	if err != nil {
		if errors.Is(err, async.ErrNotFound) {
			writeError(w, http.StatusNotFound, api.CodeNotFound,
				fmt.Sprintf("no asynchronous invocation %q (statuses are kept for %s)", id, async.DefaultStatusTTL))
			return
		}
		g.asyncError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// deadLetters serves GET /v1/dlq[?function=F&limit=N].
func (g *Gateway) deadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > async.MaxListLimit {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("limit %q: want 1 to %d", s, async.MaxListLimit))
			return
		}
		limit = n
	}
	dls, err := g.cfg.Async.DeadLetters(r.Context(), q.Get("function"), limit)
	if err != nil {
		g.asyncError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, api.DeadLetterList{DeadLetters: dls})
}

// replay serves POST /v1/dlq/{id}/replay: 202 with the invocation's status.
func (g *Gateway) replay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, err := g.cfg.Async.Replay(r.Context(), id)
	if err != nil {
		if errors.Is(err, async.ErrNotFound) {
			writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("invocation %q is not in the dead-letter queue", id))
			return
		}
		g.asyncError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}

func (g *Gateway) asyncError(w http.ResponseWriter, err error, limit int64) {
	switch {
	case errors.Is(err, async.ErrTooLarge):
		writeBodyError(w, errTooLarge, limit)
	case errors.Is(err, async.ErrBadKey):
		writeError(w, http.StatusBadRequest, api.CodeBadIdempotencyKey, err.Error())
	case errors.Is(err, async.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the server is shutting down; retry")
	default:
		g.cfg.Logger.Error("async", "err", err)
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

// RunAsync runs one attempt of an asynchronous invocation; it is the
// async.InvokeFunc the server gives the queue. As for a synchronous
// invocation, it applies the function's timeout, writes the guest's stderr
// to the function's logs, and records metrics and usage. The error is the
// scheduler's or driver's (see invokeError).
func (g *Gateway) RunAsync(ctx context.Context, name string, req *driver.Request) (*driver.Response, error) {
	start := time.Now()
	fn, ok := g.cfg.Functions.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("function %q not found", name)
	}
	stderr := funclog.NewWriter(logSink{g.cfg.Records}, api.LogEntry{
		Function: name, Version: fn.Spec.Version, InvocationID: req.ID, Stream: "stderr",
	})
	req.Stderr = stderr
	if fn.Spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fn.Spec.Timeout)
		defer cancel()
	}
	resp, out, err := g.cfg.Invoker.Invoke(ctx, fn, req)
	dur := time.Since(start)
	status, errMsg := 0, ""
	if err != nil {
		status, _, errMsg = invokeError(name, fn, err)
		stderr.Line(fmt.Sprintf("asynchronous attempt %s failed (%d): %s", req.Header.Get("X-Hearth-Attempt"), status, errMsg))
	} else {
		status = resp.Status
	}
	stderr.Close()
	g.observe(fn, req.ID, start, dur, status, errMsg, out.Cold)
	return resp, err
}
