package api

import "time"

// Trigger states.
const (
	TriggerRunning  = "running"  // listening, or waiting for its next tick
	TriggerStarting = "starting" // connecting, creating its consumer
	TriggerError    = "error"    // cannot run; Error says why, retried in the background
)

// TriggerStatus is one trigger of a function and what it has done since
// it was added to the function. The counters and the last firing are
// durable: they survive restarts (a kill -9 loses at most the last
// second's counts) and carry over when a deploy changes the trigger; they
// start at zero when the trigger is added (again).
type TriggerStatus struct {
	Function string `json:"function"`
	Name     string `json:"name"`
	Type     string `json:"type"`
	// Source says what the trigger listens to, e.g. "*/5 * * * * (Europe/Paris)"
	// or "stream ORDERS (orders.>)".
	Source string `json:"source"`
	State  string `json:"state"`
	Error  string `json:"error,omitempty"`
	// Fired counts events turned into invocations; Succeeded and Failed
	// count the attempts of those invocations; Dropped counts events that
	// could not be delivered (malformed, or the queue refused them).
	Fired     uint64 `json:"fired"`
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
	// Lag is how many events wait in the trigger's consumer (stream,
	// bucket and event triggers), or how many due cron ticks have not
	// fired yet.
	Lag            int64      `json:"lag"`
	LastFiredAt    *time.Time `json:"last_fired_at,omitempty"`
	LastInvocation string     `json:"last_invocation,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	NextFireAt     *time.Time `json:"next_fire_at,omitempty"` // cron
}

// TriggerList is GET /v1/triggers.
type TriggerList struct {
	Triggers []TriggerStatus `json:"triggers"`
}

// Error codes of the event routes: the gateway's POST /v1/events/{topic}
// and the events endpoint inside a sandbox ($HEARTH_EVENTS_API).
const (
	CodeMalformedEvent = "malformed_event" // 400
	CodeUnknownTopic   = "unknown_topic"   // 404
	CodeEventLoop      = "event_loop"      // 508: chain of emitted events too long
)

// EventAccepted is the 202 answer of POST /v1/events/{topic}, on the
// gateway and on a sandbox's events endpoint.
type EventAccepted struct {
	ID    string `json:"id"`
	Topic string `json:"topic"`
	// Subscribers is how many triggers subscribe to the topic.
	Subscribers int `json:"subscribers"`
	// Duplicate: an event with the same source and id was published
	// recently; nothing new was stored.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Object is an object in a bucket.
type Object struct {
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Size        uint64    `json:"size"`
	Digest      string    `json:"digest"` // "SHA-256=<base64url>", as JetStream records it
	ContentType string    `json:"content_type,omitempty"`
	ModTime     time.Time `json:"mod_time"`
}

// ObjectList is GET /v1/buckets/{bucket}/objects.
type ObjectList struct {
	Objects []Object `json:"objects"`
}

// BucketList is GET /v1/buckets.
type BucketList struct {
	Buckets []string `json:"buckets"`
}
