package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/manifest"
)

// TestListener: outside clients need the token, get in only after
// AcceptClients, may publish and subscribe on user subjects and feed user
// streams, and may not touch Hearth's state; the store's own connection
// keeps full access.
func TestListener(t *testing.T) {
	ctx := testCtx(t)
	const token = "nt_test-token"
	s, err := Open(ctx, Options{Dir: t.TempDir(), Logger: testLogger(t), Listen: "127.0.0.1:0", ListenToken: token})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := s.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("ClientURL %q", url)
	}
	connect := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
	}
	// Hearth's streams are named HEARTH_*; the other subsystems create
	// theirs after Open.
	if _, err := s.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: HearthStreamPrefix + "TEST", Subjects: []string{"hearthtest.>"}}); err != nil {
		t.Fatal(err)
	}
	// Before AcceptClients even the right token is refused.
	if nc, err := connect(nats.Token(token)); err == nil {
		nc.Close()
		t.Fatal("an outside client got in before AcceptClients")
	}
	if err := s.AcceptClients(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"no token", nil},
		{"wrong token", []nats.Option{nats.Token("nt_wrong")}},
		{"wrong password", []nats.Option{nats.UserInfo("hearth", "nt_wrong")}},
		{"empty token", []nats.Option{nats.Token("")}},
	} {
		nc, err := connect(tc.opts...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", tc.name)
		} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization error", tc.name, err)
		}
	}
	// The token as a password works too (tools that only speak user/password).
	if nc, err := connect(nats.UserInfo("anyone", token)); err != nil {
		t.Errorf("token as password: %v", err)
	} else {
		nc.Close()
	}
	// So does the URL form.
	if nc, err := nats.Connect(strings.Replace(url, "nats://", "nats://"+token+"@", 1), nats.NoReconnect()); err != nil {
		t.Errorf("token in the URL: %v", err)
	} else {
		nc.Close()
	}

	var mu sync.Mutex
	var violations []string
	nc, err := connect(nats.Token(token), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		violations = append(violations, err.Error())
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// Core publish from outside reaches a subscriber inside.
	got := make(chan string, 4)
	in, err := s.Conn().Subscribe("orders.>", func(m *nats.Msg) { got <- string(m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer in.Unsubscribe()
	s.Conn().Flush()
	if err := nc.Publish("orders.eu", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Errorf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message did not arrive")
	}

	// A JetStream publish into a user stream is stored and acknowledged.
	if _, err := s.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"shop.>"}}); err != nil {
		t.Fatal(err)
	}
	ojs, _ := jetstream.New(nc)
	if _, err := ojs.Publish(ctx, "shop.new", []byte("1")); err != nil {
		t.Errorf("JetStream publish to a user stream: %v", err)
	}

	// The JetStream API is refused.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := ojs.AccountInfo(short); err == nil {
		t.Error("the JetStream API answered an outside client")
	}
	// Publishing on Hearth's subjects is refused; nothing reaches them.
	before, err := s.logs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"logs.victim", "hearthtest.victim", "$KV." + FunctionsBucket + ".victim", "$JS.API.STREAM.DELETE." + LogsStream, InboxPrefix + ".x"} {
		nc.Publish(subj, []byte(`{}`))
	}
	nc.Flush()
	// Subscribing to Hearth's subjects is refused, and a wildcard
	// subscription gets nothing of them.
	all := make(chan string, 100)
	if _, err := nc.Subscribe(">", func(m *nats.Msg) { all <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	nc.Subscribe("$KV.>", func(m *nats.Msg) { all <- m.Subject })
	nc.QueueSubscribe("orders.>", ClientQueuePrefix+"fn.trigger", func(m *nats.Msg) { all <- "queue " + m.Subject })
	nc.Flush()
	time.Sleep(100 * time.Millisecond)
	put(t, s, "secret", "x") // writes $KV and $O
	s.AppendLog(logEntry("secret", 1))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Function(ctx, "secret"); err != nil { // a request/reply on Hearth's inbox
		t.Fatal(err)
	}
	s.Conn().Publish("orders.us", []byte("x"))
	s.Conn().Flush()
	deadline := time.After(time.Second)
	var seen []string
wait:
	for {
		select {
		case subj := <-all:
			seen = append(seen, subj)
		case <-deadline:
			break wait
		}
	}
	if len(seen) != 1 || seen[0] != "orders.us" {
		t.Errorf("the outside client saw %q, want only orders.us", seen)
	}
	after, err := s.logs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Msgs != before.State.Msgs+1 {
		t.Errorf("logs stream went from %d to %d messages, want one more (ours)", before.State.Msgs, after.State.Msgs)
	}
	if _, err := s.Function(ctx, "victim"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a function record was written from outside: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) == 0 {
		t.Error("no permissions violation reported to the outside client")
	}
}

func TestListenerOptions(t *testing.T) {
	ctx := testCtx(t)
	if _, err := Open(ctx, Options{Dir: t.TempDir(), Listen: "127.0.0.1:0"}); err == nil {
		t.Error("Listen without ListenToken accepted")
	}
	if _, err := Open(ctx, Options{Dir: t.TempDir(), Listen: "nonsense", ListenToken: "x"}); err == nil {
		t.Error("bad address accepted")
	}
	// Without Listen the store answers no URL and AcceptClients does nothing.
	s := openStore(t, t.TempDir())
	if s.ClientURL() != "" {
		t.Errorf("ClientURL %q without a listener", s.ClientURL())
	}
	if err := s.AcceptClients(ctx); err != nil {
		t.Error(err)
	}
}

// TestInboxReserved: no subject trigger on the node's NATS can listen to
// the replies of the store's requests.
func TestInboxReserved(t *testing.T) {
	_, err := manifest.Parse([]byte("name: a\nisolation: wasm\nmodule: a.wasm\ntriggers: [{type: subject, subject: '" + InboxPrefix + ".>'}]\n"))
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("a subject trigger on %s.>: %v", InboxPrefix, err)
	}
}
