package scheduler

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/driver"
)

// pool holds the instances of one function version.
type pool struct {
	s   *Scheduler
	fn  Function
	drv driver.Driver

	idleG, busyG, startingG, queueG prometheus.Gauge
	coldC                           prometheus.Counter

	mu        sync.Mutex
	instances []*instance
	starting  int
	waiting   int
	// changed is closed (and replaced) whenever capacity may have freed up,
	// waking queued invocations to try again.
	changed chan struct{}
	retired bool
	// drained is closed when a retired pool has no instances left.
	drained chan struct{}
}

type instance struct {
	inst     driver.Instance
	inflight int
	lastUsed time.Time
	dead     bool
}

func (s *Scheduler) newPool(fn *Function, drv driver.Driver) *pool {
	name := fn.Spec.Function
	m := s.cfg.Metrics
	p := &pool{
		s:         s,
		fn:        *fn,
		drv:       drv,
		idleG:     m.Instances.WithLabelValues(name, "idle"),
		busyG:     m.Instances.WithLabelValues(name, "busy"),
		startingG: m.Instances.WithLabelValues(name, "starting"),
		queueG:    m.QueueDepth.WithLabelValues(name),
		coldC:     m.ColdStarts.WithLabelValues(name),
		changed:   make(chan struct{}),
		drained:   make(chan struct{}),
	}
	if p.fn.ScaleMax <= 0 {
		p.fn.ScaleMax = 1
	}
	if p.fn.Spec.Concurrency <= 0 {
		p.fn.Spec.Concurrency = 1
	}
	return p
}

// acquire reserves a slot on an instance, starting one when all are busy
// and scale.max allows, else waiting in the bounded queue.
func (p *pool) acquire(ctx context.Context) (*instance, bool, error) {
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
		if in := p.pickLocked(); in != nil {
			if in.inflight == 0 {
				p.idleG.Dec()
				p.busyG.Inc()
			}
			in.inflight++
			p.mu.Unlock()
			return in, false, nil
		}
		if len(p.instances)+p.starting < p.fn.ScaleMax {
			p.starting++
			p.mu.Unlock()
			in, err := p.start(ctx, true)
			if err != nil {
				return nil, false, err
			}
			return in, true, nil
		}
		if !queued {
			if p.waiting >= p.s.cfg.QueueSize {
				p.mu.Unlock()
				return nil, false, p.overload("queue_full")
			}
			p.waiting++
			queued = true
			p.queueG.Inc()
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
		}
		changed := p.changed
		p.mu.Unlock()
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

// start starts an instance; p.starting was incremented by the caller. With
// reserve, the new instance is returned with one slot taken.
func (p *pool) start(ctx context.Context, reserve bool) (*instance, error) {
	p.startingG.Inc()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.s.cfg.StartTimeout)
	inst, err := p.drv.Start(sctx, p.fn.Spec)
	cancel()
	p.startingG.Dec()

	p.mu.Lock()
	p.starting--
	if err != nil {
		p.broadcastLocked()
		p.mu.Unlock()
		return nil, &StartError{Function: p.fn.Spec.Function, Err: err}
	}
	if p.retired {
		p.mu.Unlock()
		p.s.stopInstance(p.fn.Spec.Function, inst)
		return nil, driver.ErrStopped
	}
	in := &instance{inst: inst, lastUsed: p.s.cfg.Now()}
	p.instances = append(p.instances, in)
	if reserve {
		in.inflight = 1
		p.busyG.Inc()
		p.coldC.Inc()
	} else {
		p.idleG.Inc()
	}
	// A new instance may have room for queued invocations too.
	p.broadcastLocked()
	p.mu.Unlock()
	return in, nil
}

// release returns a slot. A broken instance is removed and stopped.
func (p *pool) release(in *instance, broken bool) {
	p.mu.Lock()
	in.inflight--
	in.lastUsed = p.s.cfg.Now()
	var stop driver.Instance
	if !in.dead { // a dead instance has already left the accounting
		switch {
		case broken:
			// Other invocations still on it see the failure themselves.
			in.dead = true
			p.busyG.Dec()
			p.removeLocked(in)
			stop = in.inst
		case in.inflight == 0 && p.retired:
			in.dead = true
			p.busyG.Dec()
			p.removeLocked(in)
			stop = in.inst
		case in.inflight == 0:
			p.busyG.Dec()
			p.idleG.Inc()
		}
	}
	if p.waiting > 0 {
		p.broadcastLocked()
	}
	p.checkDrainedLocked()
	p.mu.Unlock()
	if stop != nil {
		p.s.stopInstance(p.fn.Spec.Function, stop)
	}
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

// reap stops instances idle for longer than the keep-alive, keeping
// scale.min, and starts instances up to scale.min.
func (p *pool) reap(now time.Time) {
	p.mu.Lock()
	if p.retired {
		p.mu.Unlock()
		return
	}
	var stop []driver.Instance
	live := len(p.instances)
	for i := 0; i < len(p.instances); {
		in := p.instances[i]
		if live > p.fn.ScaleMin && in.inflight == 0 && now.Sub(in.lastUsed) >= p.s.cfg.KeepAlive {
			in.dead = true
			p.idleG.Dec()
			p.instances = append(p.instances[:i], p.instances[i+1:]...)
			stop = append(stop, in.inst)
			live--
			continue
		}
		i++
	}
	need := p.fn.ScaleMin - (len(p.instances) + p.starting)
	if need > 0 {
		p.starting += need
	}
	p.mu.Unlock()
	for _, inst := range stop {
		p.s.stopInstance(p.fn.Spec.Function, inst)
	}
	for range max(need, 0) {
		p.s.wg.Add(1)
		go func() {
			defer p.s.wg.Done()
			if _, err := p.start(context.Background(), false); err != nil {
				p.s.log.Warn("pre-warming instance", "function", p.fn.Spec.Function, "err", err)
			}
		}()
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
	var stop []driver.Instance
	for i := 0; i < len(p.instances); {
		in := p.instances[i]
		if in.inflight == 0 {
			in.dead = true
			p.idleG.Dec()
			p.instances = append(p.instances[:i], p.instances[i+1:]...)
			stop = append(stop, in.inst)
			continue
		}
		i++
	}
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
