package async

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/manifest"
)

// pullWait is how long one pull request waits at the server for a message.
const pullWait = 10 * time.Second

// work is one worker: pull one message, run it, repeat until Close.
func (q *Queue) work() {
	errDelay := 50 * time.Millisecond
	for q.fetchCtx.Err() == nil {
		ctx, cancel := context.WithTimeout(q.fetchCtx, pullWait)
		msg, err := q.cons.Next(jetstream.FetchContext(ctx))
		cancel()
		if err != nil {
			if q.fetchCtx.Err() != nil {
				return
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) {
				continue
			}
			q.log.Warn("async: pulling", "err", err)
			select {
			case <-time.After(errDelay):
			case <-q.fetchCtx.Done():
				return
			}
			errDelay = min(2*errDelay, 5*time.Second)
			continue
		}
		errDelay = 50 * time.Millisecond
		q.handle(msg)
	}
}

// job is one delivery being handled.
type job struct {
	msg  jetstream.Msg
	env  *envelope
	body []byte
	rec  api.InvocationStatus // the status record as it will be stored
}

func (q *Queue) handle(msg jetstream.Msg) {
	ctx := q.runCtx
	env, body, err := decode(msg.Data())
	if err != nil {
		q.log.Error("async: dropping a malformed message", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	meta, err := msg.Metadata()
	if err != nil {
		q.log.Error("async: message without metadata", "subject", msg.Subject(), "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if env.ID == "" {
		env.ID = seqID(env.Rand, meta.Sequence.Stream)
	}
	j := &job{msg: msg, env: env, body: body}

	if !q.claim(env.ID) {
		// Delivered again while this process still runs it (it stalled
		// past the ack-wait): leave it to the running attempt.
		_ = msg.NakWithDelay(q.cfg.AckWait)
		return
	}
	defer q.release(env.ID)

	// A message delivered for the first time under a fresh random id has
	// no status record: nothing can have written one. Anything else may.
	fresh := meta.NumDelivered == 1 && env.Series == 0 && msg.Headers().Get(jetstream.MsgIDHeader) == ""
	var (
		rec   api.InvocationStatus
		found bool
	)
	if !fresh {
		rec, found, err = q.getStatus(ctx, env.ID)
		if err != nil {
			q.log.Warn("async: reading status; will retry", "id", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	attempts := 0
	if found {
		switch {
		case rec.Replays > env.Series:
			// Superseded by a replay: a stale copy (idempotent re-enqueue).
			q.ack(j)
			return
		case rec.Replays == env.Series && rec.Final():
			// Finished before a crash took the ack, or an idempotent
			// re-enqueue past the duplicate window: never run it again.
			// Destinations are idempotent, so deliver them again in case
			// the crash came first.
			j.rec = rec
			q.fireFunctionDestination(ctx, j)
			q.ack(j)
			return
		case rec.Replays == env.Series:
			attempts = rec.Attempts
		}
	} else if meta.NumDelivered > 1 {
		// Delivered before without leaving a record. Only the first
		// delivery can have run without one (a redelivery stores its
		// running record before it runs; the others were put back
		// before running), so at most that one attempt was cut short by
		// a crash.
		attempts = 1
	}
	now := q.cfg.Now()
	j.rec = api.InvocationStatus{
		ID: env.ID, Function: env.Function, Status: api.StatusRunning,
		Attempts: attempts, Replays: env.Series, EnqueuedAt: env.enqueuedAt().UTC(),
	}
	if found && rec.Replays == env.Series {
		j.rec.Error, j.rec.Response = rec.Error, rec.Response
		if rec.Status == api.StatusQueued && now.Before(rec.NextAttemptAt) {
			// Delivered before its backoff ended (after a restart).
			_ = msg.NakWithDelay(rec.NextAttemptAt.Sub(now))
			return
		}
	}

	retry, dests, ok := q.cfg.Policy(env.Function)
	if !ok {
		q.deadLetter(ctx, j, dests, api.ReasonNoFunc, fmt.Sprintf("function %q is not deployed", env.Function))
		return
	}
	retry = retry.Effective()
	maxAge := time.Duration(retry.MaxAge)
	if now.Sub(env.enqueuedAt()) > maxAge {
		q.deadLetter(ctx, j, dests, api.ReasonExpired, fmt.Sprintf("not started within its max age of %s", retry.MaxAge))
		return
	}
	if attempts >= retry.Attempts {
		// The last attempt was cut short by a crash.
		msg := j.rec.Error
		if msg == "" {
			msg = "the server stopped during the last attempt"
		}
		q.deadLetter(ctx, j, dests, api.ReasonExhausted, msg)
		return
	}

	j.rec.Attempts = attempts + 1
	j.rec.StartedAt = now.UTC()
	if !fresh {
		// A redelivery: store the attempt, so that a crash loop uses up
		// the attempts.
		if err := q.putStatus(ctx, &j.rec); err != nil {
			q.log.Warn("async: storing status; will retry", "id", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	}
	q.setRunning(&j.rec)

	resp, err := q.run(ctx, j)
	// Bookkeeping after the attempt must not be cut short by shutdown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case err != nil && q.runCtx.Err() != nil:
		// Shutting down: this attempt does not count; it runs again
		// after a restart.
		j.rec.Status, j.rec.Attempts = api.StatusQueued, attempts
		q.putStatusQuiet(&j.rec)
		_ = msg.Nak()
		return
	case err != nil && q.cfg.Throttled != nil && q.cfg.Throttled(err):
		// Throttled: does not count as an attempt (as with Lambda).
		j.rec.Status, j.rec.Attempts = api.StatusQueued, attempts
		delay := time.Duration(retry.Backoff)
		j.rec.NextAttemptAt = now.Add(delay).UTC()
		j.rec.Error = truncErr(err.Error())
		q.putStatusQuiet(&j.rec)
		_ = msg.NakWithDelay(delay)
		return
	}

	failed := err != nil || resp.Status >= 500 || resp.Status == http.StatusTooManyRequests
	if resp != nil {
		j.rec.Response = q.storedResponse(resp)
	}
	if !failed {
		j.rec.Status = api.StatusSucceeded
		j.rec.Error = ""
		j.rec.FinishedAt = q.cfg.Now().UTC()
		j.rec.NextAttemptAt = time.Time{}
		if err := q.putStatus(ctx, &j.rec); err != nil {
			// Not acked: it runs again, which at-least-once allows.
			q.log.Error("async: storing the result", "id", env.ID, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return
		}
		q.fireDestination(ctx, j, dests.OnSuccess)
		q.ack(j)
		return
	}

	errMsg := ""
	if err != nil {
		errMsg = err.Error()
	} else {
		errMsg = fmt.Sprintf("function answered HTTP %d", resp.Status)
	}
	j.rec.Error = truncErr(errMsg)
	if j.rec.Attempts >= retry.Attempts {
		q.deadLetter(ctx, j, dests, api.ReasonExhausted, j.rec.Error)
		return
	}
	delay := retry.Delay(j.rec.Attempts)
	next := q.cfg.Now().Add(delay)
	if next.Sub(env.enqueuedAt()) > maxAge {
		q.deadLetter(ctx, j, dests, api.ReasonExpired,
			fmt.Sprintf("%s; the next attempt would start after its max age of %s", j.rec.Error, retry.MaxAge))
		return
	}
	j.rec.Status = api.StatusQueued
	j.rec.NextAttemptAt = next.UTC()
	q.putStatusQuiet(&j.rec)
	if err := msg.NakWithDelay(delay); err != nil {
		q.log.Warn("async: nak", "id", env.ID, "err", err)
	}
}

// run executes one attempt, keeping the message in progress meanwhile.
func (q *Queue) run(ctx context.Context, j *job) (*driver.Response, error) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(q.cfg.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if err := j.msg.InProgress(); err != nil {
					q.log.Warn("async: reporting progress", "id", j.env.ID, "err", err)
				}
			case <-stop:
				return
			}
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()

	hdr := j.env.Header.Clone()
	if hdr == nil {
		hdr = make(http.Header)
	}
	hdr.Set("X-Hearth-Attempt", strconv.Itoa(j.rec.Attempts))
	req := &driver.Request{
		ID:       j.env.ID,
		Method:   j.env.Method,
		Path:     j.env.Path,
		RawQuery: j.env.Query,
		Header:   hdr,
		Body:     j.body,
	}
	resp, err := q.cfg.Invoke(ctx, j.env.Function, req)
	if err == nil && resp == nil {
		err = errors.New("no response")
	}
	return resp, err
}

// deadLetter records a final failure: a dead-letter entry, the failed
// status, the failure destination, then the ack.
func (q *Queue) deadLetter(ctx context.Context, j *job, dests manifest.Destinations, reason, errMsg string) {
	now := q.cfg.Now().UTC()
	j.rec.Status = api.StatusFailed
	j.rec.Error = truncErr(errMsg)
	j.rec.FinishedAt = now
	j.rec.NextAttemptAt = time.Time{}
	dl := api.DeadLetter{
		ID: j.env.ID, Function: j.env.Function, Reason: reason, Attempts: j.rec.Attempts,
		Error: j.rec.Error, Method: j.env.Method, Path: j.env.Path, BodySize: len(j.body),
		EnqueuedAt: j.rec.EnqueuedAt, FailedAt: now, Replays: j.env.Series,
	}
	if err := q.publishDeadLetter(ctx, dl, j.msg.Data()); err != nil {
		q.log.Error("async: writing dead letter; will retry", "id", j.env.ID, "err", err)
		_ = j.msg.NakWithDelay(time.Second)
		return
	}
	if err := q.putStatus(ctx, &j.rec); err != nil {
		q.log.Error("async: storing failed status; will retry", "id", j.env.ID, "err", err)
		_ = j.msg.NakWithDelay(time.Second)
		return
	}
	q.log.Info("async: invocation failed for good", "id", j.env.ID, "function", j.env.Function, "reason", reason, "attempts", j.rec.Attempts, "err", j.rec.Error)
	q.fireDestination(ctx, j, dests.OnFailure)
	q.ack(j)
}

func (q *Queue) ack(j *job) {
	if err := j.msg.Ack(); err != nil {
		q.log.Warn("async: ack", "id", j.env.ID, "err", err)
	}
	if h := q.cfg.testHookFinished; h != nil && j.rec.Final() {
		h(j.env.ID)
	}
}

func (q *Queue) putStatusQuiet(rec *api.InvocationStatus) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.putStatus(ctx, rec); err != nil {
		q.log.Warn("async: storing status", "id", rec.ID, "err", err)
	}
}

func (q *Queue) claim(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.running[id]; ok {
		return false
	}
	q.running[id] = nil
	return true
}

// setRunning keeps a copy of the record of an attempt that started, for
// Status.
func (q *Queue) setRunning(rec *api.InvocationStatus) {
	cp := *rec
	q.mu.Lock()
	q.running[rec.ID] = &cp
	q.mu.Unlock()
}

// runningStatus returns the record of an attempt running in this process.
func (q *Queue) runningStatus(id string) (api.InvocationStatus, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if rec := q.running[id]; rec != nil {
		return *rec, true
	}
	return api.InvocationStatus{}, false
}

func (q *Queue) release(id string) {
	q.mu.Lock()
	delete(q.running, id)
	q.mu.Unlock()
}
