package trigger

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
)

// hopsExtension is the CloudEvents extension attribute that counts how
// many emitted events led to an event.
const hopsExtension = "hearthhops"

// HeaderFiredAt carries when the trigger queued the invocation (RFC 3339,
// nanoseconds); the trigger delay metric counts from it.
const HeaderFiredAt = "X-Hearth-Fired-At"

// Headers Hearth puts on a response that carried X-Hearth-Emit, in place
// of it: the id of the event published, or why none was.
const (
	HeaderEventID   = "X-Hearth-Event-Id"
	HeaderEmitError = "X-Hearth-Emit-Error"
)

// AfterInvoke is called by the asynchronous queue's invoke function after
// every attempt (before the result is recorded). For a triggered
// invocation it counts the attempt's result in the trigger's counters and
// metrics. For any asynchronous invocation it handles X-Hearth-Emit (see
// emitFrom), so the stored response shows what happened to the event.
func (m *Manager) AfterInvoke(ctx context.Context, fn string, req *driver.Request, started time.Time, resp *driver.Response, err error) {
	if name := req.Header.Get(HeaderTrigger); name != "" {
		// http triggers run synchronously (AfterSync); a request that
		// names one here is not its firing.
		if r := m.runner(fn, name); r != nil && r.t.Type != manifest.TriggerHTTP {
			r.result(failedResult(resp, err))
			if req.Header.Get("X-Hearth-Attempt") == "1" {
				if t, perr := time.Parse(time.RFC3339Nano, req.Header.Get(HeaderFiredAt)); perr == nil {
					m.met.delay.WithLabelValues(r.t.Type).Observe(started.Sub(t).Seconds())
				}
			}
		}
	}
	m.emitFrom(ctx, fn, req, resp, err)
}

// AfterSync is called by the gateway after every synchronous invocation
// (/fn/{name}/... and the routes of http triggers), before the response
// is written. For an http trigger's route it counts the firing and its
// result. For any invocation it handles X-Hearth-Emit (see emitFrom)
// before the caller sees the response, so a caller that got the response
// of a function that emitted an event knows the event is stored.
func (m *Manager) AfterSync(ctx context.Context, fn string, req *driver.Request, resp *driver.Response, err error) {
	if name := req.Header.Get(HeaderTrigger); name != "" && req.Header.Get(HeaderTriggerType) == manifest.TriggerHTTP {
		if r := m.runner(fn, name); r != nil && r.t.Type == manifest.TriggerHTTP {
			r.fired.Add(1)
			r.cFired.Inc()
			r.markFired(req.ID)
			r.result(failedResult(resp, err))
		}
	}
	m.emitFrom(ctx, fn, req, resp, err)
}

// failedResult says whether an attempt failed, and why.
func failedResult(resp *driver.Response, err error) (bool, string) {
	switch {
	case err != nil:
		return true, err.Error()
	case resp == nil:
		return true, "no response"
	case resp.Status >= 500 || resp.Status == http.StatusTooManyRequests:
		return true, fmt.Sprintf("function answered HTTP %d", resp.Status)
	}
	return false, ""
}

// emitFrom publishes the event a function's response asks for with
// X-Hearth-Emit: <topic>, if the invocation succeeded (status < 300): the
// response body as the data of a new event (source /functions/<name>, type
// the topic, id the invocation id, so a retried invocation does not emit
// twice within the bus's duplicate window), or, if the response is itself
// a CloudEvent (structured, or binary ce-* headers), that event with its
// source set to /functions/<name>. It
// rewrites the response's headers: X-Hearth-Emit is removed, and
// X-Hearth-Event-Id (the event's id) or X-Hearth-Emit-Error (why nothing
// was published: a failed invocation, a topic nobody subscribes to, a
// malformed event, a chain of emitted events too long) is added.
//
// This is how functions publish events back without network access or a
// key: it works for every isolation tier and contract, synchronous or not.
func (m *Manager) emitFrom(ctx context.Context, fn string, req *driver.Request, resp *driver.Response, err error) {
	if resp == nil || resp.Header == nil {
		return
	}
	topic := resp.Header.Get(HeaderEmit)
	if topic == "" {
		return
	}
	resp.Header.Del(HeaderEmit)
	switch {
	case err != nil:
		// The failure itself is what gets reported.
		resp.Header.Set(HeaderEmitError, "not emitted: the invocation failed")
		return
	case resp.Status >= 300:
		resp.Header.Set(HeaderEmitError, fmt.Sprintf("not emitted: the function answered HTTP %d", resp.Status))
		return
	}
	id, err := m.emit(ctx, fn, req, resp, topic)
	if err == nil {
		resp.Header.Set(HeaderEventID, id)
		return
	}
	msg := strings.Join(strings.Fields(err.Error()), " ") // one header line
	resp.Header.Set(HeaderEmitError, msg)
	m.log.Warn("trigger: event not emitted", "function", fn, "invocation", req.ID, "topic", topic, "err", msg)
	if r := m.runner(fn, req.Header.Get(HeaderTrigger)); r != nil {
		r.setLastErr("emitting an event: " + msg)
	}
}

func (m *Manager) emit(ctx context.Context, fn string, req *driver.Request, resp *driver.Response, topic string) (string, error) {
	hops, _ := strconv.Atoi(req.Header.Get(HeaderEventHops))
	if hops >= MaxHops {
		return "", chainError(hops)
	}
	e, err := events.Parse(resp.Header, resp.Body)
	if err != nil {
		return "", err
	}
	if e == nil {
		ev := events.New("/functions/"+fn, topic)
		ev.SetID(req.ID)
		events.SetData(&ev, resp.Header.Get("Content-Type"), resp.Body)
		e = &ev
	} else {
		// As on the local endpoint: a function cannot speak for another
		// source.
		e.SetSource("/functions/" + fn)
	}
	acc, err := m.Emit(ctx, topic, e, hops)
	return acc.ID, err
}

// Emit publishes e, an event a function emitted while it handled an
// invocation hops emitted events deep (0 for one no emitted event led to),
// as the next link of that chain: the event's hops extension becomes one
// more than the larger of hops and the extension it already carries (a
// function that passes on the event it received keeps counting), and an
// event that would be more than MaxHops deep is refused with an error
// matching events.ErrChainTooLong. Otherwise as Publish.
//
// X-Hearth-Emit responses and the events endpoint of sandboxed functions
// (sandbox.Emitter) publish through it.
func (m *Manager) Emit(ctx context.Context, topic string, e *events.Event, hops int) (api.EventAccepted, error) {
	hops = max(hops, eventHops(e), 0)
	if hops >= MaxHops {
		return api.EventAccepted{}, chainError(hops)
	}
	e.SetExtension(hopsExtension, hops+1)
	return m.Publish(ctx, topic, e)
}

func chainError(hops int) error {
	return fmt.Errorf("%w: it would be event %d of the chain (limit %d)", events.ErrChainTooLong, hops+1, MaxHops)
}

// eventHops reads the hops extension of an event.
func eventHops(e *events.Event) int {
	v, ok := e.Extensions()[hopsExtension]
	if !ok {
		return 0
	}
	n, err := types.ToInteger(v)
	if err != nil {
		return 0
	}
	return int(n)
}
