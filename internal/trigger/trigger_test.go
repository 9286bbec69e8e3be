package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/store"
)

// call is one attempt the fake function side received.
type call struct {
	fn  string
	req *driver.Request
}

// node is a store, a real async queue whose invoke is a fake function
// side that records calls, and a trigger manager.
type node struct {
	t  *testing.T
	st *store.Store
	q  *async.Queue
	m  *Manager

	stopFn func()

	mu      sync.Mutex
	calls   []call
	respond func(fn string, req *driver.Request) *driver.Response
}

func startNode(t *testing.T, dir string, now func() time.Time) *node {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, st: st}
	var m *Manager
	q, err := async.New(ctx, async.Config{
		JS: st.JetStream(),
		Invoke: func(ctx context.Context, fn string, req *driver.Request) (*driver.Response, error) {
			start := time.Now()
			n.mu.Lock()
			n.calls = append(n.calls, call{fn, req})
			respond := n.respond
			n.mu.Unlock()
			resp := &driver.Response{Status: 200, Header: http.Header{}, Body: []byte("ok")}
			if respond != nil {
				resp = respond(fn, req)
			}
			m.AfterInvoke(ctx, fn, req, start, resp, nil)
			return resp, nil
		},
		Policy: func(string) (manifest.Retry, manifest.Destinations, bool) {
			return manifest.Retry{}, manifest.Destinations{}, true
		},
		AckWait: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err = New(ctx, Config{JS: st.JetStream(), Queue: q, Now: now, RetryDelay: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.q, n.m = q, m
	q.Start()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	n.stopFn = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Close(ctx)
		q.Close(ctx)
		st.Close()
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() { n.stopFn() }

func (n *node) callsOf(fn string) []call {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []call
	for _, c := range n.calls {
		if c.fn == fn {
			out = append(out, c)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func man(name, protocol string, ts ...manifest.Trigger) manifest.Manifest {
	iso := manifest.IsolationWasm
	if protocol != manifest.ProtocolWagi {
		iso = manifest.IsolationSandbox
	}
	m := manifest.Manifest{Name: name, Isolation: iso, Protocol: protocol, Triggers: ts}
	return m
}

// structured decodes a wagi delivery.
func structured(t *testing.T, c call) map[string]any {
	t.Helper()
	if ct := c.req.Header.Get("Content-Type"); ct != events.ContentTypeStructured {
		t.Fatalf("Content-Type %q, want structured mode", ct)
	}
	var v map[string]any
	if err := json.Unmarshal(c.req.Body, &v); err != nil {
		t.Fatalf("body %q: %v", c.req.Body, err)
	}
	return v
}

func TestDueTicks(t *testing.T) {
	sched, err := manifest.ParseSchedule("*/5 * * * *", "Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	last := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	now := last.Add(17*time.Minute + 30*time.Second) // ticks at :05 :10 :15 missed
	fire, newest := dueTicks(sched, last, now, manifest.CatchUpAll, time.Minute)
	if len(fire) != 3 || !fire[0].Equal(last.Add(5*time.Minute)) || !newest.Equal(last.Add(15*time.Minute)) {
		t.Errorf("all: %v newest %v", fire, newest)
	}
	fire, _ = dueTicks(sched, last, now, manifest.CatchUpLast, time.Minute)
	if len(fire) != 1 || !fire[0].Equal(last.Add(15*time.Minute)) {
		t.Errorf("last: %v", fire)
	}
	fire, newest = dueTicks(sched, last, now, manifest.CatchUpNone, time.Minute)
	if len(fire) != 0 || !newest.Equal(last.Add(15*time.Minute)) {
		t.Errorf("none: %v %v", fire, newest)
	}
	// On time: none fires the current tick.
	fire, _ = dueTicks(sched, last, last.Add(5*time.Minute+time.Second), manifest.CatchUpNone, time.Minute)
	if len(fire) != 1 {
		t.Errorf("none on time: %v", fire)
	}
	// Nothing due.
	if fire, newest := dueTicks(sched, last, last.Add(time.Minute), manifest.CatchUpAll, time.Minute); fire != nil || !newest.IsZero() {
		t.Errorf("not due: %v", fire)
	}
	// A month of @every 1s with all is bounded.
	every, _ := manifest.ParseSchedule("@every 1s", "")
	fire, _ = dueTicks(every, last, last.Add(30*24*time.Hour), manifest.CatchUpAll, time.Minute)
	if len(fire) != manifest.MaxCatchUp || !fire[len(fire)-1].Equal(last.Add(30*24*time.Hour)) {
		t.Errorf("bounded catch-up: %d ticks, last %v", len(fire), fire[len(fire)-1])
	}
	// Time zone: 09:00 in Paris is 08:00 UTC in winter.
	daily, _ := manifest.ParseSchedule("0 9 * * *", "Europe/Paris")
	fire, _ = dueTicks(daily, last, last.Add(24*time.Hour), manifest.CatchUpAll, time.Minute)
	if len(fire) != 1 || fire[0].UTC().Hour() != 8 {
		t.Errorf("Paris: %v", fire)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// TestCronCatchUpAcrossRestart: with a fake clock, missed ticks fire per
// the policy when the node comes back, exactly once each, and a restart
// that happens before the state was saved does not run a tick twice.
func TestCronCatchUpAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)}
	tr := manifest.Trigger{Type: manifest.TriggerCron, Name: "tick", Schedule: "* * * * *", CatchUp: manifest.CatchUpAll}

	n := startNode(t, dir, clock.Now)
	n.m.Sync("job", man("job", manifest.ProtocolWagi, tr))
	waitFor(t, "the trigger to run", 5*time.Second, func() bool {
		st := n.m.List("job")
		return len(st) == 1 && st[0].State == api.TriggerRunning && st[0].NextFireAt != nil
	})
	if got := len(n.callsOf("job")); got != 0 {
		t.Fatalf("fired %d times before its first tick", got)
	}
	n.stop()

	// Down for 3 minutes and a half: ticks 10:01, 10:02, 10:03 missed.
	clock.Set(time.Date(2026, 3, 1, 10, 3, 59, 0, time.UTC))
	n = startNode(t, dir, clock.Now)
	n.m.Sync("job", man("job", manifest.ProtocolWagi, tr))
	waitFor(t, "3 catch-up invocations", 10*time.Second, func() bool { return len(n.callsOf("job")) >= 3 })
	time.Sleep(300 * time.Millisecond)
	calls := n.callsOf("job")
	if len(calls) != 3 {
		t.Fatalf("%d invocations, want 3", len(calls))
	}
	// The queue's workers run them in parallel: order by tick.
	slices.SortFunc(calls, func(a, b call) int {
		return strings.Compare(structured(t, a)["time"].(string), structured(t, b)["time"].(string))
	})
	seen := map[string]bool{}
	for i, c := range calls {
		ev := structured(t, c)
		if ev["type"] != events.TypeCronTick || ev["specversion"] != "1.0" {
			t.Errorf("event %v", ev)
		}
		want := time.Date(2026, 3, 1, 10, 1+i, 0, 0, time.UTC).Format(time.RFC3339)
		if ev["time"] != want {
			t.Errorf("tick %d time %v, want %s", i, ev["time"], want)
		}
		if seen[c.req.ID] {
			t.Errorf("invocation %s ran twice", c.req.ID)
		}
		seen[c.req.ID] = true
		if c.req.Header.Get(HeaderTrigger) != "tick" || c.req.Header.Get(HeaderTriggerType) != "cron" {
			t.Errorf("headers %v", c.req.Header)
		}
	}
	st := n.m.List("job")[0]
	if st.Fired != 3 || st.LastInvocation == "" || st.LastFiredAt == nil {
		t.Errorf("status %+v", st)
	}

	// Simulate a crash between queuing a tick and saving the state: the
	// state goes back one tick. The tick is queued again, deduplicated,
	// and does not run again.
	ctx := context.Background()
	stt, _, _ := n.m.loadState(ctx, "job.tick")
	stt.LastTick = time.Date(2026, 3, 1, 10, 2, 0, 0, time.UTC)
	n.m.saveState(ctx, "job.tick", stt)
	n.stop()
	n = startNode(t, dir, clock.Now)
	n.m.Sync("job", man("job", manifest.ProtocolWagi, tr))
	waitFor(t, "the trigger to catch up", 5*time.Second, func() bool {
		st := n.m.List("job")
		return len(st) == 1 && st[0].LastInvocation != "" && st[0].NextFireAt != nil && st[0].NextFireAt.Minute() == 4
	})
	time.Sleep(500 * time.Millisecond)
	if got := len(n.callsOf("job")); got != 0 {
		t.Errorf("tick 10:03 ran again after the restart (%d runs)", got)
	}
	// (The queue may store the message again: JetStream forgets the ids
	// of acked work-queue messages when it restarts. The invocation's
	// final status keeps it from running.)
}

// TestCronRealClock: @every 1s fires on time and keeps firing.
func TestCronRealClock(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	start := time.Now()
	n.m.Sync("every", man("every", manifest.ProtocolHTTP, manifest.Trigger{Type: manifest.TriggerCron, Name: "s", Schedule: "@every 1s", CatchUp: manifest.CatchUpLast}))
	waitFor(t, "two ticks", 10*time.Second, func() bool { return len(n.callsOf("every")) >= 2 })
	// @every counts whole seconds: the first tick is within a second.
	if el := time.Since(start); el < 900*time.Millisecond || el > 9*time.Second {
		t.Errorf("two ticks after %v", el)
	}
	c := n.callsOf("every")[0]
	// http contract: binary mode.
	if c.req.Header.Get("Ce-Type") != events.TypeCronTick || c.req.Header.Get("Ce-Specversion") != "1.0" || c.req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("binary headers %v", c.req.Header)
	}
}

func TestSubjectTrigger(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	n.m.Sync("orders", man("orders", manifest.ProtocolWagi, manifest.Trigger{Type: manifest.TriggerSubject, Name: "in", Subject: "orders.>", Concurrency: 2}))
	n.m.Sync("orders-http", man("orders-http", manifest.ProtocolHTTP, manifest.Trigger{Type: manifest.TriggerSubject, Name: "in", Subject: "orders.*", Concurrency: 1}))
	waitFor(t, "subscriptions", 5*time.Second, func() bool {
		for _, st := range n.m.List("") {
			if st.State != api.TriggerRunning {
				return false
			}
		}
		return true
	})
	nc := n.st.Conn()
	msg := nats.NewMsg("orders.eu")
	msg.Data = []byte(`{"id":1}`)
	msg.Header.Set("Content-Type", "application/json")
	msg.Header.Set(nats.MsgIdHdr, "order-1")
	nc.PublishMsg(msg)
	nc.PublishMsg(msg) // same id: one invocation
	// A malformed CloudEvent is dropped with a reason.
	bad := nats.NewMsg("orders.eu")
	bad.Header.Set("Content-Type", events.ContentTypeStructured)
	bad.Data = []byte(`{"specversion":"1.0","id":"x"}`)
	nc.PublishMsg(bad)
	nc.Flush()

	waitFor(t, "deliveries", 5*time.Second, func() bool {
		return len(n.callsOf("orders")) >= 1 && len(n.callsOf("orders-http")) >= 1
	})
	time.Sleep(300 * time.Millisecond)
	if got := len(n.callsOf("orders")); got != 1 {
		t.Errorf("orders ran %d times, want 1", got)
	}
	ev := structured(t, n.callsOf("orders")[0])
	if ev["type"] != events.TypeSubject || ev["subject"] != "orders.eu" || ev["id"] != "order-1" {
		t.Errorf("event %v", ev)
	}
	if d, _ := json.Marshal(ev["data"]); string(d) != `{"id":1}` {
		t.Errorf("data %s", d)
	}
	hc := n.callsOf("orders-http")[0]
	if string(hc.req.Body) != `{"id":1}` || hc.req.Header.Get("Ce-Id") != "order-1" || hc.req.Header.Get("Ce-Source") != "/subjects/orders.eu" {
		t.Errorf("binary delivery %v %q", hc.req.Header, hc.req.Body)
	}
	var st api.TriggerStatus
	for _, s := range n.m.List("orders") {
		st = s
	}
	if st.Dropped != 1 || !strings.Contains(st.LastError, "malformed") {
		t.Errorf("malformed event not reported: %+v", st)
	}
}

func TestStreamTrigger(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	tr := manifest.Trigger{Type: manifest.TriggerStream, Name: "s", Stream: "ORDERS", Subject: "shop.orders.>", Batch: 5, Concurrency: 2}
	n.m.Sync("shop", man("shop", manifest.ProtocolLambda, tr))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("shop")[0].State == api.TriggerRunning })
	ctx := context.Background()
	js := n.st.JetStream()
	// The stream Hearth created is bounded.
	if s, err := js.Stream(ctx, "ORDERS"); err != nil {
		t.Fatal(err)
	} else if c := s.CachedInfo().Config; c.MaxBytes != createdStreamMaxBytes || c.MaxAge != createdStreamMaxAge || c.Discard != jetstream.DiscardOld {
		t.Errorf("created stream: max bytes %d, max age %s, discard %v", c.MaxBytes, c.MaxAge, c.Discard)
	}
	for i := range 20 {
		if _, err := js.Publish(ctx, "shop.orders.new", []byte(`{"n":`+string(rune('0'+i%10))+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "20 deliveries", 10*time.Second, func() bool { return len(n.callsOf("shop")) >= 20 })
	time.Sleep(200 * time.Millisecond)
	calls := n.callsOf("shop")
	if len(calls) != 20 {
		t.Errorf("%d deliveries, want 20", len(calls))
	}
	if calls[0].req.Header.Get("Ce-Type") != events.TypeStream || !strings.HasPrefix(calls[0].req.Header.Get("Ce-Id"), "ORDERS-") {
		t.Errorf("headers %v", calls[0].req.Header)
	}
	waitFor(t, "no lag", 5*time.Second, func() bool { return n.m.List("shop")[0].Lag == 0 })

	// Removing the trigger deletes its consumer.
	n.m.Sync("shop", man("shop", manifest.ProtocolLambda))
	if _, err := js.Consumer(ctx, "ORDERS", "hearth-shop-s"); err == nil {
		t.Error("consumer left behind")
	}
}

func TestStreamTriggerSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	tr := manifest.Trigger{Type: manifest.TriggerStream, Name: "s", Stream: "JOBS", Subject: "jobs", Batch: 10, Concurrency: 1}
	n := startNode(t, dir, nil)
	n.m.Sync("w", man("w", manifest.ProtocolWagi, tr))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("w")[0].State == api.TriggerRunning })
	ctx := context.Background()
	n.st.JetStream().Publish(ctx, "jobs", []byte("1"))
	waitFor(t, "first", 5*time.Second, func() bool { return len(n.callsOf("w")) == 1 })
	n.stop()
	n = startNode(t, dir, nil)
	n.st.JetStream().Publish(ctx, "jobs", []byte("2")) // while the trigger is not running yet
	n.m.Sync("w", man("w", manifest.ProtocolWagi, tr))
	waitFor(t, "second", 5*time.Second, func() bool { return len(n.callsOf("w")) >= 1 })
	time.Sleep(300 * time.Millisecond)
	calls := n.callsOf("w")
	if len(calls) != 1 {
		t.Fatalf("%d deliveries after restart, want 1", len(calls))
	}
	if ev := structured(t, calls[0]); ev["data_base64"] == nil && ev["data"] != float64(2) {
		t.Errorf("event %v", ev)
	}
}

func TestBucketTrigger(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	n.m.Sync("thumbs", man("thumbs", manifest.ProtocolWagi, manifest.Trigger{Type: manifest.TriggerBucket, Name: "up", Bucket: "uploads", Events: []string{"put", "delete"}, Prefix: "img/"}))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("thumbs")[0].State == api.TriggerRunning })
	ctx := context.Background()
	b := n.m.Buckets()
	obj, err := b.Put(ctx, "uploads", "img/a.png", "image/png", bytes.NewReader([]byte("PNGDATA")))
	if err != nil {
		t.Fatal(err)
	}
	b.Put(ctx, "uploads", "doc/skip.txt", "", strings.NewReader("x")) // other prefix
	if err := b.Delete(ctx, "uploads", "img/a.png"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "put and delete", 5*time.Second, func() bool { return len(n.callsOf("thumbs")) >= 2 })
	time.Sleep(200 * time.Millisecond)
	calls := n.callsOf("thumbs")
	if len(calls) != 2 {
		t.Fatalf("%d deliveries, want 2", len(calls))
	}
	put, del := structured(t, calls[0]), structured(t, calls[1])
	if put["type"] != events.TypeObjectPut || del["type"] != events.TypeObjectDelete || put["subject"] != "img/a.png" {
		t.Errorf("events %v %v", put, del)
	}
	data := put["data"].(map[string]any)
	if data["key"] != "img/a.png" || data["size"] != float64(7) || data["digest"] != obj.Digest || data["content_type"] != "image/png" {
		t.Errorf("put data %v (object %+v)", data, obj)
	}
	// Bucket API.
	objs, _ := b.List(ctx, "uploads", "")
	if len(objs) != 1 || objs[0].Key != "doc/skip.txt" {
		t.Errorf("list %+v", objs)
	}
	if _, _, err := b.Get(ctx, "nope", "x"); err == nil {
		t.Error("get from a missing bucket")
	}
	if _, err := b.Put(ctx, "uploads", "../etc", "", strings.NewReader("")); err == nil {
		t.Error("bad key accepted")
	}
}

func TestEventBusAndEmit(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := context.Background()
	e := events.New("/test", "user.signup")
	events.SetData(&e, "application/json", []byte(`{"user":"ann"}`))
	if _, err := n.m.Publish(ctx, "user.signup", &e); err == nil || !strings.Contains(err.Error(), "no function subscribes") {
		t.Fatalf("unknown topic: %v", err)
	}
	n.m.Sync("welcome", man("welcome", manifest.ProtocolWagi, manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "user.*"}))
	n.m.Sync("audit", man("audit", manifest.ProtocolHTTP, manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "mail.sent"}))
	waitFor(t, "consumers", 5*time.Second, func() bool {
		for _, st := range n.m.List("") {
			if st.State != api.TriggerRunning {
				return false
			}
		}
		return true
	})
	// welcome answers with X-Hearth-Emit: mail.sent, which audit receives.
	n.mu.Lock()
	n.respond = func(fn string, req *driver.Request) *driver.Response {
		if fn == "welcome" {
			return &driver.Response{Status: 200, Header: http.Header{HeaderEmit: {"mail.sent"}, "Content-Type": {"text/plain"}}, Body: []byte("mailed ann")}
		}
		return &driver.Response{Status: 200, Header: http.Header{}}
	}
	n.mu.Unlock()
	acc, err := n.m.Publish(ctx, "user.signup", &e)
	if err != nil || acc.Subscribers != 1 {
		t.Fatalf("publish: %+v %v", acc, err)
	}
	if acc2, _ := n.m.Publish(ctx, "user.signup", &e); !acc2.Duplicate {
		t.Error("the same event (source, id) was stored twice")
	}
	waitFor(t, "delivery and emitted event", 10*time.Second, func() bool {
		return len(n.callsOf("welcome")) == 1 && len(n.callsOf("audit")) == 1
	})
	ev := structured(t, n.callsOf("welcome")[0])
	if ev["id"] != e.ID() || ev["type"] != "user.signup" {
		t.Errorf("welcome got %v", ev)
	}
	a := n.callsOf("audit")[0]
	if string(a.req.Body) != "mailed ann" || a.req.Header.Get("Ce-Type") != "mail.sent" || a.req.Header.Get("Ce-Source") != "/functions/welcome" || a.req.Header.Get(HeaderEventHops) != "1" {
		t.Errorf("audit got %v %q", a.req.Header, a.req.Body)
	}
	waitFor(t, "succeeded counters", 5*time.Second, func() bool {
		st := n.m.List("welcome")[0]
		return st.Succeeded == 1 && st.Fired == 1
	})
}

func TestRoutes(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	n.m.Sync("users", man("users", manifest.ProtocolWagi, manifest.Trigger{Type: manifest.TriggerHTTP, Name: "h", Path: "/api/users/{id}", Methods: []string{"GET", "POST"}}))
	n.m.Sync("zz", man("zz", manifest.ProtocolWagi, manifest.Trigger{Type: manifest.TriggerHTTP, Name: "h", Path: "/api/users/{id}", Methods: []string{"GET"}}))
	var got Route
	invoke := func(w http.ResponseWriter, r *http.Request, rt Route) { got = rt; w.WriteHeader(204) }
	w := httptest.NewRecorder()
	if !n.m.Serve(w, httptest.NewRequest("POST", "/api/users/42", nil), invoke) || got.Function != "users" || got.Params["id"] != "42" {
		t.Errorf("route %+v", got)
	}
	if n.m.Serve(httptest.NewRecorder(), httptest.NewRequest("GET", "/other", nil), invoke) {
		t.Error("served /other")
	}
	st := n.m.List("zz")[0]
	if st.State != api.TriggerError || !strings.Contains(st.Error, "conflicts") {
		t.Errorf("conflict not reported: %+v", st)
	}
	n.m.Remove("users")
	if st := n.m.List("zz")[0]; st.State != api.TriggerRunning {
		t.Errorf("after the other function left: %+v", st)
	}
}

// TestWatchRegistry: triggers follow the registry's KV bucket.
func TestWatchRegistry(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, _ := async.New(ctx, async.Config{JS: st.JetStream(),
		Invoke: func(context.Context, string, *driver.Request) (*driver.Response, error) {
			return &driver.Response{Status: 200}, nil
		},
		Policy: func(string) (manifest.Retry, manifest.Destinations, bool) {
			return manifest.Retry{}, manifest.Destinations{}, true
		},
	})
	defer q.Close(ctx)
	kv, err := st.JetStream().KeyValue(ctx, store.FunctionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	put := func(ts ...manifest.Trigger) {
		f := api.Function{Name: "f", Latest: 1, Versions: []api.Version{{Function: "f", Number: 1, Manifest: man("f", manifest.ProtocolWagi, ts...)}}}
		b, _ := json.Marshal(f)
		if _, err := kv.Put(ctx, "f", b); err != nil {
			t.Fatal(err)
		}
	}
	put(manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "a"})
	m, err := New(ctx, Config{JS: st.JetStream(), Queue: q, Functions: kv})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	// State of triggers deleted while the node was down goes at start;
	// that of the running ones stays.
	for _, k := range []string{"gone.e", "gone.e.stats", "f.old.stats", "f.e.stats"} {
		if _, err := m.state.Put(ctx, k, []byte(`{"fired":7}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if l := m.List("f"); len(l) != 1 || l[0].Fired != 7 {
		t.Fatalf("after start: %+v", l)
	}
	for k, want := range map[string]bool{"gone.e": false, "gone.e.stats": false, "f.old.stats": false, "f.e.stats": true} {
		if _, err := m.state.Get(ctx, k); (err == nil) != want {
			t.Errorf("state %s kept: %v, want %v", k, err == nil, want)
		}
	}
	put(manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "a"}, manifest.Trigger{Type: manifest.TriggerEvent, Name: "e2", Topic: "b"})
	waitFor(t, "second trigger", 5*time.Second, func() bool { return len(m.List("f")) == 2 })
	kv.Delete(ctx, "f")
	waitFor(t, "removal", 5*time.Second, func() bool { return len(m.List("f")) == 0 })
	waitFor(t, "consumers deleted", 5*time.Second, func() bool {
		_, err := st.JetStream().Consumer(ctx, events.Stream, "hearth-f-e")
		return err != nil
	})
	var _ jetstream.KeyValue = kv
}

// TestCountersSurviveRestart: a trigger's counters and last firing are
// written by the flusher and on close, loaded by the next process, carried
// over when a deploy changes the trigger, and removed with the trigger.
func TestCountersSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ev := manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "orders.new"}
	n := startNode(t, dir, nil)
	n.m.Sync("shop", man("shop", manifest.ProtocolWagi, ev))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("shop")[0].State == api.TriggerRunning })
	ctx := context.Background()
	publish := func(n *node, id string) {
		t.Helper()
		e := events.New("/test", "orders.new")
		e.SetID(id)
		if _, err := n.m.Publish(ctx, "orders.new", &e); err != nil {
			t.Fatal(err)
		}
	}
	publish(n, "1")
	publish(n, "2")
	waitFor(t, "two successes", 10*time.Second, func() bool { return n.m.List("shop")[0].Succeeded == 2 })
	first := n.m.List("shop")[0]
	// The flusher writes within a second, before any close.
	waitFor(t, "the flusher", 5*time.Second, func() bool {
		e, err := n.m.state.Get(ctx, "shop.e"+statsSuffix)
		return err == nil && strings.Contains(string(e.Value()), `"succeeded":2`)
	})
	n.stop()

	n = startNode(t, dir, nil)
	n.m.Sync("shop", man("shop", manifest.ProtocolWagi, ev))
	st := n.m.List("shop")[0]
	if st.Fired != 2 || st.Succeeded != 2 || st.Failed != 0 || st.LastFiredAt == nil || !st.LastFiredAt.Equal(*first.LastFiredAt) || st.LastInvocation != first.LastInvocation {
		t.Fatalf("after a restart %+v, before %+v", st, first)
	}
	// A changed trigger keeps its counters.
	ev2 := ev
	ev2.Topic = "orders.*"
	n.m.Sync("shop", man("shop", manifest.ProtocolWagi, ev2))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("shop")[0].State == api.TriggerRunning })
	publish(n, "3")
	waitFor(t, "three successes", 10*time.Second, func() bool { return n.m.List("shop")[0].Succeeded == 3 })
	n.stop() // Close writes the last counts.

	n = startNode(t, dir, nil)
	n.m.Sync("shop", man("shop", manifest.ProtocolWagi, ev2))
	if st := n.m.List("shop")[0]; st.Fired != 3 || st.Succeeded != 3 {
		t.Fatalf("after the second restart %+v", st)
	}
	// Removing the trigger removes its counters: added again, it starts
	// from zero.
	n.m.Sync("shop", man("shop", manifest.ProtocolWagi))
	if _, err := n.m.state.Get(ctx, "shop.e"+statsSuffix); err == nil {
		t.Error("counters left behind")
	}
	n.m.Sync("shop", man("shop", manifest.ProtocolWagi, ev2))
	if st := n.m.List("shop")[0]; st.Fired != 0 || st.LastFiredAt != nil {
		t.Errorf("a trigger added again kept old counters: %+v", st)
	}
}

// TestSyncEmit: a synchronous invocation's X-Hearth-Emit publishes its body
// before the response is written, and the response says what happened.
func TestSyncEmit(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	n.m.Sync("audit", man("audit", manifest.ProtocolHTTP, manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "mail.sent"}))
	n.m.Sync("api", man("api", manifest.ProtocolWagi, manifest.Trigger{Type: manifest.TriggerHTTP, Name: "h", Path: "/api/{x}"}))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("audit")[0].State == api.TriggerRunning })
	ctx := context.Background()
	resp := func(status int, topic string) *driver.Response {
		return &driver.Response{Status: status, Header: http.Header{HeaderEmit: {topic}, "Content-Type": {"application/json"}}, Body: []byte(`{"to":"ann"}`)}
	}
	req := &driver.Request{ID: "inv-1", Header: http.Header{}}
	r := resp(200, "mail.sent")
	n.m.AfterSync(ctx, "mailer", req, r, nil)
	if r.Header.Get(HeaderEmit) != "" || r.Header.Get(HeaderEventID) != "inv-1" || r.Header.Get(HeaderEmitError) != "" {
		t.Errorf("response headers %v", r.Header)
	}
	waitFor(t, "the emitted event", 10*time.Second, func() bool { return len(n.callsOf("audit")) == 1 })
	a := n.callsOf("audit")[0]
	if string(a.req.Body) != `{"to":"ann"}` || a.req.Header.Get("Ce-Source") != "/functions/mailer" || a.req.Header.Get("Ce-Type") != "mail.sent" || a.req.Header.Get(HeaderEventHops) != "1" {
		t.Errorf("audit got %v %q", a.req.Header, a.req.Body)
	}
	// A response that is itself a CloudEvent keeps its id and type, but
	// not a source of its choosing.
	ce := &driver.Response{Status: 200, Header: http.Header{
		HeaderEmit: {"mail.sent"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"ev-9"}, "Ce-Type": {"mail.sent"},
		"Ce-Source": {"/functions/someone-else"}, "Content-Type": {"text/plain"},
	}, Body: []byte("forged")}
	n.m.AfterSync(ctx, "mailer", &driver.Request{ID: "inv-ce", Header: http.Header{}}, ce, nil)
	if ce.Header.Get(HeaderEventID) != "ev-9" {
		t.Fatalf("CloudEvent response headers %v", ce.Header)
	}
	waitFor(t, "the emitted CloudEvent", 10*time.Second, func() bool { return len(n.callsOf("audit")) == 2 })
	if a := n.callsOf("audit")[1]; a.req.Header.Get("Ce-Source") != "/functions/mailer" || a.req.Header.Get("Ce-Id") != "ev-9" {
		t.Errorf("a function chose the source of the event it emitted: %v", a.req.Header)
	}

	// Nobody subscribes; the function failed; the invocation failed.
	for _, tc := range []struct {
		r    *driver.Response
		err  error
		want string
	}{
		{resp(200, "nobody.listens"), nil, "no function subscribes"},
		{resp(500, "mail.sent"), nil, "HTTP 500"},
		{resp(200, "mail.sent"), driver.ErrCrashed, "invocation failed"},
	} {
		n.m.AfterSync(ctx, "mailer", &driver.Request{ID: "inv-2", Header: http.Header{}}, tc.r, tc.err)
		if tc.r.Header.Get(HeaderEmit) != "" || tc.r.Header.Get(HeaderEventID) != "" || !strings.Contains(tc.r.Header.Get(HeaderEmitError), tc.want) {
			t.Errorf("%s: response headers %v", tc.want, tc.r.Header)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(n.callsOf("audit")); got != 2 {
		t.Errorf("audit ran %d times, want 2", got)
	}

	// An http trigger's route counts its firings and their results; a
	// request naming another trigger does not count.
	hreq := &driver.Request{ID: "inv-3", Header: http.Header{HeaderTrigger: {"h"}, HeaderTriggerType: {manifest.TriggerHTTP}}}
	n.m.AfterSync(ctx, "api", hreq, &driver.Response{Status: 200, Header: http.Header{}}, nil)
	n.m.AfterSync(ctx, "api", &driver.Request{ID: "inv-4", Header: hreq.Header}, &driver.Response{Status: 502, Header: http.Header{}}, nil)
	n.m.AfterSync(ctx, "audit", &driver.Request{ID: "inv-5", Header: http.Header{HeaderTrigger: {"e"}, HeaderTriggerType: {manifest.TriggerHTTP}}}, &driver.Response{Status: 200}, nil)
	st := n.m.List("api")[0]
	if st.Fired != 2 || st.Succeeded != 1 || st.Failed != 1 || st.LastInvocation != "inv-4" || st.LastFiredAt == nil || !strings.Contains(st.LastError, "502") {
		t.Errorf("http trigger status %+v", st)
	}
	if st := n.m.List("audit")[0]; st.Fired != 2 { // the two events above
		t.Errorf("a request naming an event trigger counted as its firing: %+v", st)
	}
}

// TestEmit: the chain of emitted events continues from the deeper of the
// caller's depth and the event's own, and stops at MaxHops.
func TestEmit(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	n.m.Sync("audit", man("audit", manifest.ProtocolHTTP, manifest.Trigger{Type: manifest.TriggerEvent, Name: "e", Topic: "mail.sent"}))
	waitFor(t, "consumer", 5*time.Second, func() bool { return n.m.List("audit")[0].State == api.TriggerRunning })
	ctx := context.Background()
	newEvent := func(ext int) *events.Event {
		e := events.New("/functions/mailer", "mail.sent")
		if ext > 0 {
			e.SetExtension(hopsExtension, ext)
		}
		return &e
	}
	for i, tc := range []struct{ hops, ext, want int }{{0, 0, 1}, {3, 0, 4}, {2, 5, 6}, {7, 1, 8}} {
		if _, err := n.m.Emit(ctx, "mail.sent", newEvent(tc.ext), tc.hops); err != nil {
			t.Fatalf("Emit(hops %d, extension %d): %v", tc.hops, tc.ext, err)
		}
		waitFor(t, "delivery", 10*time.Second, func() bool { return len(n.callsOf("audit")) == i+1 })
		if got := n.callsOf("audit")[i].req.Header.Get(HeaderEventHops); got != strconv.Itoa(tc.want) {
			t.Errorf("hops %d, extension %d: delivered %s deep, want %d", tc.hops, tc.ext, got, tc.want)
		}
	}
	for _, tc := range []struct{ hops, ext int }{{MaxHops, 0}, {0, MaxHops}, {MaxHops + 5, 0}} {
		if _, err := n.m.Emit(ctx, "mail.sent", newEvent(tc.ext), tc.hops); !errors.Is(err, events.ErrChainTooLong) {
			t.Errorf("Emit(hops %d, extension %d): %v, want ErrChainTooLong", tc.hops, tc.ext, err)
		}
	}
	if _, err := n.m.Emit(ctx, "nobody.listens", newEvent(0), 0); !errors.Is(err, ErrUnknownTopic) || !errors.Is(err, events.ErrUnknownTopic) {
		t.Errorf("unknown topic: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(n.callsOf("audit")); got != 4 {
		t.Errorf("audit ran %d times, want 4", got)
	}
}
