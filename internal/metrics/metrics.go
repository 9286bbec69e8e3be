// Package metrics defines Hearth's Prometheus collectors. They are created on
// a registry passed in by the caller (no global registry), so tests and
// several nodes in one process never collide.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector the gateway and scheduler update.
type Metrics struct {
	Invocations *prometheus.CounterVec   // function, status
	Duration    *prometheus.HistogramVec // function
	ColdStarts  *prometheus.CounterVec   // function
	Starts      *prometheus.CounterVec   // function, cause
	Desired     *prometheus.GaugeVec     // function
	Panic       *prometheus.GaugeVec     // function
	Instances   *prometheus.GaugeVec     // function, state (idle|busy|starting)
	QueueDepth  *prometheus.GaugeVec     // function
	Rejected    *prometheus.CounterVec   // function, reason (queue_full|queue_timeout)
	Deploys     *prometheus.CounterVec   // result (ok|invalid|error)
	LogsDropped prometheus.Counter
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_invocations_total",
			Help: "Invocations by function and HTTP status class returned to the caller.",
		}, []string{"function", "status"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hearth_invocation_duration_seconds",
			Help:    "Time from the gateway receiving an invocation to its response, by function.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"function"}),
		ColdStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_cold_starts_total",
			Help: "Invocations that waited for a new instance to start.",
		}, []string{"function"}),
		Starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_instance_starts_total",
			Help: "Instances started, by cause (scale_from_zero, burst, autoscale, prewarm, scale_min).",
		}, []string{"function", "cause"}),
		Desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_desired_instances",
			Help: "Instance count wanted by the last sizing decision.",
		}, []string{"function"}),
		Panic: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_autoscaler_panic",
			Help: "1 while the function's autoscaler is in panic mode.",
		}, []string{"function"}),
		Instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_instances",
			Help: "Instances by function and state.",
		}, []string{"function", "state"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_queue_depth",
			Help: "Invocations waiting for capacity, by function.",
		}, []string{"function"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_rejected_total",
			Help: "Invocations answered 429 because the function was at capacity.",
		}, []string{"function", "reason"}),
		Deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_deploys_total",
			Help: "Deploy attempts by result.",
		}, []string{"result"}),
		LogsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_log_lines_dropped_total",
			Help: "Function log lines dropped because a line or an invocation exceeded its size limit.",
		}),
	}
	reg.MustRegister(m.Invocations, m.Duration, m.ColdStarts, m.Starts, m.Desired, m.Panic, m.Instances, m.QueueDepth, m.Rejected, m.Deploys, m.LogsDropped)
	return m
}

// Forget deletes the per-function series of a removed function.
func (m *Metrics) Forget(function string) {
	l := prometheus.Labels{"function": function}
	m.Invocations.DeletePartialMatch(l)
	m.Duration.DeletePartialMatch(l)
	m.ColdStarts.DeletePartialMatch(l)
	m.Starts.DeletePartialMatch(l)
	m.Desired.DeletePartialMatch(l)
	m.Panic.DeletePartialMatch(l)
	m.Instances.DeletePartialMatch(l)
	m.QueueDepth.DeletePartialMatch(l)
	m.Rejected.DeletePartialMatch(l)
}
