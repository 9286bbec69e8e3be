// Package gateway is Hearth's HTTP front door: the management API under
// /v1, the invocation routes /fn/{name}/..., health and metrics. It
// authenticates callers, bounds request bodies, applies the per-invocation
// timeout, maps driver and scheduler errors to stable HTTP errors, and
// records metrics, logs and usage for every invocation.
package gateway

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/funclog"
	"github.com/hearthdev/hearth/internal/metrics"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// Defaults for Config.
const (
	DefaultMaxBody   = 6 << 20  // invocation request bodies
	DefaultMaxUpload = 64 << 20 // deploy archives
)

// Functions is the registry as the gateway uses it.
type Functions interface {
	Lookup(name string) (*scheduler.Function, bool)
	Deploy(ctx context.Context, name string, archive []byte) (api.Version, error)
	Get(ctx context.Context, name string) (api.Function, error)
	List(ctx context.Context) ([]api.Function, error)
	Delete(ctx context.Context, name string) (api.Deleted, error)
}

// Invoker places invocations on instances.
type Invoker interface {
	Invoke(ctx context.Context, fn *scheduler.Function, req *driver.Request) (*driver.Response, scheduler.Outcome, error)
	Status(name string) api.FunctionStatus
}

// LogQuery selects log lines.
type LogQuery struct {
	Function string
	Tail     int
	Follow   bool
	Since    time.Time
}

// Records is where logs and invocation records go and come from.
type Records interface {
	AppendLog(api.LogEntry)
	RecordInvocation(api.Invocation)
	Logs(ctx context.Context, q LogQuery, fn func(api.LogEntry) error) error
	Usage(ctx context.Context, from, to time.Time) ([]api.FunctionUsage, error)
}

// Config configures a Gateway.
type Config struct {
	Key       string // admin API key; required
	Functions Functions
	Invoker   Invoker
	Records   Records
	Metrics   *metrics.Metrics
	Gatherer  prometheus.Gatherer // served on /metrics
	Logger    *slog.Logger
	MaxBody   int64 // default DefaultMaxBody
	MaxUpload int64 // default DefaultMaxUpload
	// Ready reports whether the node accepts work (for /healthz).
	Ready func() bool
	// Async queues asynchronous invocations (/async/fn/..., /v1/invocations,
	// /v1/dlq). Nil answers 501 there.
	Async AsyncQueue
	// Triggers serves /v1/triggers, /v1/events, /v1/buckets and the http
	// trigger routes (triggers.go). Nil answers 501 there.
	Triggers Triggers
}

// Gateway is an http.Handler.
type Gateway struct {
	cfg Config
	mux *http.ServeMux
	key []byte
}

// New returns the gateway's handler.
func New(cfg Config) *Gateway {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, mux: http.NewServeMux(), key: []byte(cfg.Key)}
	g.mux.HandleFunc("GET /healthz", g.healthz)
	if cfg.Gatherer != nil {
		g.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	g.mux.HandleFunc("PUT /v1/functions/{name}", g.auth(g.deploy))
	g.mux.HandleFunc("GET /v1/functions", g.auth(g.list))
	g.mux.HandleFunc("GET /v1/functions/{name}", g.auth(g.get))
	g.mux.HandleFunc("DELETE /v1/functions/{name}", g.auth(g.delete))
	g.mux.HandleFunc("GET /v1/functions/{name}/logs", g.auth(g.logs))
	g.mux.HandleFunc("GET /v1/usage", g.auth(g.usage))
	g.mux.HandleFunc("/v1/", g.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such API route: "+r.Method+" "+r.URL.Path)
	}))
	g.mux.HandleFunc("/fn/{name}", g.auth(g.invokeFn))
	g.mux.HandleFunc("/fn/{name}/{path...}", g.auth(g.invokeFn))
	g.mountAsync()    // async.go
	g.mountTriggers() // triggers.go
	g.mux.HandleFunc("/", g.fallback)
	return g
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mux.ServeHTTP(w, r)
}

func (g *Gateway) healthz(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Ready != nil && !g.cfg.Ready() {
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "not ready")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// auth requires the admin key as a bearer token.
func (g *Gateway) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), g.key) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hearth"`)
			msg := "missing API key: send Authorization: Bearer <key> (the key is in admin.key in the data directory)"
			if ok {
				msg = "wrong API key"
			}
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, msg)
			return
		}
		h(w, r)
	}
}

// mountUnavailable answers 501 with msg (after authentication) on patterns:
// the routes of a subsystem this gateway was built without.
func (g *Gateway) mountUnavailable(msg string, patterns ...string) {
	h := g.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotImplemented, "not_implemented", msg)
	})
	for _, p := range patterns {
		g.mux.HandleFunc(p, h)
	}
}

// logSink adapts Records to funclog.Sink.
type logSink struct{ r Records }

func (s logSink) AppendLog(e api.LogEntry) { s.r.AppendLog(e) }

var _ funclog.Sink = logSink{}
