package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
)

// Status returns the state of the asynchronous invocation id, or ErrNotFound.
func (q *Queue) Status(ctx context.Context, id string) (api.InvocationStatus, error) {
	if !validID(id) {
		return api.InvocationStatus{}, ErrNotFound
	}
	if rec, ok := q.runningStatus(id); ok {
		return rec, nil
	}
	rec, found, err := q.getStatus(ctx, id)
	if err != nil {
		return api.InvocationStatus{}, err
	}
	if found {
		return rec, nil
	}
	// No record yet: queued if its message is in the stream.
	var raw *jetstream.RawStreamMsg
	rand, seq, bySeq := splitSeqID(id)
	if bySeq {
		raw, err = q.stream.GetMsg(ctx, seq)
	} else {
		raw, err = q.stream.GetLastMsgForSubject(ctx, subjectPrefix+"*."+id)
	}
	if err == nil && bySeq {
		// The message at that sequence must be this invocation's.
		if env, _, derr := decode(raw.Data); derr != nil || env.ID != "" || env.Rand != rand {
			err = jetstream.ErrMsgNotFound
		}
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// It may have finished since the first look: a message
			// leaves the stream only after its final record is stored.
			if rec, found, err := q.getStatus(ctx, id); err != nil || found {
				return rec, err
			}
			return api.InvocationStatus{}, ErrNotFound
		}
		return api.InvocationStatus{}, fmt.Errorf("async: looking up %s: %w", id, err)
	}
	env, _, err := decode(raw.Data)
	if err != nil {
		return api.InvocationStatus{}, fmt.Errorf("async: invocation %s: %w", id, err)
	}
	return api.InvocationStatus{
		ID: id, Function: env.Function, Status: api.StatusQueued,
		Replays: env.Series, EnqueuedAt: env.enqueuedAt().UTC(),
	}, nil
}

func (q *Queue) getStatus(ctx context.Context, id string) (api.InvocationStatus, bool, error) {
	e, err := q.kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return api.InvocationStatus{}, false, nil
		}
		return api.InvocationStatus{}, false, fmt.Errorf("async: status of %s: %w", id, err)
	}
	var rec api.InvocationStatus
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return api.InvocationStatus{}, false, fmt.Errorf("async: status of %s: %w", id, err)
	}
	return rec, true, nil
}

func (q *Queue) putStatus(ctx context.Context, rec *api.InvocationStatus) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// A KV put is a publish on the bucket's subject for the key.
	if _, err := q.store(ctx, &nats.Msg{Subject: statusSubject + rec.ID, Data: data}, ""); err != nil {
		return fmt.Errorf("async: storing status of %s: %w", rec.ID, err)
	}
	if rec.Status != api.StatusRunning {
		// The attempt is over: Status reads the bucket from now on, not
		// the in-memory record of the running attempt.
		q.mu.Lock()
		if _, ok := q.running[rec.ID]; ok {
			q.running[rec.ID] = nil
		}
		q.mu.Unlock()
	}
	return nil
}

// storedResponse keeps what fits of a function's answer in a status record.
func (q *Queue) storedResponse(resp *driver.Response) *api.StoredResponse {
	if resp == nil {
		return nil
	}
	limit := min(MaxStoredBody, int(q.MaxBody())*3/4-16<<10) // base64 grows 4/3
	sr := &api.StoredResponse{Status: resp.Status, Body: resp.Body}
	if len(sr.Body) > limit {
		sr.Body, sr.Truncated = sr.Body[:max(0, limit)], true
	}
	size := 0
	for k, vs := range resp.Header {
		for _, v := range vs {
			size += len(k) + len(v)
			if size > 16<<10 {
				sr.Truncated = true
				break
			}
			if sr.Header == nil {
				sr.Header = make(http.Header)
			}
			sr.Header[k] = append(sr.Header[k], v)
		}
	}
	return sr
}

func truncErr(s string) string {
	if len(s) > maxErrLen {
		return s[:maxErrLen] + "…"
	}
	return s
}
