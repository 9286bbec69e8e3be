// Package server wires Hearth's subsystems together: the store, the isolation
// drivers, the scheduler, the registry and the gateway. It is the one place
// where dependencies are constructed and passed in; nothing below it reaches
// for a global.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/sandbox"
	"github.com/hearthdev/hearth/internal/driver/wasm"
	"github.com/hearthdev/hearth/internal/gateway"
	"github.com/hearthdev/hearth/internal/keepalive"
	"github.com/hearthdev/hearth/internal/metrics"
	"github.com/hearthdev/hearth/internal/registry"
	"github.com/hearthdev/hearth/internal/scheduler"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/trigger"
)

// Config configures one Hearth node.
type Config struct {
	Listen  string // HTTP listen address, e.g. 127.0.0.1:8080
	DataDir string // all state lives here
	Demo    bool   // deploy the bundled examples and print curl lines
	Logger  *slog.Logger
	Stdout  io.Writer // where --demo prints its curl lines
	// Ready, if set, is called with the bound address once /healthz answers 200.
	Ready func(addr string)
	// DrainTimeout bounds how long shutdown waits for in-flight
	// invocations. Default 30 s.
	DrainTimeout time.Duration
	// SandboxPool is how many pre-built empty sandboxes the node keeps
	// ready for cold starts of any sandbox function.
	SandboxPool int
	// KeepAlive is the default keep-alive policy (see internal/keepalive);
	// functions may name their own. Default "hearth".
	KeepAlive string
	// NATSListen, if set, makes the embedded NATS server accept outside
	// clients on this address (host:port), authenticated by the token in
	// NATSTokenFile; empty keeps it in-process only.
	NATSListen string
	// NATSReady, if set, is called with the NATS URL outside clients use
	// (without the token) once they are let in, before Ready.
	NATSReady func(url string)
	// AsyncWorkers is how many asynchronous invocations the node runs at
	// once: 0 means async.DefaultWorkers; negative means none, so the node
	// only queues them, durably, until a node with workers runs them.
	AsyncWorkers int
}

// Files in the data directory.
const (
	// KeyFile holds the admin API key.
	KeyFile = "admin.key"
	// NATSTokenFile holds the token of outside NATS clients (--nats-listen).
	NATSTokenFile = "nats.token"
)

// Run runs a node until ctx is done, then drains in-flight invocations,
// stops every instance and returns nil.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if cfg.KeepAlive != "" {
		if _, err := keepalive.New(cfg.KeepAlive); err != nil {
			return fmt.Errorf("--keepalive: %w", err)
		}
	}
	key, err := LoadOrCreateKey(filepath.Join(cfg.DataDir, KeyFile))
	if err != nil {
		return err
	}
	stOpts := store.Options{Dir: cfg.DataDir, Logger: log.With("component", "store")}
	if cfg.NATSListen != "" {
		// A credential of its own, not the admin key: it only publishes
		// and subscribes (see internal/store/listen.go), so it can be
		// handed to producers without giving them the API.
		tok, err := loadOrCreateSecret(filepath.Join(cfg.DataDir, NATSTokenFile), "nt_", "NATS token")
		if err != nil {
			return err
		}
		stOpts.Listen, stOpts.ListenToken = cfg.NATSListen, tok
		if !loopback(cfg.NATSListen) {
			log.Warn("the NATS listener has no TLS: its token crosses the network in clear text; bind it to loopback or a private network", "addr", cfg.NATSListen)
		}
	}

	st, err := store.Open(ctx, stOpts)
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	defer st.Close()

	// Subsystems are stopped in the reverse order of their start, on every
	// return: after a failed start as after a drain.
	type closer struct {
		name  string
		close func(context.Context) error
	}
	var closers []closer
	stopped := false
	stopAll := func(ctx context.Context) {
		if stopped {
			return
		}
		stopped = true
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i].close(ctx); err != nil {
				log.Warn("stopping "+closers[i].name, "err", err)
			}
		}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		defer cancel()
		stopAll(ctx)
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	wasmDrv, err := wasm.New(wasm.Config{
		CacheDir: filepath.Join(cfg.DataDir, "cache", "wasm"),
		Logger:   log.With("component", "wasm"),
	})
	if err != nil {
		return fmt.Errorf("wasm driver: %w", err)
	}
	// Sandboxed functions publish events through the trigger manager,
	// which is built after the drivers (it needs the async queue, which
	// needs the registry, which needs the drivers): they get it once set.
	emitter := &lateEmitter{}
	drivers := map[string]driver.Driver{}
	for _, d := range append([]driver.Driver{wasmDrv}, extraDrivers(cfg, emitter, log)...) {
		drivers[d.Name()] = d
		if c, ok := d.(interface{ Close(context.Context) error }); ok {
			closers = append(closers, closer{d.Name() + " driver", c.Close})
		}
		if sb, ok := d.(*sandbox.Driver); ok {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "hearth_sandbox_pool_ready",
				Help: "Pre-built empty sandboxes ready for a cold start of any sandbox function.",
			}, func() float64 { return float64(sb.PoolLen()) }))
		}
	}

	sched := scheduler.New(scheduler.Config{
		Drivers:   drivers,
		KeepAlive: cfg.KeepAlive,
		Metrics:   m,
		Logger:    log.With("component", "scheduler"),
	})
	closers = append(closers, closer{"instances", sched.Close})
	records := records{st}
	fns, err := registry.Open(ctx, registry.Config{
		Store:      st,
		IsNotFound: func(err error) bool { return errors.Is(err, store.ErrNotFound) },
		Drivers:    drivers,
		Scheduler:  sched,
		Logs:       st,
		Dir:        filepath.Join(cfg.DataDir, "functions"),
		Logger:     log.With("component", "registry"),
	})
	if err != nil {
		return err
	}

	// Load compiled code and snapshots before taking traffic, so the first
	// invocation after a restart is not a compile-cache load.
	fns.Warm(ctx, 2*time.Second)

	// The async queue invokes through the gateway (same timeout, logs,
	// metrics and usage as a synchronous call); the gateway enqueues
	// through the queue. gw is assigned before the queue starts.
	var gw *gateway.Gateway
	var trg *trigger.Manager // assigned before the queue starts
	aq, err := async.New(ctx, async.Config{
		JS: st.JetStream(),
		Invoke: func(ctx context.Context, fn string, req *driver.Request) (*driver.Response, error) {
			start := time.Now()
			resp, err := gw.RunAsync(ctx, fn, req)
			trg.AfterInvoke(ctx, fn, req, start, resp, err) // trigger metrics, X-Hearth-Emit
			return resp, err
		},
		Policy:    async.CachedPolicy(fns.Get, func(err error) bool { return errors.Is(err, registry.ErrNotFound) }, 2*time.Second),
		Throttled: func(err error) bool { return errors.Is(err, scheduler.ErrOverloaded) },
		Logger:    log.With("component", "async"),
		Workers:   max(0, cfg.AsyncWorkers),
	})
	if err != nil {
		return fmt.Errorf("async queue: %w", err)
	}
	// Stopped after the queue drained: the results of its last attempts
	// count in the triggers' durable counters.
	closers = append(closers, closer{"trigger counters", func(ctx context.Context) error {
		if trg == nil {
			return nil
		}
		return trg.Flush(ctx)
	}})
	closers = append(closers, closer{"the async queue", aq.Close})

	// Triggers (cron, subjects, streams, buckets, the event bus, http
	// routes) deliver through the async queue; they follow the registry's
	// KV bucket for deploys and deletes.
	trg, err = newTriggers(ctx, st, aq, reg, log)
	if err != nil {
		return err
	}
	closers = append(closers, closer{"triggers", trg.Close})
	emitter.set(trg)

	var ready atomic.Bool
	gw = gateway.New(gateway.Config{
		Key:       key,
		Functions: fns,
		Invoker:   sched,
		Records:   records,
		Metrics:   m,
		Gatherer:  reg,
		Logger:    log.With("component", "gateway"),
		Ready:     ready.Load,
		Async:     aq,
		Triggers:  trg,
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.AsyncWorkers >= 0 {
		aq.Start()
	}
	if err := trg.Start(ctx); err != nil {
		log.Error("starting triggers", "err", err)
	}
	// Outside NATS clients are let in once every subsystem has created
	// its streams, whose subjects they may not touch.
	if err := st.AcceptClients(ctx); err != nil {
		return fmt.Errorf("nats listener: %w", err)
	}
	addr := ln.Addr().String()
	ready.Store(true)
	upArgs := []any{"addr", "http://" + addr, "data", cfg.DataDir, "functions", len(fns.Names())}
	if u := st.ClientURL(); u != "" {
		upArgs = append(upArgs, "nats", u, "nats_token", filepath.Join(cfg.DataDir, NATSTokenFile))
	}
	log.Info("hearth is up", upArgs...)

	if cfg.Demo {
		available := func(iso string) bool { _, ok := drivers[iso]; return ok }
		if err := deployDemo(ctx, fns, available, cfg, addr); err != nil {
			log.Error("demo", "err", err)
			fmt.Fprintf(cfg.Stdout, "demo: %v\n", err)
		}
	}
	if u := st.ClientURL(); u != "" && cfg.NATSReady != nil {
		cfg.NATSReady(u)
	}
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		log.Error("http server stopped", "err", err)
	}
	ready.Store(false)
	log.Info("draining", "timeout", cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain incomplete; closing connections", "err", err)
		srv.Close()
	}
	stopAll(dctx)
	if err := st.Flush(dctx); err != nil {
		log.Warn("flushing records", "err", err)
	}
	log.Info("stopped")
	return nil
}

// extraDrivers returns the isolation drivers beyond wasm available on this
// node: the Linux sandbox driver when the host allows it (root, cgroups).
func extraDrivers(cfg Config, emitter sandbox.Emitter, log *slog.Logger) []driver.Driver {
	sb, err := sandbox.New(sandbox.Config{
		StateDir: filepath.Join(cfg.DataDir, "sandbox"),
		Logger:   log.With("component", "sandbox"),
		Pool:     cfg.SandboxPool,
		Emitter:  emitter,
	})
	if err != nil {
		log.Warn("the sandbox isolation tier is not available on this node", "err", err)
		return nil
	}
	return []driver.Driver{sb}
}

// records adapts the store to the gateway's Records interface.
type records struct{ *store.Store }

func (r records) Logs(ctx context.Context, q gateway.LogQuery, fn func(api.LogEntry) error) error {
	return r.Store.Logs(ctx, store.LogQuery{Function: q.Function, Tail: q.Tail, Follow: q.Follow, Since: q.Since}, fn)
}

// LoadOrCreateKey reads the admin key, creating a random one (mode 0600)
// on first start.
func LoadOrCreateKey(path string) (string, error) {
	return loadOrCreateSecret(path, "hk_", "admin key")
}

// loadOrCreateSecret reads a secret from path, creating a random one with
// the given prefix (mode 0600) if the file does not exist.
func loadOrCreateSecret(path, prefix, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("%s file %s is empty; delete it to create a new one", what, path)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	var raw [24]byte
	rand.Read(raw[:])
	k := prefix + hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadOrCreateSecret(path, prefix, what)
		}
		return "", fmt.Errorf("creating %s: %w", what, err)
	}
	if _, err := f.WriteString(k + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("writing %s: %w", what, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return k, f.Close()
}

// loopback reports whether addr (host:port) binds only loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
