package trigger

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/async"
)

// metrics are the trigger collectors (see README's metrics table).
type metrics struct {
	fired, succeeded, failed, dropped *prometheus.CounterVec // function, trigger, type
	lag                               *prometheus.GaugeVec   // function, trigger, type
	delay                             *prometheus.HistogramVec
	asyncDepth, dlqSize               prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	labels := []string{"function", "trigger", "type"}
	m := &metrics{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_trigger_fired_total",
			Help: "Events a trigger turned into asynchronous invocations.",
		}, labels),
		succeeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_trigger_succeeded_total",
			Help: "Attempts of triggered invocations that succeeded.",
		}, labels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_trigger_failed_total",
			Help: "Attempts of triggered invocations that failed (they are retried per the function's retry policy).",
		}, labels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_trigger_dropped_total",
			Help: "Events a trigger could not deliver: malformed, or refused by the queue.",
		}, labels),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_trigger_lag",
			Help: "Events waiting in a trigger's consumer (stream, bucket, event), or due cron ticks not fired yet.",
		}, labels),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hearth_trigger_delay_seconds",
			Help:    "Time from a trigger receiving an event to the start of the invocation's attempt.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"type"}),
		asyncDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hearth_async_queue_depth",
			Help: "Asynchronous invocations in the queue (waiting, running or waiting for a retry).",
		}),
		dlqSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hearth_async_dlq_size",
			Help: "Invocations in the dead-letter queue.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.fired, m.succeeded, m.failed, m.dropped, m.lag, m.delay, m.asyncDepth, m.dlqSize)
	}
	return m
}

func (m *metrics) forget(fn, trigger, typ string) {
	lbl := map[string]string{"function": fn, "trigger": trigger, "type": typ}
	m.fired.Delete(lbl)
	m.succeeded.Delete(lbl)
	m.failed.Delete(lbl)
	m.dropped.Delete(lbl)
	m.lag.Delete(lbl)
}

// poll refreshes the queue gauges until the manager closes. Trigger lag is
// refreshed by each trigger.
func (m *Manager) poll() {
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	for {
		m.refreshQueueGauges()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) refreshQueueGauges() {
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	for _, g := range []struct {
		stream string
		gauge  prometheus.Gauge
	}{{async.Stream, m.met.asyncDepth}, {async.DLQStream, m.met.dlqSize}} {
		s, err := m.js.Stream(ctx, g.stream)
		if err != nil {
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			continue
		}
		g.gauge.Set(float64(info.State.Msgs))
	}
}
