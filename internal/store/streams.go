package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
)

const (
	// DefaultTail is how many log entries Logs delivers when LogQuery.Tail is 0.
	DefaultTail = 100

	// hotStallWait bounds how long AppendLog and RecordInvocation wait for a
	// free slot when MaxPending publishes are outstanding.
	hotStallWait = 5 * time.Millisecond

	// scanBatch is how many messages a query asks the server for at once.
	scanBatch = 4096

	// scanIdle ends a non-following scan that sees no message for this long
	// (records that were pending can expire while being read).
	scanIdle = 5 * time.Second

	// maxInvocationLag is how long after its start an invocation record can
	// be written at most. Usage stops scanning at records stored later than
	// the window's end plus this.
	maxInvocationLag = 6 * time.Hour
)

// AppendLog queues a log entry for storage without waiting for it. Entries
// that cannot be stored are counted (Stats) and logged now and then, never
// returned; the call does not block for more than a few milliseconds.
func (s *Store) AppendLog(e api.LogEntry) {
	s.publishHot(logsSubjectPrefix, e.Function, e)
}

// RecordInvocation queues an invocation record for storage, like AppendLog;
// records are batched (see batcher).
func (s *Store) RecordInvocation(inv api.Invocation) {
	if !validName(inv.Function) {
		s.hotError(invSubjectPrefix+inv.Function, ErrInvalidName)
		return
	}
	s.batch.add(inv)
}

func (s *Store) publishHot(prefix, function string, v any) {
	subj := prefix + function
	if !validName(function) {
		s.hotError(subj, ErrInvalidName)
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		s.hotError(subj, err)
		return
	}
	s.publishHotRaw(prefix, function, data)
}

func (s *Store) publishHotRaw(prefix, function string, data []byte) {
	subj := prefix + function
	if s.hot.PublishAsyncPending() >= s.maxPending {
		s.hotDrop(subj)
		return
	}
	if _, err := s.hot.PublishAsync(subj, data, jetstream.WithStallWait(hotStallWait)); err != nil {
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			s.hotDrop(subj)
			return
		}
		s.hotError(subj, err)
	}
}

// Flush waits until every log entry and invocation record queued so far has
// been acknowledged by the server, or ctx is done.
func (s *Store) Flush(ctx context.Context) error {
	s.publishBatches()
	select {
	case <-s.hot.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store: flush: %d publishes outstanding: %w", s.hot.PublishAsyncPending(), ctx.Err())
	}
}

// LogQuery selects log entries of one function.
type LogQuery struct {
	Function string
	// Tail is how many of the latest entries to deliver first: 0 means
	// DefaultTail, negative means all. Ignored when Since is set.
	Tail int
	// Follow keeps delivering new entries until the context is done.
	Follow bool
	// Since, if set, delivers the entries stored at or after it instead of
	// the last Tail.
	Since time.Time
}

// Logs delivers log entries of q.Function to fn, oldest first. Without
// Follow it returns nil once the entries that existed when it was called
// have been delivered. With Follow it goes on delivering new entries until
// ctx is done (then it returns nil) or fn returns an error (which it
// returns).
func (s *Store) Logs(ctx context.Context, q LogQuery, fn func(api.LogEntry) error) error {
	if !validName(q.Function) {
		return fmt.Errorf("%w: %q", ErrInvalidName, q.Function)
	}
	subj := logsSubjectPrefix + q.Function
	info, err := s.logs.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return fmt.Errorf("store: logs: %w", err)
	}
	count := info.State.Subjects[subj]
	streamLast := info.State.LastSeq

	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subj},
		InactiveThreshold: time.Minute,
	}
	tail := q.Tail
	if tail == 0 {
		tail = DefaultTail
	}
	switch {
	case !q.Since.IsZero():
		since := q.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	case count == 0:
		if !q.Follow {
			return nil
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = streamLast + 1
	case tail < 0 || count <= uint64(tail):
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		start, err := s.tailStart(ctx, subj, info.State.FirstSeq, streamLast, uint64(tail))
		if err != nil {
			return err
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}

	// Without Follow, stop at the last entry that existed when we started.
	var until uint64
	if !q.Follow {
		last, err := s.logs.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: logs: %w", err)
		}
		until = last.Sequence
	}

	err = s.scan(ctx, LogsStream, cfg, q.Follow, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		var e api.LogEntry
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			s.log.Warn("store: skipping undecodable log entry", "seq", md.Sequence.Stream, "err", err)
		} else if err := fn(e); err != nil {
			return true, err
		}
		return !q.Follow && md.Sequence.Stream >= until, nil
	})
	if q.Follow && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// tailStart finds the sequence from which exactly tail messages on subj
// remain, by binary search over [first, last] on the pending count of
// throw-away consumers. The stream holds more than tail messages on subj.
func (s *Store) tailStart(ctx context.Context, subj string, first, last, tail uint64) (uint64, error) {
	pending := func(seq uint64) (uint64, error) {
		c, err := s.logs.CreateConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubject:     subj,
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       seq,
			AckPolicy:         jetstream.AckNonePolicy,
			InactiveThreshold: 10 * time.Second,
			MemoryStorage:     true,
		})
		if err != nil {
			return 0, fmt.Errorf("store: logs: %w", err)
		}
		info := c.CachedInfo()
		_ = s.logs.DeleteConsumer(ctx, info.Name)
		return info.NumPending, nil
	}
	// Invariant: pending(lo) >= tail; the answer is the largest such seq.
	lo, hi := first, last-tail+1
	if hi < lo {
		return lo, nil
	}
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		n, err := pending(mid)
		if err != nil {
			return 0, err
		}
		if n >= tail {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// scan reads a stream through an ordered consumer and calls fn with every
// message until fn says stop or fails. Unless follow is set, it also ends
// when the consumer has nothing pending (nil). If ctx ends first, it
// returns ctx.Err().
func (s *Store) scan(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, follow bool, fn func(jetstream.Msg, *jetstream.MsgMetadata) (stop bool, err error)) error {
	cons, err := s.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("store: %s consumer: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBatch))
	if err != nil {
		return fmt.Errorf("store: %s consumer: %w", stream, err)
	}
	defer it.Stop()
	if !follow {
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			return nil
		}
	}
	stopWatch := context.AfterFunc(ctx, it.Stop)
	defer stopWatch()

	var opts []jetstream.NextOpt
	if !follow {
		opts = append(opts, jetstream.NextMaxWait(scanIdle))
	}
	for {
		m, err := it.Next(opts...)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !follow && errors.Is(err, nats.ErrTimeout) {
				return nil
			}
			return fmt.Errorf("store: read %s: %w", stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("store: read %s: %w", stream, err)
		}
		stop, err := fn(m, md)
		if err != nil || stop {
			return err
		}
		if !follow && md.NumPending == 0 {
			return nil
		}
	}
}

// Usage aggregates the invocation records whose Start lies in [from, to)
// per function, sorted by function name. A zero from means since the oldest
// record, a zero to means until now. Records stored after Usage was called
// are not counted.
func (s *Store) Usage(ctx context.Context, from, to time.Time) ([]api.FunctionUsage, error) {
	info, err := s.invs.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	out := []api.FunctionUsage{}
	if info.State.Msgs == 0 {
		return out, nil
	}
	until := info.State.LastSeq

	cfg := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute}
	if !from.IsZero() {
		// A record is stored after its invocation started, so nothing in
		// the window was stored before from.
		start := from
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	var stopAt time.Time
	if !to.IsZero() {
		stopAt = to.Add(maxInvocationLag)
	}

	byFn := map[string]*api.FunctionUsage{}
	err = s.scan(ctx, InvocationsStream, cfg, false, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		if !stopAt.IsZero() && md.Timestamp.After(stopAt) {
			return true, nil
		}
		invs, err := decodeInvocations(m.Data())
		if err != nil {
			s.log.Warn("store: skipping undecodable invocation record", "seq", md.Sequence.Stream, "err", err)
			return md.Sequence.Stream >= until, nil
		}
		for _, inv := range invs {
			if inv.Start.Before(from) || !to.IsZero() && !inv.Start.Before(to) {
				continue
			}
			u := byFn[inv.Function]
			if u == nil {
				u = &api.FunctionUsage{Function: inv.Function}
				byFn[inv.Function] = u
			}
			u.Invocations++
			if inv.Status >= 500 || inv.Error != "" {
				u.Errors++
			}
			u.BilledMs += inv.BilledMs
			u.GBSeconds += inv.GBSeconds
		}
		return md.Sequence.Stream >= until, nil
	})
	if err != nil {
		return nil, err
	}
	for _, u := range byFn {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b api.FunctionUsage) int { return strings.Compare(a.Function, b.Function) })
	return out, nil
}
