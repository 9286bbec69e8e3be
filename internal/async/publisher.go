package async

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publisher publishes messages to JetStream and waits for each one's
// acknowledgement, for any number of goroutines at once over one
// connection: what jetstream.PublishMsgAsync and a wait on its future do,
// with less work per message.
//
// Every message carries a reply subject of its own under one wildcard
// subscription, whose handler hands each acknowledgement to its waiter by
// the token at the end of the subject. The acknowledgement is parsed
// without reflection when it has the usual shape (parsePubAck). There are
// no futures and no timer per message: a ticker fails the waits older than
// the timeout, as the library's asynchronous publish timeout did.
// BenchmarkStore measures it against PublishMsgAsync.
type publisher struct {
	nc      *nats.Conn
	timeout time.Duration
	prefix  string // reply subjects are prefix + token
	sub     *nats.Subscription
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	closed  bool
	next    uint64 // last token
	waiting map[uint64]*pubWait
}

type pubWait struct {
	began time.Time
	ch    chan pubResult // capacity 1: the handler never blocks
}

type pubResult struct {
	ack pubAck
	err error
}

// pubAck is what an acknowledgement says when the message is stored.
type pubAck struct {
	Sequence  uint64
	Duplicate bool
}

// newPublisher subscribes to the acknowledgements of its messages on nc.
// A wait fails between timeout and about 1.1 × timeout after it began.
func newPublisher(nc *nats.Conn, timeout time.Duration) (*publisher, error) {
	p := &publisher{
		nc:      nc,
		timeout: timeout,
		prefix:  nc.NewInbox() + ".",
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiting: make(map[uint64]*pubWait),
	}
	sub, err := nc.Subscribe(p.prefix+"*", p.handle)
	if err != nil {
		return nil, fmt.Errorf("async: acknowledgement subscription: %w", err)
	}
	// Acknowledgements must never be dropped as a slow consumer's.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("async: acknowledgement subscription: %w", err)
	}
	p.sub = sub
	go p.sweep()
	return p, nil
}

// store publishes msg (setting its reply subject) and waits until JetStream
// acknowledges it, ctx ends, or the timeout passes.
func (p *publisher) store(ctx context.Context, msg *nats.Msg) (pubAck, error) {
	w := &pubWait{began: time.Now(), ch: make(chan pubResult, 1)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return pubAck{}, ErrClosed
	}
	p.next++
	tok := p.next
	p.waiting[tok] = w
	p.mu.Unlock()

	msg.Reply = p.prefix + strconv.FormatUint(tok, 36)
	if err := p.nc.PublishMsg(msg); err != nil {
		p.forget(tok)
		return pubAck{}, err
	}
	select {
	case r := <-w.ch:
		return r.ack, r.err
	case <-ctx.Done():
		p.forget(tok)
		return pubAck{}, ctx.Err()
	}
}

func (p *publisher) forget(tok uint64) {
	p.mu.Lock()
	delete(p.waiting, tok)
	p.mu.Unlock()
}

// handle delivers an acknowledgement to its waiter.
func (p *publisher) handle(m *nats.Msg) {
	tok, err := strconv.ParseUint(m.Subject[len(p.prefix):], 36, 64)
	if err != nil {
		return
	}
	p.mu.Lock()
	w := p.waiting[tok]
	delete(p.waiting, tok)
	p.mu.Unlock()
	if w == nil {
		return // its waiter gave up
	}
	var r pubResult
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		r.err = jetstream.ErrNoStreamResponse
	} else {
		r.ack, r.err = parsePubAck(m.Data)
	}
	w.ch <- r
}

// sweep fails the waits older than the timeout until close.
func (p *publisher) sweep() {
	defer close(p.done)
	t := time.NewTicker(p.timeout / 10)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for tok, w := range p.waiting {
			if time.Since(w.began) >= p.timeout {
				delete(p.waiting, tok)
				w.ch <- pubResult{err: jetstream.ErrAsyncPublishTimeout}
			}
		}
		p.mu.Unlock()
	}
}

// close stops the sweeper and fails every wait.
func (p *publisher) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for tok, w := range p.waiting {
		delete(p.waiting, tok)
		w.ch <- pubResult{err: ErrClosed}
	}
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	p.sub.Unsubscribe()
}

// parsePubAck reads a JetStream publish acknowledgement. The usual one,
// {"stream":"S","seq":N} with an optional "domain" and "duplicate":true, is
// read directly; anything else (an error, or a shape the server may send in
// a later version) through encoding/json. FuzzParsePubAck checks both
// agree.
func parsePubAck(data []byte) (pubAck, error) {
	if ack, ok := parseUsualPubAck(data); ok {
		return ack, nil
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
		jetstream.PubAck
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return pubAck{}, fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if resp.Error != nil {
		return pubAck{}, resp.Error // as the library returns it: errors.Is works on its code
	}
	if resp.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return pubAck{Sequence: resp.Sequence, Duplicate: resp.Duplicate}, nil
}

// parseUsualPubAck reads {"stream":"S"[,"domain":"D"],"seq":N[,"duplicate": true]}
// written as nats-server writes it (no other spaces, no escapes in the
// names). It reports false for anything else.
func parseUsualPubAck(b []byte) (pubAck, bool) {
	var ack pubAck
	rest, ok := bytes.CutPrefix(b, []byte(`{"stream":"`))
	if !ok {
		return ack, false
	}
	i := bytes.IndexByte(rest, '"')
	if i <= 0 || !plainString(rest[:i]) {
		return ack, false
	}
	rest = rest[i+1:]
	if r, ok := bytes.CutPrefix(rest, []byte(`,"domain":"`)); ok {
		i := bytes.IndexByte(r, '"')
		if i < 0 || !plainString(r[:i]) {
			return ack, false
		}
		rest = r[i+1:]
	}
	rest, ok = bytes.CutPrefix(rest, []byte(`,"seq":`))
	if !ok {
		return ack, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 20 || (n > 1 && rest[0] == '0') {
		return ack, false
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil {
		return ack, false
	}
	ack.Sequence = seq
	rest = rest[n:]
	for _, dup := range [][]byte{[]byte(`,"duplicate": true`), []byte(`,"duplicate":true`)} {
		if r, ok := bytes.CutPrefix(rest, dup); ok {
			ack.Duplicate, rest = true, r
			break
		}
	}
	if string(rest) != "}" {
		return ack, false
	}
	return ack, true
}

// plainString reports whether b, between quotes, is a JSON string that needs
// no unescaping: no backslash and no control character.
func plainString(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	return true
}
