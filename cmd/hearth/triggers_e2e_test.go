package main

// End-to-end tests of triggers, the event bus and buckets through the real
// binary (helpers in e2e_test.go).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hearthdev/hearth/internal/api"
)

func (n *node) triggers(fn string) map[string]api.TriggerStatus {
	n.t.Helper()
	_, body := n.do("GET", "/v1/triggers?function="+fn, nil)
	var l api.TriggerList
	json.Unmarshal(body, &l)
	out := map[string]api.TriggerStatus{}
	for _, s := range l.Triggers {
		out[s.Name] = s
	}
	return out
}

func (n *node) invocation(id string) api.InvocationStatus {
	n.t.Helper()
	_, body := n.do("GET", "/v1/invocations/"+id, nil)
	var st api.InvocationStatus
	json.Unmarshal(body, &st)
	return st
}

// delivered waits until trigger name of fn has a last invocation that
// succeeded and whose stored response contains want, and returns it.
func (n *node) delivered(fn, name, want string) api.InvocationStatus {
	n.t.Helper()
	var st api.InvocationStatus
	waitUntilFor(n.t, fmt.Sprintf("%s/%s to deliver %q", fn, name, want), 20*time.Second, func() bool {
		tr, ok := n.triggers(fn)[name]
		if !ok || tr.LastInvocation == "" {
			return false
		}
		st = n.invocation(tr.LastInvocation)
		return st.Status == api.StatusSucceeded && st.Response != nil && strings.Contains(string(st.Response.Body), want)
	})
	return st
}

// externalNATS runs a NATS server with JetStream on a random port.
func externalNATS(t *testing.T) string {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func TestTriggersEndToEnd(t *testing.T) {
	natsURL := externalNATS(t)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	n := startNode(t, t.TempDir())
	triggers := fmt.Sprintf(`scale: {min: 0, max: 2}
triggers:
  - {type: cron, name: tick, schedule: "@every 1s"}
  - {type: subject, name: ext, subject: "ext.>", url: %q}
  - {type: bucket, name: up, bucket: uploads, prefix: "in/"}
  - {type: event, name: signup, topic: user.signup}
  - {type: http, name: api, path: "/api/hello/{id}", methods: [GET]}
`, natsURL)
	out, err := n.cli("deploy", guestDir(t, "echo", "echo", triggers))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}

	// cron: the echo guest returns the structured CloudEvent it got.
	n.delivered("echo", "tick", `"type":"dev.hearth.cron.tick"`)

	// subject on an external NATS.
	waitUntil(t, "ext subscription", func() bool { return n.triggers("echo")["ext"].State == api.TriggerRunning })
	nc.Publish("ext.orders", []byte(`{"order":42}`))
	nc.Flush()
	n.delivered("echo", "ext", `"data":{"order":42}`)

	// bucket: put through the API; the event carries key, size and digest.
	resp, body := n.do("PUT", "/v1/buckets/uploads/objects/in/photo.jpg", strings.NewReader("JPEGDATA"), "Content-Type", "image/jpeg")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put: %d %s", resp.StatusCode, body)
	}
	var obj api.Object
	json.Unmarshal(body, &obj)
	st := n.delivered("echo", "up", `"key":"in/photo.jpg"`)
	if !strings.Contains(string(st.Response.Body), `"size":8`) || !strings.Contains(string(st.Response.Body), obj.Digest) {
		t.Errorf("bucket event %s", st.Response.Body)
	}
	resp, body = n.do("GET", "/v1/buckets/uploads/objects/in/photo.jpg", nil)
	if resp.StatusCode != 200 || string(body) != "JPEGDATA" || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Errorf("get: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if out, err := n.cli("bucket", "ls", "uploads"); err != nil || !strings.Contains(out, "in/photo.jpg") {
		t.Errorf("bucket ls: %v\n%s", err, out)
	}

	// event bus: plain data is wrapped in a CloudEvent.
	resp, body = n.do("POST", "/v1/events/user.signup", strings.NewReader(`{"user":"ann"}`), "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	n.delivered("echo", "signup", `"user":"ann"`)
	// A structured CloudEvent through the CLI.
	if out, err := n.cli("events", "publish", "user.signup", "-d", `{"user":"bob"}`); err != nil {
		t.Errorf("hearth events publish: %v\n%s", err, out)
	}
	n.delivered("echo", "signup", `"user":"bob"`)
	// Unknown topic, malformed event.
	resp, body = n.do("POST", "/v1/events/nobody.listens", strings.NewReader(`x`))
	if resp.StatusCode != 404 || errCode(t, body).Code != "unknown_topic" {
		t.Errorf("unknown topic: %d %s", resp.StatusCode, body)
	}
	resp, body = n.do("POST", "/v1/events/user.signup", strings.NewReader(`{"specversion":"1.0","id":"1"}`), "Content-Type", "application/cloudevents+json")
	if resp.StatusCode != 400 || errCode(t, body).Code != "malformed_event" || !strings.Contains(errCode(t, body).Message, "source") {
		t.Errorf("malformed: %d %s", resp.StatusCode, body)
	}

	// http route.
	resp, _ = n.do("GET", "/api/hello/7", nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Path") != "/api/hello/7" {
		t.Errorf("route: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = n.do("GET", "/api/hello/7", nil, "Authorization", "")
	if resp.StatusCode != 401 {
		t.Errorf("route without a key: %d", resp.StatusCode)
	}

	// describe lists the triggers; metrics count them.
	out, err = n.cli("describe", "echo")
	if err != nil || !strings.Contains(out, "tick") || !strings.Contains(out, "@every 1s") || !strings.Contains(out, "topic user.signup") {
		t.Errorf("describe: %v\n%s", err, out)
	}
	if out, err := n.cli("triggers", "ls"); err != nil || !strings.Contains(out, "signup") {
		t.Errorf("triggers ls: %v\n%s", err, out)
	}
	_, body = n.do("GET", "/metrics", nil)
	for _, m := range []string{`hearth_trigger_fired_total{function="echo",trigger="tick",type="cron"}`, "hearth_trigger_lag", "hearth_async_queue_depth", "hearth_async_dlq_size"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	// Removing the function stops its triggers.
	n.cli("rm", "echo")
	waitUntil(t, "triggers gone", func() bool { return len(n.triggers("")) == 0 })
}

func TestTriggerBadInput(t *testing.T) {
	n := startNode(t, t.TempDir())
	for _, tc := range []struct{ extra, field string }{
		{"triggers: [{type: cron, schedule: \"61 * * * *\"}]", "triggers[0].schedule"},
		{"triggers: [{type: cron, schedule: \"@daily\"}, {type: queue, topic: x}]", "triggers[1].type"},
		{"triggers: [{type: event, topic: a, schedule: \"@daily\"}]", "triggers[0].schedule"},
		{"triggers: [{type: http, path: /fn/other}]", "triggers[0].path"},
	} {
		dir := guestDir(t, "bad", "echo", tc.extra)
		out, err := n.cli("deploy", dir)
		if err == nil || !strings.Contains(out, tc.field) {
			t.Errorf("deploy with %s: %v\n%s", tc.extra, err, out)
		}
	}
	resp, _ := n.do("GET", "/v1/functions/bad", nil)
	if resp.StatusCode != 404 {
		t.Errorf("a function with bad triggers was created: %d", resp.StatusCode)
	}
	if l := n.triggers(""); len(l) != 0 {
		t.Errorf("triggers half-created: %v", l)
	}
}

// TestCronRestart: a cron trigger fires on time, a restart does not run
// a tick twice, and after the restart it starts the function from zero
// instances.
func TestCronRestart(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, data)
	out, err := n.cli("deploy", guestDir(t, "ticker", "stderr", "scale: {min: 0, max: 1}\ntriggers: [{type: cron, name: s, schedule: \"@every 1s\", catch_up: all}]\n"))
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "two ticks", func() bool { return n.triggers("ticker")["s"].Fired >= 2 })
	n.stop(syscall.SIGTERM)
	time.Sleep(2500 * time.Millisecond) // misses two or three ticks; catch_up: all fires them

	n = startNode(t, data)
	before := n.triggers("ticker")["s"].Fired // the counters survive the restart
	if before < 2 {
		t.Errorf("fired %d after the restart, want at least the 2 before it", before)
	}
	waitUntil(t, "ticks after the restart", func() bool { return n.triggers("ticker")["s"].Fired >= before+3 })
	time.Sleep(1500 * time.Millisecond)
	// Every invocation logged its line once: no tick ran twice.
	out, err = n.cli("logs", "ticker", "-o", "json")
	if err != nil {
		t.Fatalf("logs: %v\n%s", err, out)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e api.LogEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.Line == "a line for the logs" {
			seen[e.InvocationID]++
		}
	}
	if len(seen) < 5 {
		t.Errorf("%d ticks ran in about 6 s", len(seen))
	}
	for id, c := range seen {
		if c > 1 {
			t.Errorf("invocation %s ran %d times", id, c)
		}
	}
	_, body := n.do("GET", "/metrics", nil)
	if !strings.Contains(string(body), `hearth_cold_starts_total{function="ticker"}`) {
		t.Errorf("the restarted node did not start ticker from zero:\n%s", body)
	}
}

// TestTriggersSandbox delivers bus and bucket events into a sandbox
// function (http contract: binary mode); skipped where the sandbox tier is
// not available.
func TestTriggersSandbox(t *testing.T) {
	n := startNode(t, t.TempDir())
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot, "examples", "py-http", "main.py"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.py"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte(`name: pyev
isolation: sandbox
protocol: http
command: ["python3", "main.py"]
timeout: 10s
triggers:
  - {type: event, name: ev, topic: orders.created}
  - {type: bucket, name: b, bucket: inbox}
`), 0o644)
	out, err := n.cli("deploy", dir)
	if err != nil {
		if strings.Contains(out, "not available on this node") {
			t.Skip("the sandbox tier is not available on this machine")
		}
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	waitUntil(t, "consumers", func() bool {
		tr := n.triggers("pyev")
		return tr["ev"].State == api.TriggerRunning && tr["b"].State == api.TriggerRunning
	})
	resp, body := n.do("POST", "/v1/events/orders.created", strings.NewReader(`{"order":7}`), "Content-Type", "application/json")
	if resp.StatusCode != 202 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	// py-http echoes the body: in binary mode, the event's data.
	st := n.delivered("pyev", "ev", `{"order":7}`)
	if string(st.Response.Body) != `{"order":7}` {
		t.Errorf("sandbox got %q", st.Response.Body)
	}
	n.do("PUT", "/v1/buckets/inbox/objects/a.txt", strings.NewReader("hello"))
	n.delivered("pyev", "b", `"key":"a.txt"`)
}
