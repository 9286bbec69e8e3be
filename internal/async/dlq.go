package async

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
)

// Limits of DeadLetters.
const (
	DefaultListLimit = 100
	MaxListLimit     = 10000
)

// A dead-letter message's data is the api.DeadLetter's JSON, a newline, and
// the original queued message's data.
func (q *Queue) publishDeadLetter(ctx context.Context, dl api.DeadLetter, original []byte) error {
	meta, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	data := make([]byte, 0, len(meta)+1+len(original))
	data = append(append(append(data, meta...), '\n'), original...)
	msg := &nats.Msg{Subject: dlqPrefix + dl.Function + "." + dl.ID, Data: data}
	// Deduplicated: a crash between this publish and the ack writes it once.
	_, err = q.store(ctx, msg, "dl."+dl.ID+"."+strconv.Itoa(dl.Replays))
	return err
}

func decodeDeadLetter(data []byte) (api.DeadLetter, []byte, error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return api.DeadLetter{}, nil, errors.New("malformed dead letter")
	}
	var dl api.DeadLetter
	if err := json.Unmarshal(data[:i], &dl); err != nil {
		return api.DeadLetter{}, nil, fmt.Errorf("malformed dead letter: %w", err)
	}
	return dl, data[i+1:], nil
}

// DeadLetters lists the dead-letter queue, oldest first: all functions, or
// only function if it is not empty; at most limit entries (0 means
// DefaultListLimit).
func (q *Queue) DeadLetters(ctx context.Context, function string, limit int) ([]api.DeadLetter, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	filter := dlqPrefix + ">"
	if function != "" {
		if !validFunction(function) {
			return []api.DeadLetter{}, nil
		}
		filter = dlqPrefix + function + ".*"
	}
	cons, err := q.dlq.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("async: listing dead letters: %w", err)
	}
	out := []api.DeadLetter{}
	pending := int(cons.CachedInfo().NumPending)
	for len(out) < limit && pending > 0 {
		batch, err := cons.Fetch(min(limit-len(out), pending, 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("async: listing dead letters: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			dl, _, err := decodeDeadLetter(m.Data())
			if err != nil {
				continue
			}
			out = append(out, dl)
			if md, err := m.Metadata(); err == nil {
				pending = int(md.NumPending)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("async: listing dead letters: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

// Replay queues the dead-lettered invocation id again as a new series of
// attempts with the same id, removes its dead-letter entry, and returns its
// status (queued). ErrNotFound if id is not in the dead-letter queue.
func (q *Queue) Replay(ctx context.Context, id string) (api.InvocationStatus, error) {
	if q.isClosed() {
		return api.InvocationStatus{}, ErrClosed
	}
	if !validID(id) {
		return api.InvocationStatus{}, ErrNotFound
	}
	raw, err := q.dlq.GetLastMsgForSubject(ctx, dlqPrefix+"*."+id)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return api.InvocationStatus{}, ErrNotFound
		}
		return api.InvocationStatus{}, fmt.Errorf("async: dead letter %s: %w", id, err)
	}
	dl, original, err := decodeDeadLetter(raw.Data)
	if err != nil {
		return api.InvocationStatus{}, fmt.Errorf("async: dead letter %s: %w", id, err)
	}
	env, body, err := decode(original)
	if err != nil {
		return api.InvocationStatus{}, fmt.Errorf("async: dead letter %s: %w", id, err)
	}
	env.ID, env.Rand = id, "" // the new message carries its id (see envelope)
	rec, found, err := q.getStatus(ctx, id)
	if err != nil {
		return api.InvocationStatus{}, err
	}
	series := max(env.Series, dl.Replays)
	if found {
		series = max(series, rec.Replays)
	}
	env.Series = series + 1
	env.Enqueued = q.cfg.Now().UnixNano()
	// Status first, so a worker that picks the message up at once sees
	// the new series; a crash before the publish leaves the dead letter
	// in place to replay again.
	st := api.InvocationStatus{
		ID: id, Function: env.Function, Status: api.StatusQueued,
		Replays: env.Series, EnqueuedAt: env.enqueuedAt().UTC(),
	}
	if err := q.putStatus(ctx, &st); err != nil {
		return api.InvocationStatus{}, err
	}
	if _, err := q.publish(ctx, env, body, ""); err != nil {
		return api.InvocationStatus{}, err
	}
	if err := q.dlq.Purge(ctx, jetstream.WithPurgeSubject(raw.Subject)); err != nil {
		q.log.Warn("async: removing replayed dead letter", "id", id, "err", err)
	}
	return st, nil
}
