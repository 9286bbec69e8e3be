// Package autoscale decides how many instances a function should have, from
// the number of requests in flight. It is a port of the rules of Knative's
// Pod Autoscaler (KPA, knative.dev/serving pkg/autoscaler/scaling) without
// its Kubernetes plumbing: one Autoscaler per function, fed by the scheduler,
// with time passed in so every rule runs under a fake clock in tests.
//
// # The model
//
// The scheduler calls Record whenever the function's in-flight count changes
// (or on a timer); the count should include requests waiting in the queue,
// as Knative's activator reports the requests it buffers. The signal is a
// step function, integrated over time in one-second buckets, so a window
// average is time-weighted: how often Record is called does not bias it.
//
// Every Config.TickInterval (2 s) the scheduler calls Decide with the number
// of ready instances and applies Decision.Desired. Decide:
//
//  1. averages in-flight over the stable window (60 s) and the panic window
//     (6 s); while the function is younger than a window, over its life;
//  2. divides each by the target per instance, Target × Utilisation
//     (concurrency × 0.7), rounding up: the stable and panic instance counts;
//  3. bounds both by the rate limits: at most MaxScaleUpRate × ready (1000×)
//     and at least ready / MaxScaleDownRate (½) — ready counts as 1 at zero;
//  4. panics when the panic count reaches PanicThreshold (2×) the ready
//     instances. While panicking the desired count is the larger of the two
//     counts and never falls (scale up fast, never down); panic ends once a
//     whole stable window passes without the condition. Otherwise the stable
//     count is desired;
//  5. with ScaleDownDelay, holds the largest count desired in that delay;
//  6. clamps to [Min, Max];
//  7. scales to zero only when Min is 0, the count has been zero — so the
//     whole stable window saw no request — and then stayed zero for
//     ScaleToZeroGrace (30 s); until then it keeps one instance. So an idle
//     function keeps its last instance for about 90 s, like Knative's
//     active → inactive (stable window) → zero (grace period) progression.
//
// Decide is the steady-state loop; Burst is the on-demand decision for
// requests that arrive while a function is at zero or short of slots: it
// says how many instances to start at once so that every queued request
// gets a slot, instead of starting one at a time (in Knative the activator
// pokes the autoscaler for this). Requests wait in the scheduler's bounded
// queue meanwhile; only a full queue is rejected.
//
// # Differences from Knative
//
// Hearth runs the autoscaler in the process that holds the requests, so
// there is no metric scraping, no activator in or out of the path and no
// target burst capacity; the scheduler's queue is always in the path. The
// autoscaler lives as long as the scheduler's pool and starts at zero in
// flight, so Knative's "start in panic mode after an autoscaler restart"
// rule is not needed. Requests per second as a scaling metric is not
// ported.
package autoscale
