package trigger

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/events"
)

// hopsExtension is the CloudEvents extension attribute that counts how
// many emitted events led to an event.
const hopsExtension = "hearthhops"

// HeaderFiredAt carries when the trigger queued the invocation (RFC 3339,
// nanoseconds); the trigger delay metric counts from it.
const HeaderFiredAt = "X-Hearth-Fired-At"

// AfterInvoke is called by the asynchronous queue's invoke function after
// every attempt (before the result is recorded). For a triggered
// invocation it counts the attempt's result in the trigger's metrics. For
// any asynchronous invocation that succeeded (status < 300) whose response
// carries the X-Hearth-Emit: <topic> header, it publishes an event on the
// bus: the response body, or, if the response is itself a structured
// CloudEvent (Content-Type: application/cloudevents+json), that event. The
// emitted event's id is derived from the invocation id, so a retried
// invocation does not emit twice within the bus's duplicate window.
//
// This is how functions publish events back without network access or a
// key: it works for every isolation tier and contract.
func (m *Manager) AfterInvoke(ctx context.Context, fn string, req *driver.Request, started time.Time, resp *driver.Response, err error) {
	failed := err != nil || resp == nil || resp.Status >= 500 || resp.Status == http.StatusTooManyRequests
	if name := req.Header.Get(HeaderTrigger); name != "" {
		if r := m.runner(fn, name); r != nil {
			if failed {
				r.failed.Add(1)
				r.cFailed.Inc()
				msg := "no response"
				if err != nil {
					msg = err.Error()
				} else if resp != nil {
					msg = fmt.Sprintf("function answered HTTP %d", resp.Status)
				}
				r.mu.Lock()
				r.lastErr = msg
				r.mu.Unlock()
			} else {
				r.succeeded.Add(1)
				r.cSucceeded.Inc()
			}
			if req.Header.Get("X-Hearth-Attempt") == "1" {
				if t, perr := time.Parse(time.RFC3339Nano, req.Header.Get(HeaderFiredAt)); perr == nil {
					m.met.delay.WithLabelValues(r.t.Type).Observe(started.Sub(t).Seconds())
				}
			}
		}
	}
	if err != nil || resp == nil || resp.Status >= 300 {
		return
	}
	topic := resp.Header.Get(HeaderEmit)
	if topic == "" {
		return
	}
	if err := m.emit(ctx, fn, req, resp, topic); err != nil {
		m.log.Warn("trigger: event not emitted", "function", fn, "invocation", req.ID, "topic", topic, "err", err)
		if r := m.runner(fn, req.Header.Get(HeaderTrigger)); r != nil {
			r.mu.Lock()
			r.lastErr = "emitting an event: " + err.Error()
			r.mu.Unlock()
		}
	}
}

func (m *Manager) emit(ctx context.Context, fn string, req *driver.Request, resp *driver.Response, topic string) error {
	hops, _ := strconv.Atoi(req.Header.Get(HeaderEventHops))
	if hops >= MaxHops {
		return fmt.Errorf("dropped: it would be the %d-th event in a chain of emitted events (limit %d)", hops+1, MaxHops)
	}
	e, err := events.Parse(resp.Header, resp.Body)
	if err != nil {
		return err
	}
	if e == nil {
		ev := events.New("/functions/"+fn, topic)
		ev.SetID(req.ID)
		events.SetData(&ev, resp.Header.Get("Content-Type"), resp.Body)
		e = &ev
	}
	e.SetExtension(hopsExtension, hops+1)
	_, err = m.Publish(ctx, topic, e)
	return err
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
