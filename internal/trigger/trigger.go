// Package trigger runs the triggers functions declare in their manifest
// (manifest.Trigger): cron schedules, NATS subjects, JetStream streams,
// object-store buckets, event-bus topics and extra HTTP routes.
//
// # Delivery
//
// A trigger never invokes a function directly. Each event becomes a
// CloudEvent (internal/events) and is queued as an asynchronous invocation
// (internal/async), so the function's retry policy, dead-letter queue,
// destinations, logs, metrics and usage apply to triggered work exactly as
// to POST /async/fn/{name}, and a function scaled to zero is started by
// the queue's worker like any invocation. wagi functions get the event in
// structured mode as their body, http and lambda functions in binary mode.
// The request also carries X-Hearth-Trigger (the trigger's name) and
// X-Hearth-Trigger-Type. A function publishes an event back by answering
// any invocation, synchronous or not, with X-Hearth-Emit: <topic>
// (deliver.go), or, in a sandbox, by posting it to its events endpoint
// ($HEARTH_EVENTS_API, served by the sandbox driver, which hands it to
// Manager.Emit). Both count chains of emitted events and stop them at
// MaxHops.
//
// Every event is queued with an idempotency key derived from the event —
// the cron tick's time, the stream sequence, the bucket's meta-message
// sequence — so an event that is delivered to the trigger again (after a
// crash, before the ack) is queued once and runs once (see package async).
// Sources with acknowledgements (stream, bucket, event) ack a message only
// after the queue stored the invocation: at least once into the queue,
// once out of it. Core NATS subjects have no acknowledgement: a message that
// arrives while the node is down, or is lost with it before it was queued,
// is lost (at most once), as with any core NATS subscriber.
//
// # Durable state
//
//   - KV bucket hearth_triggers, key <function>.<trigger>: the last cron
//     tick fired (and when, and its invocation id).
//   - Same bucket, key <function>.<trigger>.stats: the trigger's counters
//     (fired, succeeded, failed, dropped) and its last firing, written at
//     most every second by a flusher and when the manager closes, so a
//     kill -9 loses at most a second of counts (stats.go).
//   - Durable consumers named hearth-<function>-<trigger> (unless the
//     manifest names one) on the trigger's stream: HEARTH_EVENTS for event
//     triggers, OBJ_hearth_bucket_<bucket> for bucket triggers, the user's
//     stream for stream triggers. They start with the messages published
//     after the trigger was first deployed.
//
// A trigger's durable state is removed when the trigger leaves the
// function's manifest or the function is deleted — also while the node
// was down: the state of triggers no function declares is removed once the
// registry has been read at start.
//
// # Function changes
//
// The Manager watches the registry's KV bucket (hearth_functions): the
// serving version's manifest says which triggers run. A deploy that keeps a
// trigger unchanged keeps it running untouched; a changed one restarts with
// its durable state.
package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
)

// StateBucket is the KV bucket of the triggers' durable state.
const StateBucket = "hearth_triggers"

// Headers of a triggered invocation's request.
const (
	HeaderTrigger     = "X-Hearth-Trigger"
	HeaderTriggerType = "X-Hearth-Trigger-Type"
	// HeaderEventHops counts emitted events that led to this one; an event
	// more than MaxHops deep is not emitted (a loop guard).
	HeaderEventHops = "X-Hearth-Event-Hops"
	// HeaderEmit, on a function's successful response to an asynchronous
	// invocation, publishes the response body as an event on the topic it
	// names (see Manager.AfterInvoke).
	HeaderEmit = "X-Hearth-Emit"
)

// MaxHops bounds chains of emitted events.
const MaxHops = 16

// Bounds of what outside publishers can make the node hold: a stream
// Hearth creates for a stream trigger keeps at most createdStreamMaxBytes
// and createdStreamMaxAge (the oldest messages go first), and a subject
// trigger buffers at most subjectPendingBytes of messages its workers have
// not taken yet.
const (
	createdStreamMaxBytes = 1 << 30
	createdStreamMaxAge   = 7 * 24 * time.Hour
	subjectPendingBytes   = 256 << 20
)

// Sentinel errors callers branch on.
var (
	// ErrUnknownTopic: no trigger subscribes to the topic (the same
	// value as events.ErrUnknownTopic).
	ErrUnknownTopic = events.ErrUnknownTopic
	// ErrClosed: the manager is closed.
	ErrClosed = errors.New("trigger: closed")
)

// Queue is where triggered invocations go (*async.Queue).
type Queue interface {
	Enqueue(ctx context.Context, r async.Request) (async.Accepted, error)
	MaxBody() int64
}

var _ Queue = (*async.Queue)(nil)

// Config configures a Manager.
type Config struct {
	JS    jetstream.JetStream // the node's JetStream; required
	Queue Queue               // required
	// Functions is the registry's KV bucket, watched for deploys and
	// deletes. If nil, the caller calls Sync and Remove itself.
	Functions jetstream.KeyValue
	Logger    *slog.Logger
	// Registerer receives the trigger metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of cron triggers; default time.Now.
	Now func() time.Time
	// Connect opens a connection to an external NATS server (a trigger's
	// url); default nats.Connect.
	Connect func(url string) (*nats.Conn, error)
	// RetryDelay is how long a trigger that failed to start waits before
	// trying again. Default 2 s, growing to 30 s.
	RetryDelay time.Duration
	// PollInterval is how often lag, queue depth and DLQ size are
	// refreshed. Default 2 s.
	PollInterval time.Duration
	// FlushInterval is how often changed trigger counters are written to
	// the state bucket. Default 1 s.
	FlushInterval time.Duration
}

// Manager runs the triggers of every deployed function. Its methods are
// safe for concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	js      jetstream.JetStream
	bus     *events.Bus
	state   jetstream.KeyValue
	buckets *Buckets
	met     *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	fns     map[string]*function // by function name
	routes  atomic.Pointer[routeTable]
	started bool
}

// function is the triggers of one function.
type function struct {
	protocol string
	runners  map[string]*runner // by trigger name
}

// New creates the state bucket and the event bus stream. Triggers run
// after Start.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.JS == nil || cfg.Queue == nil {
		return nil, errors.New("trigger: Config.JS and Queue are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Connect == nil {
		cfg.Connect = func(url string) (*nats.Conn, error) {
			return nats.Connect(url, nats.Name("hearth-trigger"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
		}
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 2 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger, js: cfg.JS,
		fns:     make(map[string]*function),
		buckets: NewBuckets(cfg.JS),
		met:     newMetrics(cfg.Registerer),
	}
	m.routes.Store(emptyRoutes)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	var err error
	if m.bus, err = events.Open(ctx, cfg.JS); err != nil {
		return nil, err
	}
	m.state, err = cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StateBucket,
		Description: "Hearth trigger state (last cron tick, counters)",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("trigger: bucket %s: %w", StateBucket, err)
	}
	return m, nil
}

// Buckets is the object store the bucket triggers watch.
func (m *Manager) Buckets() *Buckets { return m.buckets }

// Bus is the event bus.
func (m *Manager) Bus() *events.Bus { return m.bus }

// Start starts watching the functions (if Config.Functions is set), the
// metrics poller and the counters' flusher. It returns once the triggers
// of the functions deployed so far have been started.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return nil
	}
	m.started = true
	m.mu.Unlock()
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.poll()
	}()
	go func() {
		defer m.wg.Done()
		m.flushLoop()
	}()
	if m.cfg.Functions == nil {
		return nil
	}
	w, err := m.cfg.Functions.WatchAll(m.ctx)
	if err != nil {
		return fmt.Errorf("trigger: watching functions: %w", err)
	}
	initial := make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer w.Stop()
		m.watch(w, initial)
	}()
	select {
	case <-initial:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watch applies registry changes until the manager closes.
func (m *Manager) watch(w jetstream.KeyWatcher, initial chan struct{}) {
	once := sync.OnceFunc(func() { close(initial) })
	defer once()
	for {
		select {
		case <-m.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				// Every function deployed is synced: what state no
				// trigger owns is stale.
				ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
				m.pruneState(ctx)
				cancel()
				once()
				continue
			}
			name := e.Key()
			if e.Operation() != jetstream.KeyValuePut {
				m.Remove(name)
				continue
			}
			var f api.Function
			if err := json.Unmarshal(e.Value(), &f); err != nil {
				m.log.Error("trigger: decoding function record", "function", name, "err", err)
				continue
			}
			for _, v := range f.Versions {
				if v.Number == f.Latest {
					m.Sync(name, v.Manifest)
				}
			}
		}
	}
}

// Sync makes the running triggers of function fn those of its manifest.
func (m *Manager) Sync(fn string, man manifest.Manifest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	f := m.fns[fn]
	if f == nil {
		f = &function{runners: make(map[string]*runner)}
		m.fns[fn] = f
	}
	protoChanged := f.protocol != man.Protocol
	f.protocol = man.Protocol
	keep := make(map[string]bool, len(man.Triggers))
	for _, t := range man.Triggers {
		keep[t.Name] = true
		old, ok := f.runners[t.Name]
		if ok {
			if !protoChanged && reflect.DeepEqual(old.t, t) {
				continue
			}
			old.stop(false)
		}
		r := m.newRunner(fn, man.Protocol, t)
		if ok {
			r.inherit(old)
		} else {
			ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
			if err := r.loadStats(ctx); err != nil {
				// flush loads them before it writes.
				m.log.Warn("trigger: counters not loaded yet", "function", fn, "trigger", t.Name, "err", err)
			}
			cancel()
		}
		f.runners[t.Name] = r
		r.start()
	}
	for name, r := range f.runners {
		if !keep[name] {
			r.stop(true)
			delete(f.runners, name)
		}
	}
	if len(f.runners) == 0 {
		delete(m.fns, fn)
	}
	m.rebuildRoutesLocked()
}

// Remove stops the triggers of a deleted function and removes their
// durable state.
func (m *Manager) Remove(fn string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.fns[fn]
	if f == nil {
		return
	}
	for _, r := range f.runners {
		r.stop(true)
	}
	delete(m.fns, fn)
	m.rebuildRoutesLocked()
}

// Close stops every trigger (keeping their durable state), waits for them
// until ctx is done and writes their counters (see Flush for later ones).
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	var rs []*runner
	for _, f := range m.fns {
		for _, r := range f.runners {
			rs = append(rs, r)
		}
	}
	m.mu.Unlock()
	m.cancel()
	done := make(chan struct{})
	go func() {
		for _, r := range rs {
			r.stop(false)
		}
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return m.Flush(ctx)
	case <-ctx.Done():
		return fmt.Errorf("trigger: closing: %w", ctx.Err())
	}
}

// List returns the status of the triggers of fn, or of every function if
// fn is empty, sorted by function and trigger name.
func (m *Manager) List(fn string) []api.TriggerStatus {
	m.mu.Lock()
	var rs []*runner
	for name, f := range m.fns {
		if fn != "" && name != fn {
			continue
		}
		for _, r := range f.runners {
			rs = append(rs, r)
		}
	}
	m.mu.Unlock()
	out := make([]api.TriggerStatus, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.status())
	}
	slices.SortFunc(out, func(a, b api.TriggerStatus) int {
		if c := strings.Compare(a.Function, b.Function); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// runner looks up a running trigger.
func (m *Manager) runner(fn, name string) *runner {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.fns[fn]; f != nil {
		return f.runners[name]
	}
	return nil
}

// Subscribers counts the event triggers whose topic matches topic.
func (m *Manager) Subscribers(topic string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, f := range m.fns {
		for _, r := range f.runners {
			if r.t.Type == manifest.TriggerEvent && subjectMatch(r.t.Topic, topic) {
				n++
			}
		}
	}
	return n
}

// Publish puts e on the event bus under topic. A topic no trigger
// subscribes to is refused with ErrUnknownTopic: nothing would ever read
// the event.
func (m *Manager) Publish(ctx context.Context, topic string, e *events.Event) (api.EventAccepted, error) {
	if err := manifest.CheckTopic(topic, false); err != nil {
		return api.EventAccepted{}, fmt.Errorf("%w: topic %w", events.ErrMalformed, err)
	}
	n := m.Subscribers(topic)
	if n == 0 {
		return api.EventAccepted{}, fmt.Errorf("%w %q: no function subscribes to it; add a trigger {type: event, topic: %s} to a function's hearth.yaml", ErrUnknownTopic, topic, topic)
	}
	dup, err := m.bus.Publish(ctx, topic, e)
	if err != nil {
		return api.EventAccepted{}, err
	}
	return api.EventAccepted{ID: e.ID(), Topic: topic, Subscribers: n, Duplicate: dup}, nil
}

// subjectMatch reports whether the NATS subject subj matches pattern
// (tokens, * and a trailing >).
func subjectMatch(pattern, subj string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subj, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}
