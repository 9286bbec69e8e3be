package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/funclog"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/metering"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// NewID returns a random invocation id (24 hex digits).
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// invoke serves /fn/{name}/{path...}.
func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := r.PathValue("name")
	fn, ok := g.cfg.Functions.Lookup(name)
	if !ok {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("function %q not found", name))
		return
	}
	body, err := readBody(w, r, g.cfg.MaxBody)
	if err != nil {
		writeBodyError(w, err, g.cfg.MaxBody)
		return
	}
	// The caller's bearer key is Hearth's, not the function's: never pass
	// it on to guest code.
	r.Header.Del("Authorization")
	id := NewID()
	stderr := funclog.NewWriter(logSink{g.cfg.Records}, api.LogEntry{
		Function: name, Version: fn.Spec.Version, InvocationID: id, Stream: "stderr",
	})
	path := "/" + r.PathValue("path")
	req := &driver.Request{
		ID:         id,
		Method:     r.Method,
		Path:       path,
		RawQuery:   r.URL.RawQuery,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		Header:     r.Header,
		Body:       body,
		Stderr:     stderr,
	}
	ctx := r.Context()
	if fn.Spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fn.Spec.Timeout)
		defer cancel()
	}
	resp, out, err := g.cfg.Invoker.Invoke(ctx, fn, req)
	stderr.Close()
	if g.cfg.Metrics != nil && stderr.Dropped > 0 {
		g.cfg.Metrics.LogsDropped.Add(float64(stderr.Dropped))
	}
	dur := time.Since(start)
	g.afterInvoke(r.Context(), name, req, resp, err) // triggers.go: http trigger counters, X-Hearth-Emit

	h := w.Header()
	h.Set("X-Hearth-Invocation-Id", id)
	h.Set("X-Hearth-Cold-Start", strconv.FormatBool(out.Cold))
	h.Set("X-Hearth-Duration-Ms", strconv.FormatFloat(float64(dur)/float64(time.Millisecond), 'f', 3, 64))

	status := http.StatusOK
	var errMsg string
	if err != nil {
		if r.Context().Err() != nil && !errors.Is(err, driver.ErrTimeout) && ctx.Err() != context.DeadlineExceeded {
			status = 499 // the caller went away; nobody reads the answer
			errMsg = "client closed request"
		} else {
			var code string
			status, code, errMsg = invokeError(name, fn, err)
			if oe := (*scheduler.OverloadError)(nil); errors.As(err, &oe) {
				h.Set("Retry-After", strconv.Itoa(int((oe.RetryAfter+time.Second-1)/time.Second)))
			}
			writeError(w, status, code, errMsg)
		}
		stderr.Line(fmt.Sprintf("invocation failed (%d): %s", status, errMsg))
		stderr.Close()
	} else {
		status = resp.Status
		for k, vs := range resp.Header {
			h[k] = vs
		}
		h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
		w.WriteHeader(status)
		w.Write(resp.Body)
	}
	g.observe(fn, id, start, dur, status, errMsg, out.Cold)
}

// invokeError maps an invocation error to an HTTP status, code and message.
func invokeError(name string, fn *scheduler.Function, err error) (int, string, string) {
	var ge *driver.GuestError
	detail := err.Error()
	if errors.As(err, &ge) && ge.Detail != "" {
		detail = ge.Detail
	}
	switch {
	case errors.Is(err, scheduler.ErrOverloaded):
		return http.StatusTooManyRequests, api.CodeOverloaded, err.Error()
	case errors.Is(err, driver.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, api.CodeTimeout,
			fmt.Sprintf("function %q did not answer within its timeout of %s", name, manifest.Duration(fn.Spec.Timeout))
	case errors.Is(err, driver.ErrMemoryLimit):
		return http.StatusBadGateway, api.CodeMemoryLimit,
			fmt.Sprintf("function %q exceeded its memory limit of %s and was stopped", name, manifest.Bytes(fn.Spec.MemoryBytes))
	case errors.Is(err, driver.ErrCrashed):
		return http.StatusBadGateway, api.CodeCrashed, fmt.Sprintf("function %q crashed: %s", name, detail)
	case errors.Is(err, driver.ErrContract):
		return http.StatusBadGateway, api.CodeContract, fmt.Sprintf("function %q broke its contract: %s", name, detail)
	case errors.Is(err, scheduler.ErrNoDriver):
		return http.StatusServiceUnavailable, api.CodeUnavailable,
			fmt.Sprintf("function %q needs the %s isolation tier, which this node does not run (see its log for why)", name, fn.Isolation)
	case errors.Is(err, scheduler.ErrClosed), errors.Is(err, driver.ErrStopped):
		return http.StatusServiceUnavailable, api.CodeUnavailable, "the server is shutting down or the function was removed; retry"
	}
	var se *scheduler.StartError
	if errors.As(err, &se) {
		return http.StatusBadGateway, api.CodeCrashed, err.Error()
	}
	return http.StatusInternalServerError, api.CodeInternal, err.Error()
}

func (g *Gateway) observe(fn *scheduler.Function, id string, start time.Time, dur time.Duration, status int, errMsg string, cold bool) {
	m := g.cfg.Metrics
	name := fn.Spec.Function
	if m != nil {
		m.Invocations.WithLabelValues(name, statusLabel(status)).Inc()
		m.Duration.WithLabelValues(name).Observe(dur.Seconds())
	}
	g.cfg.Records.RecordInvocation(metering.Record(id, name, fn.Spec.Version, fn.Spec.MemoryBytes, start, dur, status, errMsg, cold))
}

var statusLabels = func() map[int]string {
	m := make(map[int]string)
	for s := 100; s < 600; s++ {
		m[s] = strconv.Itoa(s)
	}
	return m
}()

func statusLabel(s int) string {
	if l, ok := statusLabels[s]; ok {
		return l
	}
	return "other"
}

var errTooLarge = errors.New("body too large")

// readBody reads the whole request body, failing with errTooLarge past max.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, errTooLarge
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > 0 {
		// The server's body reader stops at the length it announced.
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, fmt.Errorf("reading request body: %w", err)
		}
		return buf, nil
	}
	var buf []byte // chunked: read up to max + 1 bytes
	lr := &io.LimitedReader{R: r.Body, N: max + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading request body: %w", err)
		}
	}
	if int64(len(buf)) > max {
		return nil, errTooLarge
	}
	return buf, nil
}

func writeBodyError(w http.ResponseWriter, err error, max int64) {
	if errors.Is(err, errTooLarge) {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge,
			fmt.Sprintf("request body is larger than the limit of %s", manifest.Bytes(max)))
		return
	}
	writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
}
