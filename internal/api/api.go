// Package api holds the JSON shapes of Hearth's HTTP API, shared by the
// gateway that serves them and the client the CLI uses. Changing a field here
// changes the external contract (see README's API table).
package api

import (
	"time"

	"github.com/hearthdev/hearth/internal/manifest"
)

// Error codes: stable strings clients may branch on.
const (
	CodeUnauthorized     = "unauthorized"      // 401
	CodeNotFound         = "not_found"         // 404
	CodeBadRequest       = "bad_request"       // 400
	CodeInvalidManifest  = "invalid_manifest"  // 400
	CodeInvalidArtifact  = "invalid_artifact"  // 400
	CodeTooLarge         = "payload_too_large" // 413
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"          // 409
	CodeOverloaded       = "too_many_requests" // 429
	CodeCrashed          = "function_crashed"  // 502
	CodeMemoryLimit      = "memory_limit"      // 502
	CodeContract         = "bad_function_response"
	CodeTimeout          = "timeout"        // 504
	CodeUnavailable      = "unavailable"    // 503 (draining)
	CodeInternal         = "internal_error" // 500
)

// ErrorBody is every error response: {"error": {"code": ..., "message": ...}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the payload of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Version is one immutable deployed version of a function.
type Version struct {
	Function  string            `json:"function"`
	Number    int               `json:"version"`
	Digest    string            `json:"digest"` // sha256 of the packed artifact, hex
	Size      int64             `json:"size"`   // bytes of the packed artifact
	Manifest  manifest.Manifest `json:"manifest"`
	CreatedAt time.Time         `json:"created_at"`
}

// Function is a function with its versions. Latest serves traffic.
type Function struct {
	Name      string    `json:"name"`
	Latest    int       `json:"latest_version"`
	Versions  []Version `json:"versions"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Status is filled by GET /v1/functions/{name}; omitted in lists.
	Status *FunctionStatus `json:"status,omitempty"`
	// Triggers is filled by GET /v1/functions/{name} (see triggers.go).
	Triggers []TriggerStatus `json:"triggers,omitempty"`
}

// FunctionStatus is the live state of a function on this node.
type FunctionStatus struct {
	Instances  int `json:"instances"`   // running instances
	Starting   int `json:"starting"`    // instances being started
	Idle       int `json:"idle"`        // instances with no invocation in flight
	InFlight   int `json:"in_flight"`   // invocations running
	QueueDepth int `json:"queue_depth"` // invocations waiting for capacity
	// Desired is the instance count of the last sizing decision, Reason
	// says why, Panic whether the autoscaler is in panic mode.
	Desired   int    `json:"desired"`
	Panic     bool   `json:"panic,omitempty"`
	Reason    string `json:"reason,omitempty"`
	KeepAlive string `json:"keepalive_policy,omitempty"`
}

// FunctionList is GET /v1/functions.
type FunctionList struct {
	Functions []Function `json:"functions"`
}

// LogEntry is one line of a function's logs. GET .../logs streams them as
// newline-delimited JSON.
type LogEntry struct {
	Time         time.Time `json:"time"`
	Function     string    `json:"function"`
	Version      int       `json:"version,omitempty"`
	InvocationID string    `json:"invocation_id,omitempty"`
	Stream       string    `json:"stream"` // "stdout", "stderr" or "system"
	Line         string    `json:"line"`
}

// Invocation is the record of one finished invocation; usage is computed
// from these.
type Invocation struct {
	ID         string    `json:"id"`
	Function   string    `json:"function"`
	Version    int       `json:"version"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"duration_ms"` // measured
	BilledMs   int64     `json:"billed_ms"`   // duration rounded up to the next 1 ms
	MemoryMB   int64     `json:"memory_mb"`   // configured memory limit
	GBSeconds  float64   `json:"gb_seconds"`  // memory_GB × billed_ms / 1000
	Status     int       `json:"status"`      // HTTP status returned
	Error      string    `json:"error,omitempty"`
	Cold       bool      `json:"cold"`
}

// FunctionUsage aggregates invocations of one function over a window.
type FunctionUsage struct {
	Function    string  `json:"function"`
	Invocations int64   `json:"invocations"`
	Errors      int64   `json:"errors"`
	BilledMs    int64   `json:"billed_ms"`
	GBSeconds   float64 `json:"gb_seconds"`
}

// Usage is GET /v1/usage.
type Usage struct {
	From      time.Time       `json:"from"`
	To        time.Time       `json:"to"`
	Functions []FunctionUsage `json:"functions"`
}

// Deleted is DELETE /v1/functions/{name}.
type Deleted struct {
	Name     string `json:"name"`
	Versions int    `json:"versions_deleted"`
}
