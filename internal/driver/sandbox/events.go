//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Emitter publishes the events functions send to their events endpoint
// ($HEARTH_EVENTS_API). *trigger.Manager implements it; internal/server
// passes it in as Config.Emitter.
type Emitter interface {
	// Emit publishes e on topic as the next event of a chain of events
	// emitted by functions, hops events deep so far (0: no emitted event
	// led to the invocations the instance is handling). Errors match
	// events.ErrUnknownTopic (no trigger subscribes to topic),
	// events.ErrMalformed or events.ErrChainTooLong.
	Emit(ctx context.Context, topic string, e *events.Event, hops int) (api.EventAccepted, error)
}

// The events endpoint. A function publishes an event with
// POST http://$HEARTH_EVENTS_API/v1/events/{topic}, taking the same forms
// as the gateway's POST /v1/events/{topic}: a CloudEvent in structured or
// binary mode, or plain data that becomes the data of a new event (type
// the topic). No key is needed: only the sandbox reaches the socket, and
// the event's source is always /functions/<name>, so a function cannot
// pass its events off as another's.
const (
	eventsPort = 9002
	// EventsAPIEnv names the endpoint's address in the function's
	// environment (only when the driver has an Emitter).
	EventsAPIEnv = "HEARTH_EVENTS_API"
	// MaxEventBytes bounds the body of one event (413 past it), as on the
	// gateway.
	MaxEventBytes = 512 << 10
	// Default rate limit of one function's events, all its sandboxes
	// together (429 past it).
	DefaultEventRate  = 1000 // events per second
	DefaultEventBurst = 100
	// eventsTimeout bounds publishing one event.
	eventsTimeout = 10 * time.Second
	// headerEventHops is trigger.HeaderEventHops (a test checks): how
	// many emitted events led to an invocation.
	headerEventHops = "X-Hearth-Event-Hops"
)

const eventsPath = "/v1/events/"

// eventsAPI is one sandbox's events endpoint: an HTTP server on
// 127.0.0.1:9002 inside the sandbox's network namespace (no host port),
// created when the sandbox is specialised and closed when it dies. It
// owns its serving goroutine and waits for its handlers when closed.
//
// Loop guard: an event the function sends is counted as the next link of
// the deepest chain of emitted events among the invocations the instance
// is running and those it started in the last hopsMemory (for events sent
// in the background after an invocation returned; a shallower invocation
// started meanwhile does not reset the chain). Emitter refuses it past the
// chain limit (trigger.MaxHops), as for X-Hearth-Emit; the endpoint
// answers 508.
type eventsAPI struct {
	fn    string // the function: the events' source is /functions/<fn>
	emit  Emitter
	log   *slog.Logger
	limit *rate.Limiter

	ctx    context.Context // cancelled by close: aborts publishes in flight
	cancel context.CancelFunc
	srv    *http.Server // nil until serve
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inflight map[int]int // hops > 0 of running invocations → count
	// recent is the depth of the deepest invocation started in the last
	// hopsMemory (at recentAt), else of the last one started.
	recent   int
	recentAt time.Time
}

// hopsMemory is how long the endpoint remembers the depth of the deepest
// invocation it started, for events the function sends in the background
// after answering: a shallower invocation started meanwhile does not reset
// the chain they continue.
const hopsMemory = 10 * time.Second

// newEventsHandler returns the endpoint of function fn, not yet serving.
func newEventsHandler(fn string, emit Emitter, limit *rate.Limiter, log *slog.Logger) *eventsAPI {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &eventsAPI{fn: fn, emit: emit, log: log, limit: limit, inflight: map[int]int{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a
}

// newEventsAPI serves sb's events endpoint; call with sb.nsMu held and the
// namespace open.
func newEventsAPI(sb *sandbox) (*eventsAPI, error) {
	ln, err := listenNetns(sb.d.hostNS, sb.netns, "127.0.0.1:"+strconv.Itoa(eventsPort))
	if err != nil {
		return nil, fmt.Errorf("sandbox: events endpoint listener: %w", err)
	}
	a := newEventsHandler(sb.spec.Function, sb.d.cfg.Emitter, sb.d.eventLimiter(sb.spec.Function), sb.d.log)
	a.serve(ln)
	return a, nil
}

// serve serves the endpoint on ln until close.
func (a *eventsAPI) serve(ln net.Listener) {
	a.srv = &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return a.ctx },
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.srv.Serve(ln)
	}()
}

// close stops serving, aborts publishes in flight and waits for every
// goroutine of the endpoint. Safe to call more than once.
func (a *eventsAPI) close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	if a.srv != nil {
		a.srv.Close() // closes the listener and every connection
	}
	a.wg.Wait()
}

// enter registers a handler; false once the endpoint is closed.
func (a *eventsAPI) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	return true
}

// invoking records that an invocation started on the instance and
// returns its depth in a chain of emitted events, to pass to done. A nil
// endpoint (no Emitter) records nothing.
func (a *eventsAPI) invoking(req *driver.Request) int {
	if a == nil {
		return 0
	}
	h, _ := strconv.Atoi(req.Header.Get(headerEventHops))
	h = min(max(h, 0), 1<<20)
	now := time.Now()
	a.mu.Lock()
	if h >= a.recent || now.Sub(a.recentAt) > hopsMemory {
		a.recent, a.recentAt = h, now
	}
	if h > 0 {
		a.inflight[h]++
	}
	a.mu.Unlock()
	return h
}

// done records that an invocation invoking returned hops for ended.
func (a *eventsAPI) done(hops int) {
	if a == nil || hops == 0 {
		return
	}
	a.mu.Lock()
	if a.inflight[hops]--; a.inflight[hops] <= 0 {
		delete(a.inflight, hops)
	}
	a.mu.Unlock()
}

// hops is the depth an event the function sends now continues: the
// deepest of the running invocations and of those started in the last
// hopsMemory (or the last one started, if none).
func (a *eventsAPI) hops() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.recent
	for k := range a.inflight {
		h = max(h, k)
	}
	return h
}

// ServeHTTP serves POST /v1/events/{topic}.
func (a *eventsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.enter() {
		eventsError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the instance is stopping")
		return
	}
	defer a.wg.Done()
	topic, ok := strings.CutPrefix(r.URL.Path, eventsPath)
	if !ok || topic == "" {
		eventsError(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint: "+r.URL.Path+"; events are published with POST "+eventsPath+"{topic}")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		eventsError(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "events are published with POST "+eventsPath+"{topic}, not "+r.Method)
		return
	}
	if err := manifest.CheckTopic(topic, false); err != nil {
		eventsError(w, http.StatusBadRequest, api.CodeBadRequest, "topic "+err.Error())
		return
	}
	if !a.limit.Allow() {
		w.Header().Set("Retry-After", "1")
		eventsError(w, http.StatusTooManyRequests, api.CodeOverloaded,
			fmt.Sprintf("more than %g events per second (burst %d) from this instance", float64(a.limit.Limit()), a.limit.Burst()))
		return
	}
	body, err := readEventBody(r)
	if err != nil {
		if errors.Is(err, errEventTooLarge) {
			w.Header().Set("Connection", "close")
			eventsError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, err.Error())
			return
		}
		eventsError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	source := "/functions/" + a.fn
	e, err := events.FromHTTP(r.Header, body, source, topic)
	if err != nil {
		eventsError(w, http.StatusBadRequest, api.CodeMalformedEvent, err.Error())
		return
	}
	e.SetSource(source)
	ctx, cancel := context.WithTimeout(r.Context(), eventsTimeout)
	defer cancel()
	acc, err := a.emit.Emit(ctx, topic, e, a.hops())
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(acc)
	case errors.Is(err, events.ErrUnknownTopic):
		eventsError(w, http.StatusNotFound, api.CodeUnknownTopic, err.Error())
	case errors.Is(err, events.ErrMalformed):
		eventsError(w, http.StatusBadRequest, api.CodeMalformedEvent, err.Error())
	case errors.Is(err, events.ErrChainTooLong):
		eventsError(w, http.StatusLoopDetected, api.CodeEventLoop, err.Error())
	case a.ctx.Err() != nil:
		eventsError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the instance is stopping")
	default:
		a.log.Error("sandbox: publishing a function's event", "function", a.fn, "topic", topic, "err", err)
		eventsError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

var errEventTooLarge = fmt.Errorf("an event's body is limited to %d KiB", MaxEventBytes>>10)

func readEventBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxEventBytes {
		return nil, errEventTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxEventBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(body) > MaxEventBytes {
		return nil, errEventTooLarge
	}
	return body, nil
}

// eventsError writes the gateway's JSON error body.
func eventsError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	b, _ := json.Marshal(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
	w.Write(append(b, '\n'))
}

// eventLimiter is the rate limit of function fn's events, shared by all
// its sandboxes, so that neither scaling out nor cold starts raise it.
func (d *Driver) eventLimiter(fn string) *rate.Limiter {
	d.eventsMu.Lock()
	defer d.eventsMu.Unlock()
	l := d.eventLimits[fn]
	if l == nil {
		if d.eventLimits == nil {
			d.eventLimits = make(map[string]*rate.Limiter)
		}
		l = rate.NewLimiter(rate.Limit(d.cfg.EventRate), d.cfg.EventBurst)
		d.eventLimits[fn] = l
	}
	return l
}
