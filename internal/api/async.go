package api

import (
	"net/http"
	"time"
)

// States of an asynchronous invocation (InvocationStatus.Status).
const (
	StatusQueued    = "queued"    // waiting for its first attempt, or for a retry
	StatusRunning   = "running"   // an attempt is executing
	StatusSucceeded = "succeeded" // final: the function answered with a status below 500 (and not 429)
	StatusFailed    = "failed"    // final: attempts exhausted or too old; the event is in the dead-letter queue
)

// Error code of an invalid Idempotency-Key header.
const CodeBadIdempotencyKey = "bad_idempotency_key" // 400

// AsyncAccepted is the 202 answer of POST /async/fn/{name}.
type AsyncAccepted struct {
	ID string `json:"id"`
}

// InvocationStatus is GET /v1/invocations/{id}: the state of one
// asynchronous invocation.
type InvocationStatus struct {
	ID       string `json:"id"`
	Function string `json:"function"`
	Status   string `json:"status"` // one of the Status* constants
	// Attempts counts the executions started in the current series (the
	// original one, or the latest replay from the dead-letter queue).
	Attempts int `json:"attempts"`
	// Replays counts replays from the dead-letter queue.
	Replays       int       `json:"replays,omitempty"`
	EnqueuedAt    time.Time `json:"enqueued_at"`
	StartedAt     time.Time `json:"started_at,omitzero"`      // of the latest attempt
	FinishedAt    time.Time `json:"finished_at,omitzero"`     // when the status became final
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"` // queued for a retry
	// Error is why the latest attempt failed.
	Error string `json:"error,omitempty"`
	// Response is the function's answer of the latest attempt that answered.
	Response *StoredResponse `json:"response,omitempty"`
}

// Final reports whether s will not change any more (unless it is replayed).
func (s InvocationStatus) Final() bool {
	return s.Status == StatusSucceeded || s.Status == StatusFailed
}

// StoredResponse is a function's HTTP answer as kept for an asynchronous
// invocation. Body is base64 in JSON and cut at the server's limit.
type StoredResponse struct {
	Status    int         `json:"status"`
	Header    http.Header `json:"headers,omitempty"`
	Body      []byte      `json:"body,omitempty"`
	Truncated bool        `json:"truncated,omitempty"` // Body holds only the first bytes
}

// Reasons an invocation is dead-lettered (DeadLetter.Reason).
const (
	ReasonExhausted = "attempts_exhausted"
	ReasonExpired   = "max_age_exceeded"
	ReasonNoFunc    = "function_not_found"
)

// DeadLetter is one entry of the dead-letter queue: an asynchronous
// invocation that failed for good.
type DeadLetter struct {
	ID         string    `json:"id"`
	Function   string    `json:"function"`
	Reason     string    `json:"reason"` // one of the Reason* constants
	Attempts   int       `json:"attempts"`
	Error      string    `json:"error,omitempty"` // of the last attempt
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	BodySize   int       `json:"body_size"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	FailedAt   time.Time `json:"failed_at"`
	Replays    int       `json:"replays,omitempty"` // replays before this failure
}

// DeadLetterList is GET /v1/dlq.
type DeadLetterList struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// DestinationEvent is the JSON body a destination receives: a function
// named in destinations (invoked asynchronously, POST /) or a URL (POST).
type DestinationEvent struct {
	ID       string          `json:"id"` // the invocation's id
	Function string          `json:"function"`
	Status   string          `json:"status"` // succeeded or failed
	Attempts int             `json:"attempts"`
	Reason   string          `json:"reason,omitempty"` // failed: one of the Reason* constants
	Error    string          `json:"error,omitempty"`
	Response *StoredResponse `json:"response,omitempty"`
	Time     time.Time       `json:"time"`
}
