package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Consumer settings of event and bucket triggers (stream triggers take
// theirs from the manifest).
const (
	busBatch       = 16
	busConcurrency = 2
	consumerAck    = 30 * time.Second
	fetchWait      = 5 * time.Second
)

// consumerTarget is the stream, filter subject and durable name of a
// consumer-based trigger.
func (r *runner) consumerTarget() (stream, filter, durable string) {
	durable = "hearth-" + r.fn + "-" + r.t.Name
	switch r.t.Type {
	case manifest.TriggerEvent:
		return events.Stream, events.Subject(r.t.Topic), durable
	case manifest.TriggerBucket:
		b := storeName(r.t.Bucket)
		return "OBJ_" + b, "$O." + b + ".M.>", durable
	default:
		if r.t.Durable != "" {
			durable = r.t.Durable
		}
		return r.t.Stream, r.t.Subject, durable
	}
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// runConsumer reads a stream through a durable pull consumer: Batch
// messages per pull, Concurrency pullers; a message is acked once its
// invocation is queued, or terminated if it is malformed.
func (r *runner) runConsumer(ctx context.Context) error {
	js := r.m.js
	if r.t.URL != "" {
		nc, closeConn, err := r.conn()
		if err != nil {
			return err
		}
		defer closeConn()
		if js, err = jetstream.New(nc); err != nil {
			return err
		}
	}
	streamName, filter, durable := r.consumerTarget()
	batch, conc := busBatch, busConcurrency
	if r.t.Type == manifest.TriggerStream {
		batch, conc = r.t.Batch, r.t.Concurrency
	}
	if r.t.Type == manifest.TriggerBucket {
		if _, err := r.m.buckets.store(ctx, r.t.Bucket, true); err != nil {
			return err
		}
	}
	s, err := js.Stream(ctx, streamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) && r.t.Type == manifest.TriggerStream {
		if r.t.URL != "" || r.t.Subject == "" {
			return fmt.Errorf("stream %s does not exist; create it, or give the trigger a subject so Hearth creates it on the node's NATS", streamName)
		}
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        streamName,
			Description: "created by Hearth for the stream trigger " + r.fn + "/" + r.t.Name,
			Subjects:    []string{r.t.Subject},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			// Bounded: outside publishers (hearth up --nats-listen) must not
			// fill the store that holds Hearth's own state.
			MaxBytes: createdStreamMaxBytes,
			MaxAge:   createdStreamMaxAge,
			Discard:  jetstream.DiscardOld,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, streamName)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", streamName, err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "Hearth trigger " + r.fn + "/" + r.t.Name,
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       consumerAck,
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 2*batch*conc),
		MaxWaiting:    max(512, 2*conc),
	})
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", durable, streamName, err)
	}
	r.setState(api.TriggerRunning, "")

	errc := make(chan error, conc)
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		wg.Wait()
	}()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.pull(wctx, cons, batch); err != nil {
				errc <- err
			}
		}()
	}
	tick := time.NewTicker(r.m.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-tick.C:
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := cons.Info(ictx)
			cancel()
			if err == nil {
				r.setLag(int64(info.NumPending) + int64(info.NumAckPending))
			} else if isNotFound(err) {
				return fmt.Errorf("consumer %s on %s was deleted", durable, streamName)
			}
		}
	}
}

// pull fetches and handles batches until ctx is done.
func (r *runner) pull(ctx context.Context, cons jetstream.Consumer, batch int) error {
	failures := 0
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, fetchWait)
		b, err := cons.Fetch(batch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				continue
			}
			if failures++; failures > 5 {
				return fmt.Errorf("pulling: %w", err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		failures = 0
		for msg := range b.Messages() {
			r.handleMsg(ctx, msg)
		}
		cancel()
	}
	return nil
}

func (r *runner) handleMsg(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	var e *events.Event
	var key string
	switch r.t.Type {
	case manifest.TriggerEvent:
		e, err = events.Unmarshal(msg.Data())
		key = fmt.Sprintf("ev/%s/%d", r.t.Name, meta.Sequence.Stream)
	case manifest.TriggerBucket:
		var skip bool
		e, skip, err = r.bucketEvent(msg, meta)
		if skip {
			_ = msg.Ack()
			return
		}
		key = fmt.Sprintf("obj/%s/%d", r.t.Name, meta.Sequence.Stream)
	default:
		e, err = events.ParseNATS(msg.Headers(), msg.Data())
		if err == nil && e == nil {
			ev := events.New("/streams/"+meta.Stream, events.TypeStream)
			ev.SetID(fmt.Sprintf("%s-%d", meta.Stream, meta.Sequence.Stream))
			ev.SetSubject(msg.Subject())
			ev.SetTime(meta.Timestamp.UTC())
			ct := ""
			if h := msg.Headers(); h != nil {
				ct = h.Get("Content-Type")
			}
			events.SetData(&ev, ct, msg.Data())
			e = &ev
		}
		key = fmt.Sprintf("st/%s/%s/%d", r.t.Name, meta.Stream, meta.Sequence.Stream)
	}
	if err != nil {
		r.drop(fmt.Errorf("message %d on %s: %w", meta.Sequence.Stream, msg.Subject(), err))
		_ = msg.Term()
		return
	}
	if _, err := r.fire(ctx, e, key, eventHops(e)); err != nil {
		if ctx.Err() != nil {
			_ = msg.Nak()
			return
		}
		r.drop(err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

// bucketEvent turns an object store meta message into an event; skip
// reports a message the trigger does not want (other event, other prefix).
func (r *runner) bucketEvent(msg jetstream.Msg, meta *jetstream.MsgMetadata) (*events.Event, bool, error) {
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(msg.Data(), &info); err != nil {
		return nil, false, fmt.Errorf("object metadata: %w", err)
	}
	op, typ := manifest.BucketPut, events.TypeObjectPut
	if info.Deleted {
		op, typ = manifest.BucketDelete, events.TypeObjectDelete
	}
	want := false
	for _, ev := range r.t.Events {
		want = want || ev == op
	}
	if !want || !strings.HasPrefix(info.Name, r.t.Prefix) {
		return nil, true, nil
	}
	e := events.New("/buckets/"+r.t.Bucket, typ)
	e.SetID(fmt.Sprintf("%s-%d", r.t.Bucket, meta.Sequence.Stream))
	e.SetSubject(info.Name)
	e.SetTime(meta.Timestamp.UTC())
	data, _ := json.Marshal(objectEvent{
		Bucket: r.t.Bucket, Key: info.Name, Op: op, Size: info.Size, Digest: info.Digest,
		ContentType: contentType(&info.ObjectMeta), ModTime: meta.Timestamp.UTC(),
	})
	events.SetData(&e, "application/json", data)
	return &e, false, nil
}

// objectEvent is the data of a bucket event.
type objectEvent struct {
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Op          string    `json:"op"` // put or delete
	Size        uint64    `json:"size"`
	Digest      string    `json:"digest,omitempty"`
	ContentType string    `json:"content_type,omitempty"`
	ModTime     time.Time `json:"mod_time"`
}
