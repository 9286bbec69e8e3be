package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/autoscale"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/keepalive"
)

// Causes of instance starts (hearth_instance_starts_total{cause}).
const (
	causeFromZero  = "scale_from_zero" // a request arrived with no instance
	causeBurst     = "burst"           // requests queued behind busy instances
	causeAutoscale = "autoscale"       // the periodic decision wanted more
	causePrewarm   = "prewarm"         // the keep-alive policy predicted an invocation
	causeMin       = "scale_min"       // scale.min
)

// pool holds the instances of one function version. Placement (acquire,
// release) is driven by requests; sizing (tick) by the autoscaler and the
// keep-alive policy.
type pool struct {
	s      *Scheduler
	fn     Function
	drv    driver.Driver
	as     *autoscale.Autoscaler
	policy keepalive.Policy
	info   keepalive.FuncInfo

	idleG, busyG, startingG, queueG, desiredG, panicG prometheus.Gauge
	coldC                                             prometheus.Counter

	mu        sync.Mutex
	instances []*instance
	starting  int
	waiting   int
	inflight  int // sum of instances' inflight
	// changed is closed (and replaced) whenever capacity may have freed up,
	// waking queued invocations to try again.
	changed  chan struct{}
	startErr error // last start failure, reported to waiters when nothing runs
	retired  bool
	drained  chan struct{} // closed when a retired pool has no instances left

	// The keep-alive window opened when the function last went idle.
	window       keepalive.Decision
	windowAt     time.Time
	windowActive bool
	decision     autoscale.Decision // last periodic decision, for Status
}

type instance struct {
	inst     driver.Instance
	inflight int
	lastUsed time.Time
	dead     bool
	// onDemand marks an instance started for waiting requests: the first
	// request it serves paid for a cold start.
	onDemand bool
}

func (s *Scheduler) newPool(fn *Function, drv driver.Driver, policy keepalive.Policy) *pool {
	name := fn.Spec.Function
	m := s.cfg.Metrics
	p := &pool{
		s:         s,
		fn:        *fn,
		drv:       drv,
		policy:    policy,
		idleG:     m.Instances.WithLabelValues(name, "idle"),
		busyG:     m.Instances.WithLabelValues(name, "busy"),
		startingG: m.Instances.WithLabelValues(name, "starting"),
		queueG:    m.QueueDepth.WithLabelValues(name),
		desiredG:  m.Desired.WithLabelValues(name),
		panicG:    m.Panic.WithLabelValues(name),
		coldC:     m.ColdStarts.WithLabelValues(name),
		changed:   make(chan struct{}),
		drained:   make(chan struct{}),
	}
	if p.fn.ScaleMax <= 0 {
		p.fn.ScaleMax = 1
	}
	if p.fn.ScaleMin > p.fn.ScaleMax {
		p.fn.ScaleMin = p.fn.ScaleMax
	}
	if p.fn.Spec.Concurrency <= 0 {
		p.fn.Spec.Concurrency = 1
	}
	p.info = keepalive.FuncInfo{MemoryMB: int(p.fn.Spec.MemoryBytes >> 20)}
	p.as = autoscale.New(autoscale.Config{
		Target: float64(p.fn.Spec.Concurrency),
		Min:    p.fn.ScaleMin,
		Max:    p.fn.ScaleMax,
	}, autoscale.ClockFunc(s.cfg.Now))
	return p
}

// acquire reserves a slot on an instance. When every instance is busy it
// queues (bounded) and starts as many instances as the queue needs at once.
func (p *pool) acquire(ctx context.Context) (*instance, bool, error) {
	now := p.s.cfg.Now()
	p.policy.Observe(p.fn.Spec.Function, now, p.info)
	var deadline <-chan time.Time
	queued := false
	defer func() {
		if queued {
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			p.queueG.Dec()
		}
	}()
	for {
		p.mu.Lock()
		if p.retired {
			p.mu.Unlock()
			return nil, false, driver.ErrStopped
		}
		p.windowActive = false // an arrival ends any keep-alive window
		if in := p.pickLocked(); in != nil {
			if in.inflight == 0 {
				p.idleG.Dec()
				p.busyG.Inc()
			}
			in.inflight++
			p.inflight++
			cold := in.onDemand
			in.onDemand = false
			p.as.Record(now, float64(p.inflight+p.waiting))
			p.mu.Unlock()
			if cold {
				p.coldC.Inc()
			}
			return in, cold, nil
		}
		if !queued {
			if p.waiting >= p.s.cfg.QueueSize {
				p.mu.Unlock()
				return nil, false, p.overload("queue_full")
			}
			p.waiting++
			queued = true
			p.queueG.Inc()
			p.as.Record(now, float64(p.inflight+p.waiting))
			wait := p.s.cfg.MaxQueueWait
			if wait <= 0 {
				wait = p.fn.Spec.Timeout
			}
			if wait <= 0 {
				wait = 30 * time.Second
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		} else if p.startErr != nil && len(p.instances) == 0 && p.starting == 0 {
			err := p.startErr
			p.mu.Unlock()
			return nil, false, err
		}
		// Start what the queue needs now, not one instance at a time.
		ready := p.liveLocked()
		n := p.as.Burst(p.inflight, p.waiting, ready, p.starting)
		if n == 0 && ready+p.starting == 0 {
			n = 1
		}
		cause := causeBurst
		if ready == 0 {
			cause = causeFromZero
		}
		p.starting += n
		changed := p.changed
		p.mu.Unlock()
		p.startAsync(n, cause, true)
		select {
		case <-changed:
		case <-deadline:
			return nil, false, p.overload("queue_timeout")
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

func (p *pool) overload(reason string) error {
	p.s.cfg.Metrics.Rejected.WithLabelValues(p.fn.Spec.Function, reason).Inc()
	retry := time.Second
	if t := p.fn.Spec.Timeout; t > retry && reason == "queue_timeout" {
		retry = t
	}
	return &OverloadError{Function: p.fn.Spec.Function, Reason: reason, RetryAfter: retry}
}

// pickLocked returns the least-loaded live instance with a free slot.
func (p *pool) pickLocked() *instance {
	var best *instance
	for _, in := range p.instances {
		if in.dead || in.inflight >= p.fn.Spec.Concurrency {
			continue
		}
		if best == nil || in.inflight < best.inflight {
			best = in
			if in.inflight == 0 {
				break
			}
		}
	}
	return best
}

func (p *pool) liveLocked() int { return len(p.instances) }

// startAsync starts n instances in goroutines owned by the scheduler;
// p.starting was already increased by n.
func (p *pool) startAsync(n int, cause string, onDemand bool) {
	for range n {
		p.s.spawn(func() {
			if err := p.start(cause, onDemand); err != nil && !onDemand {
				p.s.log.Warn("starting instance", "function", p.fn.Spec.Function, "cause", cause, "err", err)
			}
		})
	}
}

// start starts one instance; p.starting was incremented by the caller.
func (p *pool) start(cause string, onDemand bool) error {
	p.startingG.Inc()
	p.s.cfg.Metrics.Starts.WithLabelValues(p.fn.Spec.Function, cause).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.StartTimeout)
	var inst driver.Instance
	var err error
	// Starts beyond the node's start concurrency wait their turn: sixteen
	// sandboxes starting at once on two CPUs all become ready late, while
	// started a few at a time the first ones serve the queue early.
	select {
	case p.s.starts <- struct{}{}:
		inst, err = p.drv.Start(ctx, p.fn.Spec)
		<-p.s.starts
	case <-ctx.Done():
		err = ctx.Err()
	}
	cancel()
	p.startingG.Dec()

	p.mu.Lock()
	p.starting--
	if err != nil {
		p.startErr = &StartError{Function: p.fn.Spec.Function, Err: err}
		p.broadcastLocked()
		p.checkDrainedLocked()
		p.mu.Unlock()
		return err
	}
	if p.retired {
		p.checkDrainedLocked()
		p.mu.Unlock()
		p.s.stopInstance(p.fn.Spec.Function, inst)
		return driver.ErrStopped
	}
	p.startErr = nil
	p.instances = append(p.instances, &instance{inst: inst, lastUsed: p.s.cfg.Now(), onDemand: onDemand})
	p.idleG.Inc()
	p.broadcastLocked()
	p.mu.Unlock()
	return nil
}

// release returns a slot. A broken instance is removed and stopped.
func (p *pool) release(in *instance, broken bool) {
	now := p.s.cfg.Now()
	p.mu.Lock()
	in.inflight--
	p.inflight--
	in.lastUsed = now
	var stop []driver.Instance
	if !in.dead { // a dead instance has already left the accounting
		switch {
		case broken:
			// Other invocations still on it see the failure themselves.
			in.dead = true
			p.busyG.Dec()
			p.removeLocked(in)
			stop = append(stop, in.inst)
		case in.inflight == 0 && p.retired:
			in.dead = true
			p.busyG.Dec()
			p.removeLocked(in)
			stop = append(stop, in.inst)
		case in.inflight == 0:
			p.busyG.Dec()
			p.idleG.Inc()
		}
	}
	p.as.Record(now, float64(p.inflight+p.waiting))
	if p.waiting > 0 {
		p.broadcastLocked()
	}
	idle := p.inflight == 0 && p.waiting == 0 && !p.retired
	p.checkDrainedLocked()
	p.mu.Unlock()

	if idle {
		// The function went idle: the keep-alive policy opens a window.
		d := p.policy.Idle(p.fn.Spec.Function, now)
		p.mu.Lock()
		if p.inflight == 0 && p.waiting == 0 {
			p.window, p.windowAt, p.windowActive = d, now, true
			if !d.Loaded(0) {
				stop = append(stop, p.shrinkLocked(p.fn.ScaleMin)...)
			}
		}
		p.mu.Unlock()
	}
	for _, inst := range stop {
		p.s.stopInstance(p.fn.Spec.Function, inst)
	}
}

// shrinkLocked removes idle instances, longest idle first, until at most
// keep remain, and returns them for stopping.
func (p *pool) shrinkLocked(keep int) []driver.Instance {
	var stop []driver.Instance
	for len(p.instances) > keep {
		var victim *instance
		for _, in := range p.instances {
			if in.inflight == 0 && (victim == nil || in.lastUsed.Before(victim.lastUsed)) {
				victim = in
			}
		}
		if victim == nil {
			break
		}
		victim.dead = true
		p.idleG.Dec()
		p.removeLocked(victim)
		stop = append(stop, victim.inst)
	}
	return stop
}

func (p *pool) removeLocked(in *instance) {
	for i, x := range p.instances {
		if x == in {
			p.instances = append(p.instances[:i], p.instances[i+1:]...)
			return
		}
	}
}

func (p *pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pool) checkDrainedLocked() {
	if p.retired && len(p.instances) == 0 && p.starting == 0 {
		select {
		case <-p.drained:
		default:
			close(p.drained)
		}
	}
}

// tick is the periodic sizing decision: the autoscaler sizes a busy
// function; the keep-alive window decides whether an idle one stays loaded
// or gets pre-warmed.
func (p *pool) tick(now time.Time) {
	p.mu.Lock()
	if p.retired {
		p.mu.Unlock()
		return
	}
	var expired bool
	if p.windowActive && now.Sub(p.windowAt) >= p.window.PreWarm+p.window.KeepAlive {
		expired = true
	}
	p.mu.Unlock()
	if expired {
		d := p.policy.Expired(p.fn.Spec.Function, now)
		p.mu.Lock()
		if p.windowActive { // no arrival in between
			p.window, p.windowAt = d, now
			p.windowActive = d.PreWarm+d.KeepAlive > 0
		}
		p.mu.Unlock()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retired {
		return
	}
	p.as.Record(now, float64(p.inflight+p.waiting))
	ready := p.liveLocked()
	d := p.as.Decide(now, ready)
	desired := d.Desired
	cause := causeAutoscale
	if p.inflight == 0 && p.waiting == 0 {
		// Idle: whether anything stays loaded is the keep-alive policy's
		// call; the autoscaler only bounds how fast a big pool shrinks.
		loaded := p.windowActive && p.window.Loaded(now.Sub(p.windowAt))
		switch {
		case !loaded:
			desired = 0
			d.Reason = "idle: keep-alive window closed (" + p.policy.Name() + ")"
		case desired == 0:
			desired = 1
			cause = causePrewarm
			d.Reason = fmt.Sprintf("idle: keep-alive (%s) keeps one instance loaded until %s", p.policy.Name(), p.windowAt.Add(p.window.PreWarm+p.window.KeepAlive).UTC().Format(time.TimeOnly))
		case desired > ready:
			// Nothing runs: no reason to grow, only to shrink.
			desired = max(ready, 1)
			if ready == 0 {
				cause = causePrewarm
			}
		}
	}
	if desired < p.fn.ScaleMin {
		desired = p.fn.ScaleMin
		if ready+p.starting < desired {
			cause = causeMin
		}
	}
	if desired > p.fn.ScaleMax {
		desired = p.fn.ScaleMax
	}
	d.Desired = desired
	p.decision = d
	p.desiredG.Set(float64(desired))
	if d.Panic {
		p.panicG.Set(1)
	} else {
		p.panicG.Set(0)
	}
	if n := desired - ready - p.starting; n > 0 {
		p.starting += n
		p.startAsync(n, cause, false)
	} else if desired < ready {
		for _, inst := range p.shrinkLocked(desired) {
			p.s.stopInstance(p.fn.Spec.Function, inst)
		}
	}
}

// retire stops taking new invocations, stops idle instances now and busy
// ones when they finish.
func (p *pool) retire() {
	p.mu.Lock()
	if p.retired {
		p.mu.Unlock()
		return
	}
	p.retired = true
	stop := p.shrinkLocked(0)
	p.desiredG.Set(0)
	p.panicG.Set(0)
	p.broadcastLocked()
	p.checkDrainedLocked()
	p.mu.Unlock()
	for _, inst := range stop {
		p.s.stopInstance(p.fn.Spec.Function, inst)
	}
}

// wait blocks until a retired pool has no instances or ctx ends; then it
// stops whatever is left.
func (p *pool) wait(ctx context.Context) {
	select {
	case <-p.drained:
		return
	case <-ctx.Done():
	}
	p.mu.Lock()
	left := p.instances
	p.instances = nil
	for _, in := range left {
		in.dead = true
	}
	p.mu.Unlock()
	for _, in := range left {
		p.s.stopInstance(p.fn.Spec.Function, in.inst)
	}
}
