package manifest

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // cron time zones must not depend on the host's zoneinfo
	"unicode/utf8"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// Trigger types.
const (
	TriggerCron    = "cron"    // a schedule
	TriggerSubject = "subject" // a core NATS subject
	TriggerStream  = "stream"  // a JetStream stream, durable consumer
	TriggerBucket  = "bucket"  // put and delete events of an object-store bucket
	TriggerEvent   = "event"   // a topic of the event bus (POST /v1/events/{topic})
	TriggerHTTP    = "http"    // extra HTTP routes beyond /fn/{name}
)

// Cron catch-up policies: what a cron trigger does with the ticks it missed
// while the node was down.
const (
	CatchUpLast = "last" // fire once for the most recent missed tick (default)
	CatchUpAll  = "all"  // fire every missed tick, oldest first (at most MaxCatchUp)
	CatchUpNone = "none" // skip missed ticks
)

// Bucket events.
const (
	BucketPut    = "put"
	BucketDelete = "delete"
)

// Limits and defaults of triggers.
const (
	MaxTriggers          = 32
	DefaultStreamBatch   = 10
	MaxStreamBatch       = 1000
	MaxTriggerConcurrent = 64
	// MaxCatchUp bounds how many missed ticks catch_up: all fires.
	MaxCatchUp = 1000
	// MinCronInterval is the shortest @every interval.
	MinCronInterval = time.Second
)

// Trigger makes something other than an HTTP call invoke the function. Type
// says which fields apply; Parse rejects fields of other types. Every
// trigger has a Name, unique within the function: given, or "<type>-<n>"
// for the n-th trigger of that type. The name keys the trigger's durable
// state (the last cron tick, the stream position), so keep it stable across
// deploys.
//
// A trigger's firing is queued as an asynchronous invocation of the
// function, so the function's retry policy, dead-letter queue and
// destinations apply; the event reaches the function as a CloudEvent.
type Trigger struct {
	Type string `json:"type" yaml:"type"`
	Name string `json:"name" yaml:"name"`

	// cron: a standard 5-field expression ("*/5 * * * *"), a descriptor
	// (@hourly, @daily …) or "@every <duration>"; evaluated in Timezone
	// (an IANA name, default UTC). CatchUp is last, all or none.
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	Timezone string `json:"timezone,omitempty" yaml:"timezone,omitempty"`
	CatchUp  string `json:"catch_up,omitempty" yaml:"catch_up,omitempty"`

	// subject: Subject (wildcards allowed). stream: Stream, an optional
	// Subject filter, the Durable consumer name (default
	// hearth-<function>-<trigger>), Batch and Concurrency. Both read the
	// node's NATS unless URL names another server.
	Subject     string `json:"subject,omitempty" yaml:"subject,omitempty"`
	Stream      string `json:"stream,omitempty" yaml:"stream,omitempty"`
	Durable     string `json:"durable,omitempty" yaml:"durable,omitempty"`
	Batch       int    `json:"batch,omitempty" yaml:"batch,omitempty"`
	Concurrency int    `json:"concurrency,omitempty" yaml:"concurrency,omitempty"`
	URL         string `json:"url,omitempty" yaml:"url,omitempty"`

	// bucket: the Bucket, the Events (put, delete; default both) and an
	// optional key Prefix.
	Bucket string   `json:"bucket,omitempty" yaml:"bucket,omitempty"`
	Events []string `json:"events,omitempty" yaml:"events,omitempty,flow"`
	Prefix string   `json:"prefix,omitempty" yaml:"prefix,omitempty"`

	// event: the Topic of the event bus (dot-separated; * and > wildcards).
	Topic string `json:"topic,omitempty" yaml:"topic,omitempty"`

	// http: a Path pattern in net/http ServeMux syntax ("/api/users/{id}")
	// and the Methods it answers (default: any).
	Path    string   `json:"path,omitempty" yaml:"path,omitempty"`
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty,flow"`
}

// triggerFields lists the fields each trigger type takes besides type and name.
var triggerFields = map[string][]string{
	TriggerCron:    {"schedule", "timezone", "catch_up"},
	TriggerSubject: {"subject", "url", "concurrency"},
	TriggerStream:  {"stream", "subject", "durable", "batch", "concurrency", "url"},
	TriggerBucket:  {"bucket", "events", "prefix"},
	TriggerEvent:   {"topic"},
	TriggerHTTP:    {"path", "methods"},
}

var triggerTypes = []string{TriggerCron, TriggerSubject, TriggerStream, TriggerBucket, TriggerEvent, TriggerHTTP}

var (
	triggerNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
	streamNameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	topicTokenRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// decodeTriggers decodes the triggers list and applies defaults.
func decodeTriggers(n *yaml.Node) ([]Trigger, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("must be a list of triggers, e.g. [{type: cron, schedule: \"*/5 * * * *\"}]")
	}
	if len(n.Content) > MaxTriggers {
		return nil, fmt.Errorf("has %d triggers; the limit is %d", len(n.Content), MaxTriggers)
	}
	var out []Trigger
	for i, e := range n.Content {
		path := fmt.Sprintf("triggers[%d]", i)
		var t Trigger
		present := map[string]bool{}
		err := eachField(resolve(e), path, false, func(key string, v *yaml.Node) (err error) {
			present[key] = true
			switch key {
			case "type":
				t.Type, err = str(v)
			case "name":
				t.Name, err = str(v)
			case "schedule":
				t.Schedule, err = str(v)
			case "timezone":
				t.Timezone, err = str(v)
			case "catch_up":
				t.CatchUp, err = str(v)
			case "subject":
				t.Subject, err = str(v)
			case "stream":
				t.Stream, err = str(v)
			case "durable":
				t.Durable, err = str(v)
			case "batch":
				t.Batch, err = integer(v)
				if err == nil && t.Batch == 0 {
					err = fmt.Errorf("0 is out of range; use 1 to %d", MaxStreamBatch)
				}
			case "concurrency":
				t.Concurrency, err = integer(v)
				if err == nil && t.Concurrency == 0 {
					err = fmt.Errorf("0 is out of range; use 1 to %d", MaxTriggerConcurrent)
				}
			case "url":
				t.URL, err = str(v)
			case "bucket":
				t.Bucket, err = str(v)
			case "events":
				t.Events, err = strList(v, path+".events")
			case "prefix":
				t.Prefix, err = str(v)
			case "topic":
				t.Topic, err = str(v)
			case "path":
				t.Path, err = str(v)
			case "methods":
				t.Methods, err = strList(v, path+".methods")
			default:
				err = errUnknown
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		fields, ok := triggerFields[t.Type]
		if t.Type == "" {
			return nil, &FieldError{Field: path + ".type", Problem: "is required; use one of " + strings.Join(triggerTypes, ", ")}
		}
		if !ok {
			return nil, &FieldError{Field: path + ".type", Problem: fmt.Sprintf("%q is not a trigger type; use one of %s", t.Type, strings.Join(triggerTypes, ", "))}
		}
		for _, k := range sortedKeys(present) {
			if k != "type" && k != "name" && !slices.Contains(fields, k) {
				return nil, &FieldError{Field: path + "." + k, Problem: fmt.Sprintf("is not a field of %s triggers (they take %s)", t.Type, strings.Join(fields, ", "))}
			}
		}
		out = append(out, t)
	}
	applyTriggerDefaults(out)
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// applyTriggerDefaults names unnamed triggers and fills in defaults.
func applyTriggerDefaults(ts []Trigger) {
	count := map[string]int{}
	for i := range ts {
		t := &ts[i]
		count[t.Type]++
		if t.Name == "" {
			t.Name = fmt.Sprintf("%s-%d", t.Type, count[t.Type])
		}
		switch t.Type {
		case TriggerCron:
			if t.CatchUp == "" {
				t.CatchUp = CatchUpLast
			}
		case TriggerStream:
			if t.Batch == 0 {
				t.Batch = DefaultStreamBatch
			}
			if t.Concurrency == 0 {
				t.Concurrency = 1
			}
		case TriggerSubject:
			if t.Concurrency == 0 {
				t.Concurrency = 1
			}
		case TriggerBucket:
			if len(t.Events) == 0 {
				t.Events = []string{BucketPut, BucketDelete}
			}
		}
	}
}

// checkTriggers validates every trigger.
func (m *Manifest) checkTriggers() *FieldError {
	if len(m.Triggers) > MaxTriggers {
		return bad("triggers", "has %d triggers; the limit is %d", len(m.Triggers), MaxTriggers)
	}
	seen := map[string]int{}
	for i, t := range m.Triggers {
		path := fmt.Sprintf("triggers[%d]", i)
		if !triggerNameRE.MatchString(t.Name) {
			return bad(path+".name", "%s is not a valid trigger name; use 1 to 32 lowercase letters, digits and dashes", quote(t.Name))
		}
		if j, dup := seen[t.Name]; dup {
			return bad(path+".name", "%q is also the name of triggers[%d]; trigger names must be unique", t.Name, j)
		}
		seen[t.Name] = i
		if fe := t.check(path, m.Name); fe != nil {
			return fe
		}
	}
	return nil
}

// ValidateTrigger checks one trigger of function fn; path names it in
// errors (e.g. "triggers[2]").
func ValidateTrigger(t Trigger, fn, path string) error {
	if !triggerNameRE.MatchString(t.Name) {
		return bad(path+".name", "%s is not a valid trigger name; use 1 to 32 lowercase letters, digits and dashes", quote(t.Name))
	}
	if fe := t.check(path, fn); fe != nil {
		return fe
	}
	return nil
}

func (t Trigger) check(path, fn string) *FieldError {
	f := func(name string) string { return path + "." + name }
	fields, ok := triggerFields[t.Type]
	if !ok {
		return bad(f("type"), "%s is not a trigger type; use one of %s", quote(t.Type), strings.Join(triggerTypes, ", "))
	}
	// Fields of other types must be empty (a Manifest decoded from JSON
	// skipped Parse's check).
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"schedule", t.Schedule != ""}, {"timezone", t.Timezone != ""}, {"catch_up", t.CatchUp != ""},
		{"subject", t.Subject != ""}, {"stream", t.Stream != ""}, {"durable", t.Durable != ""},
		{"batch", t.Batch != 0}, {"concurrency", t.Concurrency != 0}, {"url", t.URL != ""},
		{"bucket", t.Bucket != ""}, {"events", len(t.Events) > 0}, {"prefix", t.Prefix != ""},
		{"topic", t.Topic != ""}, {"path", t.Path != ""}, {"methods", len(t.Methods) > 0},
	} {
		if o.set && !slices.Contains(fields, o.name) {
			return bad(f(o.name), "is not a field of %s triggers (they take %s)", t.Type, strings.Join(fields, ", "))
		}
	}
	switch t.Type {
	case TriggerCron:
		if t.Schedule == "" {
			return bad(f("schedule"), `is required; use a 5-field cron expression such as "*/5 * * * *", a descriptor such as @hourly, or "@every 10m"`)
		}
		if _, err := ParseSchedule(t.Schedule, t.Timezone); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return bad(f(fe.Field), "%s", fe.Problem)
			}
			return bad(f("schedule"), "%s", err)
		}
		switch t.CatchUp {
		case CatchUpLast, CatchUpAll, CatchUpNone:
		default:
			return bad(f("catch_up"), "%s is not a catch-up policy; use last (fire once for missed ticks), all or none", quote(t.CatchUp))
		}
	case TriggerSubject:
		if t.Subject == "" {
			return bad(f("subject"), `is required, e.g. "orders.>"`)
		}
		if err := checkSubject(t.Subject, true); err != nil {
			return bad(f("subject"), "%s", err)
		}
		if t.URL == "" && reservedSubject(t.Subject) {
			return bad(f("subject"), "%s is reserved for Hearth's own use on the node's NATS; use another subject, or the event bus (type: event)", quote(t.Subject))
		}
		if fe := checkConcurrency(t.Concurrency, f("concurrency")); fe != nil {
			return fe
		}
		if fe := checkNATSURL(t.URL, f("url")); fe != nil {
			return fe
		}
	case TriggerStream:
		if t.Stream == "" {
			return bad(f("stream"), "is required: the name of a JetStream stream")
		}
		if !streamNameRE.MatchString(t.Stream) {
			return bad(f("stream"), "%s is not a stream name; use 1 to 64 letters, digits, _ and -", quote(t.Stream))
		}
		if t.URL == "" && (strings.HasPrefix(t.Stream, "HEARTH_") || strings.HasPrefix(t.Stream, "KV_") || strings.HasPrefix(t.Stream, "OBJ_")) {
			return bad(f("stream"), "%s is one of Hearth's own streams; use type: bucket or type: event for object and bus events", quote(t.Stream))
		}
		if t.Subject != "" {
			if err := checkSubject(t.Subject, true); err != nil {
				return bad(f("subject"), "%s", err)
			}
		}
		if t.Durable != "" && !streamNameRE.MatchString(t.Durable) {
			return bad(f("durable"), "%s is not a consumer name; use 1 to 64 letters, digits, _ and -", quote(t.Durable))
		}
		if t.Batch < 1 || t.Batch > MaxStreamBatch {
			return bad(f("batch"), "%d is out of range; use 1 to %d", t.Batch, MaxStreamBatch)
		}
		if fe := checkConcurrency(t.Concurrency, f("concurrency")); fe != nil {
			return fe
		}
		if fe := checkNATSURL(t.URL, f("url")); fe != nil {
			return fe
		}
	case TriggerBucket:
		if t.Bucket == "" {
			return bad(f("bucket"), "is required: the name of an object-store bucket (hearth bucket put creates one)")
		}
		if !ValidBucketName(t.Bucket) {
			return bad(f("bucket"), "%s is not a bucket name; use 1 to 63 lowercase letters, digits and dashes", quote(t.Bucket))
		}
		if len(t.Events) == 0 {
			return bad(f("events"), "is empty; use put, delete or both")
		}
		for j, e := range t.Events {
			if e != BucketPut && e != BucketDelete {
				return bad(fmt.Sprintf("%s[%d]", f("events"), j), "%s is not a bucket event; use put or delete", quote(e))
			}
		}
		if len(t.Prefix) > 1024 || !utf8.ValidString(t.Prefix) {
			return bad(f("prefix"), "must be valid UTF-8 of at most 1024 bytes")
		}
	case TriggerEvent:
		if t.Topic == "" {
			return bad(f("topic"), `is required, e.g. "user.signup"`)
		}
		if err := CheckTopic(t.Topic, true); err != nil {
			return bad(f("topic"), "%s", err)
		}
	case TriggerHTTP:
		if fe := checkRoutePath(t.Path, f("path")); fe != nil {
			return fe
		}
		for j, meth := range t.Methods {
			if !slices.Contains(httpMethods, meth) {
				return bad(fmt.Sprintf("%s[%d]", f("methods"), j), "%s is not an HTTP method; use %s", quote(meth), strings.Join(httpMethods, ", "))
			}
			if slices.Index(t.Methods, meth) != j {
				return bad(fmt.Sprintf("%s[%d]", f("methods"), j), "%s is listed twice", meth)
			}
		}
	}
	return nil
}

func checkConcurrency(n int, field string) *FieldError {
	if n < 1 || n > MaxTriggerConcurrent {
		return bad(field, "%d is out of range; use 1 to %d", n, MaxTriggerConcurrent)
	}
	return nil
}

func checkNATSURL(raw, field string) *FieldError {
	if raw == "" {
		return nil
	}
	for _, s := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			return bad(field, "%s is not a NATS server URL; use e.g. nats://nats.example.com:4222", quote(raw))
		}
	}
	return nil
}

var httpMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions,
}

// reservedRoutes are path prefixes the gateway serves itself.
var reservedRoutes = []string{"/v1", "/fn", "/async", "/healthz", "/metrics"}

func checkRoutePath(p, field string) *FieldError {
	switch {
	case p == "":
		return bad(field, `is required, e.g. "/api/users/{id}"`)
	case !strings.HasPrefix(p, "/"):
		return bad(field, "%s must start with /", quote(p))
	case len(p) > 1024 || !utf8.ValidString(p) || strings.ContainsAny(p, " \t\r\n\x00?#"):
		return bad(field, "%s is not a URL path: no spaces, control characters, ? or #, at most 1024 bytes", quote(p))
	}
	for _, r := range reservedRoutes {
		if p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(p, r+"{") {
			return bad(field, "%s is under %s, which Hearth serves itself", quote(p), r)
		}
	}
	// Let net/http judge the pattern syntax: it panics on a bad one.
	var perr error
	func() {
		defer func() {
			if r := recover(); r != nil {
				perr = fmt.Errorf("%v", r)
			}
		}()
		http.NewServeMux().HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}()
	if perr != nil {
		msg := perr.Error()
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "parsing") {
			msg = msg[i+2:]
		}
		return bad(field, "%s is not a valid route pattern: %s (use net/http syntax such as /api/users/{id} or /files/{path...})", quote(p), msg)
	}
	return nil
}

// ParseSchedule parses a cron trigger's schedule in the time zone tz (an
// IANA name; empty means UTC). Errors are *FieldErrors naming "schedule"
// or "timezone" (relative to the trigger).
func ParseSchedule(spec, tz string) (cron.Schedule, error) {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, &FieldError{Field: "schedule", Problem: "must not set a time zone; use the timezone field"}
	}
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" {
			return nil, &FieldError{Field: "timezone", Problem: fmt.Sprintf("%s is not a time zone; use an IANA name such as Europe/Paris or UTC", quote(tz))}
		}
		loc = l
	}
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, &FieldError{Field: "schedule", Problem: fmt.Sprintf("%s: %q is not a duration; use e.g. @every 10m", quote(spec), strings.TrimSpace(d))}
		}
		if dur < MinCronInterval {
			return nil, &FieldError{Field: "schedule", Problem: fmt.Sprintf("%s is shorter than the minimum of %s", quote(spec), MinCronInterval)}
		}
		if dur%time.Second != 0 {
			return nil, &FieldError{Field: "schedule", Problem: fmt.Sprintf("%s: use a whole number of seconds", quote(spec))}
		}
	}
	s, err := cron.ParseStandard("CRON_TZ=" + loc.String() + " " + spec)
	if err != nil {
		return nil, &FieldError{Field: "schedule", Problem: fmt.Sprintf("%s is not a valid cron expression: %v; use 5 fields (minute hour day-of-month month day-of-week) such as \"*/5 * * * *\", a descriptor such as @daily, or \"@every 10m\"", quote(spec), err)}
	}
	// A schedule that never fires (e.g. 30 February) would spin the
	// search for five years at every start; reject it.
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, &FieldError{Field: "schedule", Problem: fmt.Sprintf("%s never fires", quote(spec))}
	}
	return s, nil
}

// ValidBucketName reports whether name can name an object-store bucket.
func ValidBucketName(name string) bool { return nameRE.MatchString(name) }

// CheckTopic checks an event-bus topic: dot-separated tokens of letters,
// digits, _ and -; with wildcards, a token may also be * and the last
// token >.
func CheckTopic(topic string, wildcards bool) error {
	if len(topic) > 200 {
		return errors.New("is longer than 200 bytes")
	}
	toks := strings.Split(topic, ".")
	for i, tok := range toks {
		switch {
		case wildcards && tok == "*":
		case wildcards && tok == ">" && i == len(toks)-1:
		case tok == "*" || tok == ">":
			return fmt.Errorf("%s: a topic to publish to cannot contain wildcards", quote(topic))
		case !topicTokenRE.MatchString(tok):
			return fmt.Errorf("%s is not a topic; use dot-separated words of letters, digits, _ and -, such as user.signup", quote(topic))
		}
	}
	return nil
}

// checkSubject checks a NATS subject.
func checkSubject(s string, wildcards bool) error {
	if len(s) > 255 || !utf8.ValidString(s) {
		return errors.New("must be valid UTF-8 of at most 255 bytes")
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("%s has an empty token; separate words with single dots", quote(s))
		case strings.ContainsAny(tok, " \t\r\n\x00"):
			return fmt.Errorf("%s contains whitespace", quote(s))
		case tok == ">" && i != len(toks)-1:
			return fmt.Errorf("%s: > may only be the last token", quote(s))
		case (tok == "*" || tok == ">") && !wildcards:
			return fmt.Errorf("%s: no wildcards here", quote(s))
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%s: wildcards must be whole tokens", quote(s))
		}
	}
	return nil
}

// reservedSubject reports whether subject may overlap subjects Hearth uses
// on its own NATS.
func reservedSubject(s string) bool {
	first, _, _ := strings.Cut(s, ".")
	switch first {
	case "*", ">", "async", "dlq", "logs", "inv", "events":
		return true
	}
	// _HEARTH_INBOX: the replies to Hearth's own requests (store.InboxPrefix).
	return strings.HasPrefix(s, "$") || strings.HasPrefix(s, "_INBOX") || strings.HasPrefix(s, "_HEARTH_INBOX")
}
