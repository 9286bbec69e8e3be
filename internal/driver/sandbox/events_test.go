//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/gateway"
	"github.com/hearthdev/hearth/internal/trigger"
)

// fakeEmitter records the events it is given. Topics under "nobody." have
// no subscriber; an event 16 or more hops deep is refused, as
// trigger.Manager does.
type fakeEmitter struct {
	mu    sync.Mutex
	calls []emitted
}

type emitted struct {
	topic string
	e     *events.Event
	hops  int
}

func (f *fakeEmitter) Emit(ctx context.Context, topic string, e *events.Event, hops int) (api.EventAccepted, error) {
	switch {
	case strings.HasPrefix(topic, "nobody."):
		return api.EventAccepted{}, fmt.Errorf("%w %q: no function subscribes to it", events.ErrUnknownTopic, topic)
	case hops >= trigger.MaxHops:
		return api.EventAccepted{}, fmt.Errorf("%w: dropped", events.ErrChainTooLong)
	case topic == "bad.event":
		return api.EventAccepted{}, fmt.Errorf("%w: something", events.ErrMalformed)
	}
	f.mu.Lock()
	f.calls = append(f.calls, emitted{topic, e, hops})
	f.mu.Unlock()
	return api.EventAccepted{ID: e.ID(), Topic: topic, Subscribers: 1}, nil
}

func (f *fakeEmitter) last(t *testing.T) emitted {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("nothing was emitted")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeEmitter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// The endpoint's constants are the rest of the system's.
func TestEventsConstants(t *testing.T) {
	if headerEventHops != trigger.HeaderEventHops {
		t.Errorf("headerEventHops %q, trigger uses %q", headerEventHops, trigger.HeaderEventHops)
	}
	if MaxEventBytes != gateway.MaxEventBody {
		t.Errorf("MaxEventBytes %d, the gateway's limit is %d", MaxEventBytes, gateway.MaxEventBody)
	}
}

// TestEventsHandler covers the endpoint's HTTP side without a sandbox.
func TestEventsHandler(t *testing.T) {
	em := &fakeEmitter{}
	a := newEventsHandler("producer", em, rate.NewLimiter(rate.Inf, 1), nil)
	srv := httptest.NewServer(a)
	defer srv.Close()
	defer a.close()
	// The server's handler here is a itself; newEventsAPI serves it on a
	// socket inside the sandbox (TestEventsEndpoint).

	post := func(path string, body string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	code := func(b []byte) string {
		var e api.ErrorBody
		json.Unmarshal(b, &e)
		return e.Error.Code
	}

	t.Run("plain data", func(t *testing.T) {
		resp, body := post("/v1/events/orders.created", `{"order":1}`, "Content-Type", "application/json")
		var acc api.EventAccepted
		if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &acc) != nil || acc.ID == "" || acc.Topic != "orders.created" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		got := em.last(t)
		if got.topic != "orders.created" || got.e.ID() != acc.ID || got.e.Source() != "/functions/producer" ||
			got.e.Type() != "orders.created" || string(got.e.Data()) != `{"order":1}` || got.e.DataContentType() != "application/json" || got.hops != 0 {
			t.Errorf("emitted %+v: %s", got, got.e)
		}
	})
	t.Run("structured, source forced", func(t *testing.T) {
		ce := `{"specversion":"1.0","id":"e-1","source":"/functions/someone-else","type":"custom.type","data":{"x":1}}`
		resp, body := post("/v1/events/orders.created", ce, "Content-Type", events.ContentTypeStructured)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		got := em.last(t)
		if got.e.ID() != "e-1" || got.e.Source() != "/functions/producer" || got.e.Type() != "custom.type" || string(got.e.Data()) != `{"x":1}` {
			t.Errorf("emitted %s", got.e)
		}
	})
	t.Run("binary, source forced", func(t *testing.T) {
		resp, body := post("/v1/events/orders.created", "hi",
			"Ce-Specversion", "1.0", "Ce-Id", "e-2", "Ce-Source", "/v1/events", "Ce-Type", "t", "Content-Type", "text/plain")
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if got := em.last(t); got.e.ID() != "e-2" || got.e.Source() != "/functions/producer" || string(got.e.Data()) != "hi" {
			t.Errorf("emitted %s", got.e)
		}
	})
	t.Run("loop guard depth", func(t *testing.T) {
		// An invocation 3 events deep is running: its events are the 4th.
		h := a.invoking(&driver.Request{Header: http.Header{trigger.HeaderEventHops: {"3"}}})
		post("/v1/events/orders.created", "x")
		if got := em.last(t).hops; got != 3 {
			t.Errorf("hops %d during an invocation 3 deep", got)
		}
		a.done(h)
		// In the background after it returned: still its chain.
		post("/v1/events/orders.created", "x")
		if got := em.last(t).hops; got != 3 {
			t.Errorf("hops %d after an invocation 3 deep", got)
		}
		// A shallower invocation started meanwhile does not reset the
		// chain of events sent in the background...
		a.invoking(&driver.Request{Header: http.Header{}})
		post("/v1/events/orders.created", "x")
		if got := em.last(t).hops; got != 3 {
			t.Errorf("hops %d after an undirected invocation, right after one 3 deep", got)
		}
		// ... until the deeper one is hopsMemory old.
		forget := func() {
			a.mu.Lock()
			a.recentAt = a.recentAt.Add(-2 * hopsMemory)
			a.mu.Unlock()
			a.invoking(&driver.Request{Header: http.Header{}})
		}
		forget()
		post("/v1/events/orders.created", "x")
		if got := em.last(t).hops; got != 0 {
			t.Errorf("hops %d after an undirected invocation, long after one 3 deep", got)
		}
		h5 := a.invoking(&driver.Request{Header: http.Header{trigger.HeaderEventHops: {"5"}}})
		a.invoking(&driver.Request{Header: http.Header{}})
		post("/v1/events/orders.created", "x")
		if got := em.last(t).hops; got != 5 {
			t.Errorf("hops %d while an invocation 5 deep runs", got)
		}
		a.done(h5)
		forget()
		resp, body := post("/v1/events/orders.created", "x")
		if got := em.last(t).hops; got != 0 || resp.StatusCode != http.StatusAccepted {
			t.Errorf("hops %d long after it ended: %d %s", got, resp.StatusCode, body)
		}
		// Too deep: refused by the emitter, 508.
		h16 := a.invoking(&driver.Request{Header: http.Header{trigger.HeaderEventHops: {"16"}}})
		n := em.count()
		resp, body = post("/v1/events/orders.created", "x")
		if resp.StatusCode != http.StatusLoopDetected || code(body) != api.CodeEventLoop || em.count() != n {
			t.Errorf("too deep: %d %s", resp.StatusCode, body)
		}
		a.done(h16)
		forget()
	})
	for _, c := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
	}{
		{"unknown topic", "POST", "/v1/events/nobody.listens", "x", nil, 404, api.CodeUnknownTopic},
		{"malformed structured", "POST", "/v1/events/orders.created", "{", []string{"Content-Type", events.ContentTypeStructured}, 400, api.CodeMalformedEvent},
		{"malformed binary", "POST", "/v1/events/orders.created", "x", []string{"Ce-Id", "1"}, 400, api.CodeMalformedEvent},
		{"refused by the bus", "POST", "/v1/events/bad.event", "x", nil, 400, api.CodeMalformedEvent},
		{"bad topic", "POST", "/v1/events/a.*", "x", nil, 400, api.CodeBadRequest},
		{"too large", "POST", "/v1/events/orders.created", strings.Repeat("x", MaxEventBytes+1), nil, 413, api.CodeTooLarge},
		{"GET", "GET", "/v1/events/orders.created", "", nil, 405, api.CodeMethodNotAllowed},
		{"PUT", "PUT", "/v1/events/orders.created", "x", nil, 405, api.CodeMethodNotAllowed},
		{"other path", "POST", "/v1/other", "x", nil, 404, api.CodeNotFound},
		{"no topic", "POST", "/v1/events/", "x", nil, 404, api.CodeNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			for i := 0; i+1 < len(c.hdr); i += 2 {
				req.Header.Set(c.hdr[i], c.hdr[i+1])
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || code(b) != c.code {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, c.status, c.code)
			}
			if c.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
	// Exactly at the limit is accepted.
	if resp, body := post("/v1/events/orders.created", strings.Repeat("x", MaxEventBytes)); resp.StatusCode != 202 {
		t.Errorf("a body of exactly %d bytes: %d %s", MaxEventBytes, resp.StatusCode, body)
	}

	t.Run("rate limited", func(t *testing.T) {
		em := &fakeEmitter{}
		a := newEventsHandler("producer", em, rate.NewLimiter(rate.Every(time.Hour), 3), nil)
		srv := httptest.NewServer(a)
		defer srv.Close()
		defer a.close()
		var statuses []int
		for range 5 {
			resp, err := srv.Client().Post(srv.URL+"/v1/events/orders.created", "text/plain", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
			if resp.StatusCode == 429 && (code(b) != api.CodeOverloaded || resp.Header.Get("Retry-After") == "") {
				t.Errorf("429 %s %v", b, resp.Header)
			}
		}
		if fmt.Sprint(statuses) != "[202 202 202 429 429]" || em.count() != 3 {
			t.Errorf("statuses %v, %d emitted", statuses, em.count())
		}
	})

	t.Run("closed", func(t *testing.T) {
		a.close()
		resp, body := post("/v1/events/orders.created", "x")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("after close: %d %s", resp.StatusCode, body)
		}
	})
}

// pyEventsSpec runs testdata/pyevents, which posts to $HEARTH_EVENTS_API.
func pyEventsSpec(name string) driver.Spec {
	return exampleSpec(name, filepath.Join(repoRoot(), "internal", "driver", "sandbox", "testdata", "pyevents"), "http", "python3", "main.py")
}

// TestEventsEndpoint: sandboxed functions of both contracts reach the
// endpoint at $HEARTH_EVENTS_API; without an Emitter there is none.
func TestEventsEndpoint(t *testing.T) {
	em := &fakeEmitter{}
	d := newTestDriver(t, Config{Emitter: em})

	t.Run("http", func(t *testing.T) {
		inst := startT(t, d, pyEventsSpec("py-producer"))
		resp, err := call(t, inst, http.MethodGet, "/env", "", "")
		if err != nil || string(resp.Body) != "127.0.0.1:9002" {
			t.Fatalf("$HEARTH_EVENTS_API: %v %q", err, respBody(resp))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err = inst.Invoke(ctx, &driver.Request{ID: "inv-1", Method: "POST", Path: "/orders.created",
			Header: http.Header{"Content-Type": {"application/json"}, trigger.HeaderEventHops: {"2"}}, Body: []byte(`{"order":5}`)})
		if err != nil || resp.Header.Get("X-Events-Status") != "202" {
			t.Fatalf("publish: %v %v %q", err, resp, respBody(resp))
		}
		got := em.last(t)
		if got.topic != "orders.created" || got.e.Source() != "/functions/py-producer" || string(got.e.Data()) != `{"order":5}` || got.hops != 2 {
			t.Errorf("emitted %+v %s", got, got.e)
		}
		resp, err = call(t, inst, http.MethodPost, "/nobody.listens", "", "x")
		if err != nil || resp.Header.Get("X-Events-Status") != "404" || !strings.Contains(string(resp.Body), api.CodeUnknownTopic) {
			t.Errorf("unknown topic: %v %q", err, respBody(resp))
		}
	})
	t.Run("lambda", func(t *testing.T) {
		dir := t.TempDir()
		writeScript(t, dir, "bootstrap", `#!/bin/sh
set -eu
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
	id=$(curl -sS -D - -o /tmp/event "$api/invocation/next" | tr -d '\r' | sed -n 's/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d: *//p')
	code=$(curl -sS -o /tmp/out -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary 'from lambda' "http://$HEARTH_EVENTS_API/v1/events/lambda.done")
	printf '{"statusCode":200,"body":"%s"}' "$code" >/tmp/response
	curl -sS -o /dev/null --data-binary @/tmp/response "$api/invocation/$id/response"
done
`)
		if _, err := os.Stat("/usr/bin/curl"); err != nil {
			t.Skip("the lambda test function uses curl, which is not installed")
		}
		inst := startT(t, d, exampleSpec("sh-producer", dir, "lambda", "./bootstrap"))
		resp, err := call(t, inst, http.MethodGet, "/", "", "")
		if err != nil || string(resp.Body) != "202" {
			t.Fatalf("lambda: %v %q", err, respBody(resp))
		}
		if got := em.last(t); got.topic != "lambda.done" || got.e.Source() != "/functions/sh-producer" || string(got.e.Data()) != "from lambda" {
			t.Errorf("emitted %+v %s", got, got.e)
		}
	})
}

// TestEventsEndpointOff: without an Emitter there is no endpoint and no
// $HEARTH_EVENTS_API.
func TestEventsEndpointOff(t *testing.T) {
	d := newTestDriver(t, Config{})
	inst := startT(t, d, pyEventsSpec("py-producer"))
	resp, err := call(t, inst, http.MethodGet, "/env", "", "")
	if err != nil || string(resp.Body) != "" {
		t.Errorf("$HEARTH_EVENTS_API without an Emitter: %v %q", err, respBody(resp))
	}
	resp, err = call(t, inst, http.MethodPost, "/orders.created", "", "x")
	if err != nil || resp.Header.Get("X-Events-Status") != "0" {
		t.Errorf("publish without an Emitter: %v %q", err, respBody(resp))
	}
	in := inst.(*Instance)
	in.mu.Lock()
	ev := in.sb.events
	in.mu.Unlock()
	if ev != nil {
		t.Error("an events endpoint without an Emitter")
	}
}

// TestEventsEndpointNoLeaks: stopping instances that used their events
// endpoint (one still connected, one in the middle of a publish) leaves
// no goroutine and no file descriptor behind.
func TestEventsEndpointNoLeaks(t *testing.T) {
	em := &blockingEmitter{entered: make(chan struct{}, 8)}
	d := newTestDriver(t, Config{Emitter: em})
	// Warm up what the first start creates once (runtime threads, the
	// driver's own descriptors).
	startT(t, d, fnSpec("hello")).Stop(context.Background())
	g0, fd0 := runtime.NumGoroutine(), openFDs()

	var insts []driver.Instance
	for range 3 {
		insts = append(insts, startT(t, d, pyEventsSpec("py-producer")))
	}
	// One publish blocks in the emitter until the instance stops.
	done := make(chan error, 1)
	go func() {
		_, err := call(t, insts[0], http.MethodPost, "/orders.created", "", "x")
		done <- err
	}()
	select {
	case <-em.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the publish did not reach the emitter")
	}
	for _, in := range insts {
		if err := in.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), openFDs()
		if g <= g0 && fd <= fd0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after Stop: %d goroutines (before: %d), %d fds (before: %d)\n%s", g, g0, fd, fd0, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockingEmitter blocks every publish until its context ends.
type blockingEmitter struct{ entered chan struct{} }

func (b *blockingEmitter) Emit(ctx context.Context, topic string, e *events.Event, hops int) (api.EventAccepted, error) {
	b.entered <- struct{}{}
	<-ctx.Done()
	return api.EventAccepted{}, ctx.Err()
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestEventLimiterPerFunction: a function's sandboxes share one rate limit,
// so scaling out or a cold start does not raise it.
func TestEventLimiterPerFunction(t *testing.T) {
	d := &Driver{cfg: Config{EventRate: 1, EventBurst: 2}}
	a1, a2, b := d.eventLimiter("a"), d.eventLimiter("a"), d.eventLimiter("b")
	if a1 != a2 || a1 == b {
		t.Fatal("limiters are not per function")
	}
	if !a1.Allow() || !a2.Allow() || a1.Allow() || !b.Allow() {
		t.Error("the burst of 2 is not shared by the function's sandboxes")
	}
}
