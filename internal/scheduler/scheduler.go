// Package scheduler places invocations on instances and sizes each
// function's set of instances.
//
// It keeps one pool of instances per function version. Placement is driven
// by requests: an instance takes up to `concurrency` invocations at once;
// when all are busy the request waits in a bounded queue (past it:
// ErrOverloaded, HTTP 429) and as many instances as the queue needs start at
// once (the Knative activator's job). Sizing is periodic: every tick the
// function's autoscaler (internal/autoscale, Knative's KPA rules) turns the
// observed concurrency into a desired count while the function is busy, and
// the keep-alive policy (internal/keepalive, the same code `hearth sim`
// replays) decides whether an idle function keeps an instance loaded, drops
// it, or pre-warms one ahead of a predicted invocation. scale.min and
// scale.max bound everything.
//
// The scheduler knows nothing about isolation technologies: it drives every
// instance through the driver.Driver interface.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/keepalive"
	"github.com/hearthdev/hearth/internal/metrics"
)

// ErrOverloaded means the function is at capacity and its queue is full, or
// the invocation waited in the queue for longer than allowed.
var ErrOverloaded = errors.New("function is at capacity")

// ErrNoDriver means the function names an isolation tier this node lacks.
var ErrNoDriver = errors.New("isolation tier not available on this node")

// ErrClosed means the scheduler is shutting down.
var ErrClosed = errors.New("scheduler is shutting down")

// OverloadError is returned (wrapping ErrOverloaded) when an invocation is
// rejected for lack of capacity.
type OverloadError struct {
	Function   string
	Reason     string // "queue_full" or "queue_timeout"
	RetryAfter time.Duration
}

func (e *OverloadError) Error() string {
	if e.Reason == "queue_timeout" {
		return fmt.Sprintf("function %q is at capacity: timed out waiting in its queue", e.Function)
	}
	return fmt.Sprintf("function %q is at capacity and its queue is full", e.Function)
}

func (e *OverloadError) Unwrap() error { return ErrOverloaded }

// StartError is returned when a new instance could not be started.
type StartError struct {
	Function string
	Err      error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("function %q failed to start: %v", e.Function, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// Function is what the scheduler needs to run a function version.
type Function struct {
	Isolation string
	Spec      driver.Spec
	ScaleMin  int
	ScaleMax  int
	// KeepAlive names the keep-alive policy (see keepalive.New); empty
	// means the node's default.
	KeepAlive string
}

// Config configures a Scheduler.
type Config struct {
	Drivers map[string]driver.Driver // by isolation tier
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// KeepAlive is the node's default keep-alive policy name (see
	// keepalive.New). Default "hearth".
	KeepAlive string
	// QueueSize bounds the invocations waiting for capacity per function.
	// Default 1000.
	QueueSize int
	// MaxQueueWait bounds how long one invocation waits for capacity before
	// 429. Default: the function's timeout.
	MaxQueueWait time.Duration
	// StartTimeout bounds the start of one instance. Default 30 s.
	StartTimeout time.Duration
	// TickInterval is how often each function's size is decided. Default 2 s.
	TickInterval time.Duration
	// StartConcurrency bounds instance starts in progress on the node.
	// Default: the number of CPUs, at least 2.
	StartConcurrency int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Scheduler owns every instance on the node.
type Scheduler struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	pools    map[string]*pool // by Spec.Key()
	current  map[string]*pool // by function name: the pool serving new traffic
	policies map[string]keepalive.Policy
	starts   chan struct{} // semaphore of instance starts in progress
	closed   bool
	// waiting is set once Close waits for wg: from then on no goroutine
	// may be added to it (see spawn).
	waiting bool

	stopReaper context.CancelFunc
	wg         sync.WaitGroup // reaper and instance stops
}

// New returns a running scheduler; Close stops it.
func New(cfg Config) *Scheduler {
	if cfg.KeepAlive == "" {
		cfg.KeepAlive = "hearth"
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 2 * time.Second
	}
	if cfg.StartConcurrency <= 0 {
		cfg.StartConcurrency = max(2, runtime.NumCPU())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(prometheus.NewRegistry())
	}
	s := &Scheduler{
		cfg:      cfg,
		log:      cfg.Logger,
		pools:    make(map[string]*pool),
		current:  make(map[string]*pool),
		policies: make(map[string]keepalive.Policy),
		starts:   make(chan struct{}, cfg.StartConcurrency),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopReaper = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.tickLoop(ctx)
	}()
	return s
}

// Outcome describes how an invocation was placed.
type Outcome struct {
	Cold bool // a new instance was started for it
}

// Invoke runs req on an instance of fn, starting one if needed.
func (s *Scheduler) Invoke(ctx context.Context, fn *Function, req *driver.Request) (*driver.Response, Outcome, error) {
	p, err := s.pool(fn)
	if err != nil {
		return nil, Outcome{}, err
	}
	in, cold, err := p.acquire(ctx)
	if err != nil {
		return nil, Outcome{}, err
	}
	resp, err := in.inst.Invoke(ctx, req)
	broken := false
	if err != nil {
		if hc, ok := in.inst.(driver.HealthChecker); ok {
			broken = !hc.Healthy()
		} else {
			broken = errors.Is(err, driver.ErrStopped)
		}
	}
	p.release(in, broken)
	if resp != nil && cold {
		resp.Cold = true
	}
	return resp, Outcome{Cold: cold || (resp != nil && resp.Cold)}, err
}

// Status reports the live state of a function's instances and the last
// sizing decision with its reason.
func (s *Scheduler) Status(name string) api.FunctionStatus {
	s.mu.Lock()
	var ps []*pool
	for _, p := range s.pools {
		if p.fn.Spec.Function == name {
			ps = append(ps, p)
		}
	}
	cur := s.current[name]
	s.mu.Unlock()
	var st api.FunctionStatus
	for _, p := range ps {
		p.mu.Lock()
		st.Instances += len(p.instances)
		st.Starting += p.starting
		for _, in := range p.instances {
			st.InFlight += in.inflight
			if in.inflight == 0 {
				st.Idle++
			}
		}
		st.QueueDepth += p.waiting
		if p == cur {
			st.Desired = p.decision.Desired
			st.Panic = p.decision.Panic
			st.Reason = p.decision.Reason
			st.KeepAlive = p.policy.Name()
		}
		p.mu.Unlock()
	}
	return st
}

// Remove stops every instance of the named function (all versions) and
// waits for in-flight invocations on them to finish or ctx to end.
func (s *Scheduler) Remove(ctx context.Context, name string) {
	s.mu.Lock()
	var ps []*pool
	for key, p := range s.pools {
		if p.fn.Spec.Function == name {
			ps = append(ps, p)
			delete(s.pools, key)
		}
	}
	delete(s.current, name)
	for _, pol := range s.policies {
		pol.Forget(name)
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.retire()
	}
	for _, p := range ps {
		p.wait(ctx)
	}
}

// Close stops all instances and the reaper. In-flight invocations should
// have drained already (the gateway drains before closing the scheduler);
// Close waits for the rest until ctx ends.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ps := make([]*pool, 0, len(s.pools))
	for _, p := range s.pools {
		ps = append(ps, p)
	}
	s.pools = map[string]*pool{}
	s.current = map[string]*pool{}
	s.mu.Unlock()
	s.stopReaper()
	for _, p := range ps {
		p.retire()
	}
	for _, p := range ps {
		p.wait(ctx)
	}
	s.mu.Lock()
	s.waiting = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scheduler: instances still stopping: %w", ctx.Err())
	}
}

// pool returns the pool for fn, creating it and retiring older versions.
func (s *Scheduler) pool(fn *Function) (*pool, error) {
	key := fn.Spec.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pools[key]; ok && !p.retired {
		return p, nil
	}
	if s.closed {
		return nil, ErrClosed
	}
	drv, ok := s.cfg.Drivers[fn.Isolation]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoDriver, fn.Isolation)
	}
	if old := s.current[fn.Spec.Function]; old != nil && old.fn.Spec.Version > fn.Spec.Version {
		// A request raced a deploy and carries an older version: serve it
		// on the newer pool rather than resurrecting the old one.
		return old, nil
	}
	polName := fn.KeepAlive
	if polName == "" {
		polName = s.cfg.KeepAlive
	}
	pol, ok := s.policies[polName]
	if !ok {
		var err error
		if pol, err = keepalive.New(polName); err != nil {
			return nil, err
		}
		s.policies[polName] = pol
	}
	p := s.newPool(fn, drv, pol)
	s.pools[key] = p
	if old := s.current[fn.Spec.Function]; old != nil {
		delete(s.pools, old.fn.Spec.Key())
		go old.retire() // does not block on the scheduler lock
	}
	s.current[fn.Spec.Function] = p
	return p, nil
}

func (s *Scheduler) tickLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		ps := make([]*pool, 0, len(s.pools))
		for _, p := range s.pools {
			ps = append(ps, p)
		}
		s.mu.Unlock()
		now := s.cfg.Now()
		for _, p := range ps {
			p.tick(now)
		}
	}
}

// spawn runs f in a goroutine owned by the scheduler (Close waits for it).
// Once Close is waiting it runs f synchronously instead.
func (s *Scheduler) spawn(f func()) {
	s.mu.Lock()
	if s.waiting {
		s.mu.Unlock()
		f()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// stopInstance stops inst asynchronously.
func (s *Scheduler) stopInstance(fn string, inst driver.Instance) {
	s.spawn(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := inst.Stop(ctx); err != nil {
			s.log.Warn("stopping instance", "function", fn, "err", err)
		}
	})
}
