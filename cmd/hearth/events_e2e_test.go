package main

// End-to-end tests of outside NATS clients (--nats-listen), events emitted
// by synchronous invocations, and trigger counters across restarts
// (helpers in e2e_test.go and triggers_e2e_test.go).

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/trigger"
)

var natsURLRe = regexp.MustCompile(`nats=(nats://\S+)`)

// TestNATSListener: with --nats-listen an outside program with the token
// publishes to a subject and the function's subject trigger fires; without
// the token, or with a wrong one, it is refused, and the token does not
// open the JetStream API.
func TestNATSListener(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, data, "--nats-listen", "127.0.0.1:0")
	m := natsURLRe.FindStringSubmatch(n.stderr.String())
	if m == nil {
		t.Fatalf("no NATS URL in the start-up log:\n%s", n.stderr.String())
	}
	url := m[1]
	tokenFile := filepath.Join(data, "nats.token")
	waitUntil(t, "how to connect printed", func() bool {
		return strings.Contains(n.stderr.String(), "nats: "+url+" (token: "+tokenFile+")")
	})
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(b))

	out, err := n.cli("deploy", guestDir(t, "orders", "echo", "triggers: [{type: subject, name: in, subject: \"orders.>\"}]\n"))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "subscription", func() bool { return n.triggers("orders")["in"].State == api.TriggerRunning })

	for _, opts := range [][]nats.Option{nil, {nats.Token("nt_wrong")}} {
		if nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...); err == nil {
			nc.Close()
			t.Errorf("connected with options %v", opts)
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("refusal: %v", err)
		}
	}
	nc, err := nats.Connect(url, nats.Token(token), nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := nats.NewMsg("orders.eu")
	msg.Data = []byte(`{"order":1}`)
	msg.Header.Set("Content-Type", "application/json")
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	st := n.delivered("orders", "in", `"data":{"order":1}`)
	if !strings.Contains(string(st.Response.Body), `"subject":"orders.eu"`) {
		t.Errorf("event %s", st.Response.Body)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err == nil {
		t.Error("the token opened the JetStream API")
	}
	if _, err := js.Publish(ctx, "events.orders.created", []byte(`{}`)); err == nil {
		t.Error("the token published on the event bus's subjects")
	}
}

// TestEmitFromSync: a synchronous invocation that answers with
// X-Hearth-Emit publishes an event that invokes the function subscribed
// to the topic — wasm, and sandbox where the tier is available.
func TestEmitFromSync(t *testing.T) {
	n := startNode(t, t.TempDir())
	if out, err := n.cli("deploy", guestDir(t, "consumer", "echo", "triggers: [{type: event, name: ev, topic: orders.created}]\n")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if out, err := n.cli("deploy", guestDir(t, "producer", "emit", "")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "consumer", func() bool { return n.triggers("consumer")["ev"].State == api.TriggerRunning })

	resp, body := n.do("POST", "/fn/producer?topic=orders.created", strings.NewReader(`{"order":9}`), "Content-Type", "application/json")
	inv := resp.Header.Get("X-Hearth-Invocation-Id")
	if resp.StatusCode != 200 || string(body) != `{"order":9}` || resp.Header.Get("X-Hearth-Emit") != "" || resp.Header.Get("X-Hearth-Event-Id") != inv || inv == "" {
		t.Fatalf("producer: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	st := n.delivered("consumer", "ev", `"order":9`)
	for _, want := range []string{`"source":"/functions/producer"`, `"type":"orders.created"`, `"id":"` + inv + `"`} {
		if !strings.Contains(string(st.Response.Body), want) {
			t.Errorf("consumer got %s, want %s", st.Response.Body, want)
		}
	}
	// A topic nobody subscribes to: the function's answer, and why no event.
	resp, body = n.do("POST", "/fn/producer?topic=nobody.listens", strings.NewReader(`{}`))
	if resp.StatusCode != 200 || string(body) != `{}` || !strings.Contains(resp.Header.Get("X-Hearth-Emit-Error"), "no function subscribes") {
		t.Errorf("unknown topic: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	// The sandbox tier: an http-contract program sets the header.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.py"), []byte(`import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Hearth-Emit", "orders.created")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
`), 0o644)
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte("name: pyemit\nisolation: sandbox\nprotocol: http\ncommand: [\"python3\", \"main.py\"]\ntimeout: 10s\n"), 0o644)
	out, err := n.cli("deploy", dir)
	if err != nil {
		if strings.Contains(out, "not available on this node") {
			t.Skip("the sandbox tier is not available on this machine")
		}
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	resp, body = n.do("POST", "/fn/pyemit", strings.NewReader(`{"order":10}`), "Content-Type", "application/json")
	inv = resp.Header.Get("X-Hearth-Invocation-Id")
	if resp.StatusCode != 201 || string(body) != `{"order":10}` || resp.Header.Get("X-Hearth-Event-Id") != inv {
		t.Fatalf("pyemit: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	st = n.delivered("consumer", "ev", `"order":10`)
	if !strings.Contains(string(st.Response.Body), `"source":"/functions/pyemit"`) {
		t.Errorf("consumer got %s", st.Response.Body)
	}
}

// TestTriggerCountersSurviveRestart: describe shows a trigger's counts and
// last firing after a graceful restart (written at shutdown) and after
// kill -9 (written every second).
func TestTriggerCountersSurviveRestart(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, data)
	out, err := n.cli("deploy", guestDir(t, "counted", "echo", "triggers:\n  - {type: event, name: ev, topic: jobs.done}\n  - {type: http, name: route, path: \"/jobs/{id}\"}\n"))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "consumer", func() bool { return n.triggers("counted")["ev"].State == api.TriggerRunning })
	for _, d := range []string{`{"job":1}`, `{"job":2}`} {
		if resp, body := n.do("POST", "/v1/events/jobs.done", strings.NewReader(d), "Content-Type", "application/json"); resp.StatusCode != 202 {
			t.Fatalf("publish: %d %s", resp.StatusCode, body)
		}
	}
	if resp, _ := n.do("GET", "/jobs/7", nil); resp.StatusCode != 200 {
		t.Fatalf("route: %d", resp.StatusCode)
	}
	waitUntil(t, "two successes", func() bool { return n.triggers("counted")["ev"].Succeeded == 2 })
	before := n.triggers("counted")
	if r := before["route"]; r.Fired != 1 || r.Succeeded != 1 || r.LastFiredAt == nil {
		t.Errorf("http trigger %+v", r)
	}

	check := func(n *node, fired uint64, want map[string]api.TriggerStatus) {
		t.Helper()
		got := n.triggers("counted")
		for name, w := range want {
			g := got[name]
			if g.Fired != w.Fired || g.Succeeded != w.Succeeded || g.Failed != w.Failed || g.LastFiredAt == nil || !g.LastFiredAt.Equal(*w.LastFiredAt) || g.LastInvocation != w.LastInvocation {
				t.Errorf("%s after the restart: %+v, before %+v", name, g, w)
			}
		}
		out, err := n.cli("describe", "counted")
		if err != nil {
			t.Fatalf("describe: %v\n%s", err, out)
		}
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			// ev event topic jobs.done running FIRED OK FAILED LAG LAST…
			if len(f) > 9 && f[0] == "ev" && f[1] == "event" {
				found = true
				if f[5] != strconv.FormatUint(fired, 10) || f[6] != strconv.FormatUint(fired, 10) || f[7] != "0" || f[9] == "-" {
					t.Errorf("describe: %q", line)
				}
			}
		}
		if !found {
			t.Errorf("describe lists no trigger ev:\n%s", out)
		}
	}

	n.stop(syscall.SIGTERM)
	n = startNode(t, data)
	check(n, 2, before)

	// kill -9 a second after the last event: the flusher wrote it.
	waitUntil(t, "consumer", func() bool { return n.triggers("counted")["ev"].State == api.TriggerRunning })
	n.do("POST", "/v1/events/jobs.done", strings.NewReader(`{"job":3}`), "Content-Type", "application/json")
	waitUntil(t, "three successes", func() bool { return n.triggers("counted")["ev"].Succeeded == 3 })
	before = n.triggers("counted")
	time.Sleep(1500 * time.Millisecond)
	n.stop(syscall.SIGKILL)
	n = startNode(t, data)
	check(n, 3, before)
}

// pyEventsDir is a sandbox function running the sandbox driver's
// testdata/pyevents, which publishes through $HEARTH_EVENTS_API.
func pyEventsDir(t *testing.T, name, extra string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot, "internal", "driver", "sandbox", "testdata", "pyevents", "main.py"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.py"), src, 0o644)
	man := "name: " + name + "\nisolation: sandbox\nprotocol: http\ncommand: [\"python3\", \"main.py\"]\ntimeout: 20s\n" + extra
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte(man), 0o644)
	return dir
}

// TestEventsEndpoint: a sandboxed function publishes events with
// POST http://$HEARTH_EVENTS_API/v1/events/{topic}: another function's
// event trigger receives them with the producer's source (whatever source
// the function claimed), a topic nobody subscribes to is 404, and a
// function that re-publishes every event it receives stops after the
// chain limit.
func TestEventsEndpoint(t *testing.T) {
	sandboxAvailable(t)
	n := startNode(t, t.TempDir())
	if out, err := n.cli("deploy", guestDir(t, "consumer", "echo", "triggers: [{type: event, name: ev, topic: orders.local}]\n")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if out, err := n.cli("deploy", pyEventsDir(t, "producer", "")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "consumer", func() bool { return n.triggers("consumer")["ev"].State == api.TriggerRunning })

	// Plain data: a new event, source /functions/producer, type the topic.
	resp, body := n.do("POST", "/fn/producer/orders.local", strings.NewReader(`{"order":11}`), "Content-Type", "application/json")
	var acc api.EventAccepted
	if resp.StatusCode != 200 || resp.Header.Get("X-Events-Status") != "202" || json.Unmarshal(body, &acc) != nil || acc.ID == "" || acc.Subscribers != 1 {
		t.Fatalf("producer: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	st := n.delivered("consumer", "ev", `"order":11`)
	for _, want := range []string{`"source":"/functions/producer"`, `"type":"orders.local"`, `"id":"` + acc.ID + `"`, `"hearthhops":1`} {
		if !strings.Contains(string(st.Response.Body), want) {
			t.Errorf("consumer got %s, want %s", st.Response.Body, want)
		}
	}
	// A structured CloudEvent claiming another source keeps its id and
	// type but not the source.
	ce := `{"specversion":"1.0","id":"ce-12","source":"/functions/consumer","type":"order.placed","data":{"order":12}}`
	resp, body = n.do("POST", "/fn/producer/orders.local", strings.NewReader(ce), "Content-Type", "application/cloudevents+json")
	if resp.Header.Get("X-Events-Status") != "202" {
		t.Fatalf("structured: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	st = n.delivered("consumer", "ev", `"order":12`)
	for _, want := range []string{`"source":"/functions/producer"`, `"type":"order.placed"`, `"id":"ce-12"`} {
		if !strings.Contains(string(st.Response.Body), want) {
			t.Errorf("consumer got %s, want %s", st.Response.Body, want)
		}
	}
	// Nobody subscribes; a malformed event.
	resp, body = n.do("POST", "/fn/producer/nobody.listens", strings.NewReader(`{}`), "Content-Type", "application/json")
	if resp.Header.Get("X-Events-Status") != "404" || errCode(t, body).Code != "unknown_topic" {
		t.Errorf("unknown topic: %v %s", resp.Header, body)
	}
	resp, body = n.do("POST", "/fn/producer/orders.local", strings.NewReader(`{"specversion":"1.0"}`), "Content-Type", "application/cloudevents+json")
	if resp.Header.Get("X-Events-Status") != "400" || errCode(t, body).Code != "malformed_event" {
		t.Errorf("malformed: %v %s", resp.Header, body)
	}

	// The loop guard: looper re-publishes each event it gets on its own
	// topic. The first event (published through the API) starts a chain;
	// the 16 emitted events after it run, the 17th is refused (508).
	if out, err := n.cli("deploy", pyEventsDir(t, "looper", "env: {TOPIC: loop.around}\ntriggers: [{type: event, name: ev, topic: loop.around}]\n")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "looper", func() bool { return n.triggers("looper")["ev"].State == api.TriggerRunning })
	if resp, body := n.do("POST", "/v1/events/loop.around", strings.NewReader(`{"n":1}`), "Content-Type", "application/json"); resp.StatusCode != 202 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	st = n.delivered("looper", "ev", `"code":"event_loop"`)
	time.Sleep(time.Second)
	if tr := n.triggers("looper")["ev"]; tr.Fired != 1+trigger.MaxHops || tr.Succeeded != tr.Fired || tr.LastInvocation != st.ID {
		t.Errorf("looper's trigger after the chain stopped: %+v (last %s), want %d firings", tr, st.ID, 1+trigger.MaxHops)
	}
}
