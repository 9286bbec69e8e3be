package manifest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestTriggersGood(t *testing.T) {
	src := wasmBase + `triggers:
  - {type: cron, schedule: "*/5 * * * *", timezone: Europe/Paris}
  - {type: cron, name: nightly, schedule: "@daily", catch_up: none}
  - {type: cron, schedule: "@every 10s", catch_up: all}
  - {type: subject, subject: "orders.>"}
  - {type: subject, subject: "ext.*", url: "nats://127.0.0.1:4222", concurrency: 8}
  - {type: stream, stream: ORDERS, subject: "orders.new", durable: d1, batch: 50, concurrency: 4}
  - {type: bucket, bucket: uploads, events: [put], prefix: "img/"}
  - {type: bucket, bucket: docs}
  - {type: event, topic: "user.signup"}
  - {type: event, topic: "user.>"}
  - {type: http, path: "/api/users/{id}", methods: [GET, POST]}
  - {type: http, path: "/hooks/{rest...}"}
`
	m, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, tr := range m.Triggers {
		names = append(names, tr.Name)
	}
	want := []string{"cron-1", "nightly", "cron-3", "subject-1", "subject-2", "stream-1", "bucket-1", "bucket-2", "event-1", "event-2", "http-1", "http-2"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	if m.Triggers[0].CatchUp != CatchUpLast || m.Triggers[5].Batch != 50 || m.Triggers[3].Concurrency != 1 {
		t.Errorf("defaults: %+v", m.Triggers)
	}
	if !reflect.DeepEqual(m.Triggers[7].Events, []string{"put", "delete"}) {
		t.Errorf("bucket default events %v", m.Triggers[7].Events)
	}
	// JSON round trip validates.
	b, _ := json.Marshal(m)
	var back Manifest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil || !reflect.DeepEqual(back.Triggers, m.Triggers) {
		t.Errorf("round trip: %v", err)
	}
}

func TestTriggersBad(t *testing.T) {
	tests := []struct {
		name, yaml, field, problem string
	}{
		{"not a list", "triggers: {type: cron}", "triggers", "must be a list"},
		{"not a mapping", "triggers: [cron]", "triggers[0]", "must be a mapping"},
		{"type missing", "triggers: [{schedule: '* * * * *'}]", "triggers[0].type", "is required"},
		{"unknown type", "triggers: [{type: cron}, {type: kafka, topic: x}]", "triggers[1].type", `"kafka" is not a trigger type`},
		{"unknown field", "triggers: [{type: cron, schedule: '@daily', colour: red}]", "triggers[0].colour", "unknown field"},
		{"field of another type", "triggers: [{type: cron, schedule: '@daily', subject: a}]", "triggers[0].subject", "not a field of cron triggers"},
		{"bad cron", "triggers: [{type: cron, schedule: '* * *'}]", "triggers[0].schedule", "not a valid cron expression"},
		{"bad cron field", "triggers: [{type: cron, schedule: '61 * * * *'}]", "triggers[0].schedule", "not a valid cron expression"},
		{"schedule missing", "triggers: [{type: cron}]", "triggers[0].schedule", "is required"},
		{"every too short", "triggers: [{type: cron, schedule: '@every 100ms'}]", "triggers[0].schedule", "shorter than the minimum"},
		{"every garbage", "triggers: [{type: cron, schedule: '@every soon'}]", "triggers[0].schedule", "not a duration"},
		{"never fires", "triggers: [{type: cron, schedule: '0 0 30 2 *'}]", "triggers[0].schedule", "never fires"},
		{"tz in schedule", "triggers: [{type: cron, schedule: 'CRON_TZ=UTC * * * * *'}]", "triggers[0].schedule", "timezone field"},
		{"bad timezone", "triggers: [{type: cron, schedule: '@daily', timezone: Mars/Olympus}]", "triggers[0].timezone", "not a time zone"},
		{"bad catch-up", "triggers: [{type: cron, schedule: '@daily', catch_up: some}]", "triggers[0].catch_up", "not a catch-up policy"},
		{"duplicate name", "triggers: [{type: event, name: a, topic: x}, {type: event, name: a, topic: y}]", "triggers[1].name", "must be unique"},
		{"bad name", "triggers: [{type: event, name: A_B, topic: x}]", "triggers[0].name", "not a valid trigger name"},
		{"subject missing", "triggers: [{type: subject}]", "triggers[0].subject", "is required"},
		{"subject bad wildcard", "triggers: [{type: subject, subject: 'a.>.b'}]", "triggers[0].subject", "last token"},
		{"subject empty token", "triggers: [{type: subject, subject: 'a..b'}]", "triggers[0].subject", "empty token"},
		{"subject reserved", "triggers: [{type: subject, subject: 'async.>'}]", "triggers[0].subject", "reserved"},
		{"subject Hearth's inbox", "triggers: [{type: subject, subject: '_HEARTH_INBOX.>'}]", "triggers[0].subject", "reserved"},
		{"subject bad url", "triggers: [{type: subject, subject: a, url: 'http://x'}]", "triggers[0].url", "not a NATS server URL"},
		{"stream missing", "triggers: [{type: stream}]", "triggers[0].stream", "is required"},
		{"stream hearth", "triggers: [{type: stream, stream: HEARTH_ASYNC}]", "triggers[0].stream", "Hearth's own"},
		{"stream bad name", "triggers: [{type: stream, stream: 'a.b'}]", "triggers[0].stream", "not a stream name"},
		{"batch zero", "triggers: [{type: stream, stream: S, batch: 0}]", "triggers[0].batch", "out of range"},
		{"batch big", "triggers: [{type: stream, stream: S, batch: 1001}]", "triggers[0].batch", "out of range"},
		{"concurrency big", "triggers: [{type: stream, stream: S, concurrency: 65}]", "triggers[0].concurrency", "out of range"},
		{"bucket missing", "triggers: [{type: bucket}]", "triggers[0].bucket", "is required"},
		{"bucket bad", "triggers: [{type: bucket, bucket: Up_Loads}]", "triggers[0].bucket", "not a bucket name"},
		{"bucket event", "triggers: [{type: bucket, bucket: b, events: [put, copy]}]", "triggers[0].events[1]", "not a bucket event"},
		{"topic missing", "triggers: [{type: event}]", "triggers[0].topic", "is required"},
		{"topic bad", "triggers: [{type: event, topic: 'a b'}]", "triggers[0].topic", "not a topic"},
		{"path missing", "triggers: [{type: http}]", "triggers[0].path", "is required"},
		{"path relative", "triggers: [{type: http, path: api}]", "triggers[0].path", "must start with /"},
		{"path reserved", "triggers: [{type: http, path: /v1/things}]", "triggers[0].path", "Hearth serves itself"},
		{"path fn", "triggers: [{type: http, path: /fn/x}]", "triggers[0].path", "Hearth serves itself"},
		{"path bad pattern", "triggers: [{type: http, path: '/a/{b'}]", "triggers[0].path", "not a valid route pattern"},
		{"bad method", "triggers: [{type: http, path: /a, methods: [GET, FETCH]}]", "triggers[0].methods[1]", "not an HTTP method"},
		{"dup method", "triggers: [{type: http, path: /a, methods: [GET, GET]}]", "triggers[0].methods[1]", "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(wasmBase + tt.yaml + "\n"))
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not a FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("got field %q problem %q; want %q containing %q", fe.Field, fe.Problem, tt.field, tt.problem)
			}
		})
	}
}
