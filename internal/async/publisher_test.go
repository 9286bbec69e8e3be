package async

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPublisher(t *testing.T) {
	st := openStore(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	js := st.JetStream()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PUBTEST", Subjects: []string{"pubtest.>"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	nc := js.Conn()
	p, err := newPublisher(nc, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()

	// Many goroutines at once: every message stored once, sequences distinct.
	var mu sync.Mutex
	seqs := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				ack, err := p.store(ctx, &nats.Msg{Subject: "pubtest.a", Data: fmt.Appendf(nil, "%d-%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seqs[ack.Sequence] || ack.Duplicate {
					t.Errorf("sequence %d acknowledged twice (duplicate %v)", ack.Sequence, ack.Duplicate)
				}
				seqs[ack.Sequence] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s, err := js.Stream(ctx, "PUBTEST")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 800 || len(seqs) != 800 {
		t.Fatalf("stream holds %d messages, %d acknowledged; want 800", info.State.Msgs, len(seqs))
	}

	// A message id seen before: acknowledged as a duplicate of the first.
	msg := func() *nats.Msg {
		m := &nats.Msg{Subject: "pubtest.b", Data: []byte("x"), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, "same")
		return m
	}
	first, err := p.store(ctx, msg())
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.store(ctx, msg())
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("first %+v, again %+v: want the second a duplicate of the first", first, again)
	}

	// No stream on the subject: the server says so at once.
	if _, err := p.store(ctx, &nats.Msg{Subject: "nostream.x", Data: []byte("x")}); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("publish with no stream: %v, want ErrNoStreamResponse", err)
	}

	// Something that never answers: the wait fails after the timeout.
	sub, err := nc.SubscribeSync("silent.x")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	t0 := time.Now()
	_, err = p.store(ctx, &nats.Msg{Subject: "silent.x", Data: []byte("x")})
	if el := time.Since(t0); !errors.Is(err, jetstream.ErrAsyncPublishTimeout) || el < 300*time.Millisecond || el > 3*time.Second {
		t.Fatalf("unanswered publish: %v after %s, want ErrAsyncPublishTimeout after 300–330 ms", err, el)
	}

	// The caller giving up: its wait is forgotten.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = p.store(cctx, &nats.Msg{Subject: "silent.x", Data: []byte("x")})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled publish: %v", err)
	}
	p.mu.Lock()
	left := len(p.waiting)
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d waits left after every publish returned", left)
	}

	// Close fails a wait in progress, and later publishes.
	errc := make(chan error, 1)
	go func() {
		_, err := p.store(ctx, &nats.Msg{Subject: "silent.x", Data: []byte("x")})
		errc <- err
	}()
	waitFor(t, 5*time.Second, "the wait to begin", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.waiting) == 1
	})
	p.close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait at close: %v, want ErrClosed", err)
	}
	if _, err := p.store(ctx, &nats.Msg{Subject: "pubtest.a"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
}

func TestParsePubAck(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    pubAck
		wantErr bool
		fast    bool
	}{
		{in: `{"stream":"HEARTH_ASYNC","seq":1}`, want: pubAck{Sequence: 1}, fast: true},
		{in: `{"stream":"S","domain":"hub","seq":18446744073709551615}`, want: pubAck{Sequence: 1<<64 - 1}, fast: true},
		{in: `{"stream":"S","seq":42,"duplicate": true}`, want: pubAck{Sequence: 42, Duplicate: true}, fast: true},
		{in: `{"stream":"S","seq":42,"duplicate":true}`, want: pubAck{Sequence: 42, Duplicate: true}, fast: true},
		{in: `{"stream":"S", "seq":7}`, want: pubAck{Sequence: 7}},
		{in: `{"stream":"S","seq":7,"batch":"b","count":3}`, want: pubAck{Sequence: 7}},
		{in: `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`, wantErr: true},
		{in: `{"stream":"","seq":7}`, wantErr: true},
		{in: `{"stream":"S","seq":18446744073709551616}`, wantErr: true},
		{in: `not json`, wantErr: true},
		{in: ``, wantErr: true},
	} {
		ack, err := parsePubAck([]byte(tc.in))
		if (err != nil) != tc.wantErr || ack != tc.want {
			t.Errorf("parsePubAck(%s) = %+v, %v; want %+v, error %v", tc.in, ack, err, tc.want, tc.wantErr)
		}
		if _, fast := parseUsualPubAck([]byte(tc.in)); fast != tc.fast {
			t.Errorf("parseUsualPubAck(%s) read it: %v, want %v", tc.in, fast, tc.fast)
		}
	}
}

// FuzzParsePubAck: whatever the fast path accepts, encoding/json reads the
// same way.
func FuzzParsePubAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"HEARTH_ASYNC","seq":1}`,
		`{"stream":"S","domain":"hub","seq":99}`,
		`{"stream":"S","seq":42,"duplicate": true}`,
		`{"stream":"S","seq":042}`,
		`{"stream":"S\"","seq":1}`,
		`{"stream":"S","seq":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ack, ok := parseUsualPubAck(b)
		if !ok {
			parsePubAck(b) // must not panic
			return
		}
		var v struct {
			Stream    string `json:"stream"`
			Domain    string `json:"domain"`
			Sequence  uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("fast path read %q, which is not JSON: %v", b, err)
		}
		if v.Stream == "" || v.Sequence != ack.Sequence || v.Duplicate != ack.Duplicate {
			t.Fatalf("fast path read %q as %+v; encoding/json as %+v", b, ack, v)
		}
	})
}
