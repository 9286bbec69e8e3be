package async

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Headers set on destination deliveries.
const (
	HeaderSourceID       = "X-Hearth-Source-Invocation-Id"
	HeaderSourceFunction = "X-Hearth-Source-Function"
	HeaderInvocationID   = "X-Hearth-Invocation-Id"
	HeaderStatus         = "X-Hearth-Status"
)

func (q *Queue) event(j *job) api.DestinationEvent {
	ev := api.DestinationEvent{
		ID: j.env.ID, Function: j.env.Function, Status: j.rec.Status, Attempts: j.rec.Attempts,
		Error: j.rec.Error, Response: j.rec.Response, Time: j.rec.FinishedAt,
	}
	return ev
}

// fireFunctionDestination delivers the destination of a final status again
// if it is a function (idempotent); used when a message is redelivered after
// its status became final.
func (q *Queue) fireFunctionDestination(ctx context.Context, j *job) {
	_, dests, ok := q.cfg.Policy(j.env.Function)
	if !ok {
		return
	}
	target := dests.OnSuccess
	if j.rec.Status == api.StatusFailed {
		target = dests.OnFailure
	}
	if target != "" && !manifest.IsURL(target) {
		q.fireDestination(ctx, j, target)
	}
}

// fireDestination sends the final status of j to target: a function name
// (queued here, idempotently) or a URL (POSTed in the background).
func (q *Queue) fireDestination(ctx context.Context, j *job, target string) {
	if target == "" {
		return
	}
	if j.env.Depth >= MaxDestinationDepth {
		q.log.Warn("async: destination chain too long; not delivering", "id", j.env.ID, "function", j.env.Function, "destination", target, "depth", j.env.Depth)
		return
	}
	body, err := json.Marshal(q.event(j))
	if err != nil {
		q.log.Error("async: encoding destination event", "id", j.env.ID, "err", err)
		return
	}
	if manifest.IsURL(target) {
		q.postCallback(target, j.env.ID, j.env.Function, j.rec.Status, body)
		return
	}
	hdr := http.Header{
		"Content-Type":       {"application/json"},
		HeaderSourceID:       {j.env.ID},
		HeaderSourceFunction: {j.env.Function},
	}
	key := "dest." + j.env.ID + "." + strconv.Itoa(j.env.Series) + "." + j.rec.Status
	_, err = q.enqueue(ctx, Request{
		Function: target, Method: http.MethodPost, Path: "/", Header: hdr, Body: body, IdempotencyKey: key,
	}, j.env.Depth+1)
	if err != nil {
		q.log.Error("async: queuing destination", "id", j.env.ID, "destination", target, "err", err)
	}
}

// postCallback POSTs body to url in a goroutine owned by the Queue, trying
// up to three times. It waits for a free slot if 64 are in flight.
func (q *Queue) postCallback(url, id, function, status string, body []byte) {
	select {
	case q.callbackSem <- struct{}{}:
	case <-q.runCtx.Done():
		return
	}
	q.callbacks.Add(1)
	go func() {
		defer q.callbacks.Done()
		defer func() { <-q.callbackSem }()
		delay := time.Second
		for try := 1; ; try++ {
			err := q.post(url, id, function, status, body)
			if err == nil {
				return
			}
			if try == 3 {
				q.log.Warn("async: callback failed; giving up", "id", id, "url", url, "err", err)
				return
			}
			select {
			case <-time.After(delay):
				delay *= 2
			case <-q.runCtx.Done():
				q.log.Warn("async: callback abandoned at shutdown", "id", id, "url", url, "err", err)
				return
			}
		}
	}()
}

func (q *Queue) post(url, id, function, status string, body []byte) error {
	req, err := http.NewRequestWithContext(q.runCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hearth-async")
	req.Header.Set(HeaderInvocationID, id)
	req.Header.Set(HeaderSourceFunction, function)
	req.Header.Set(HeaderStatus, status)
	resp, err := q.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
