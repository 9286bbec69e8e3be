// Package manifest parses and validates hearth.yaml, the description of one
// function: what to run, under which isolation tier and contract, and with
// which limits.
//
// Parsing is strict: unknown fields, bad names and out-of-range limits are
// rejected with a *FieldError naming the field, so the gateway can answer 400
// with a message a user can act on.
package manifest

import (
	"time"
)

// FileName is the manifest's name inside a function directory.
const FileName = "hearth.yaml"

// Isolation tiers.
const (
	IsolationWasm    = "wasm"
	IsolationSandbox = "sandbox"
)

// Protocols (function contracts).
const (
	ProtocolWagi   = "wagi"
	ProtocolHTTP   = "http"
	ProtocolLambda = "lambda"
)

// MaxSize is the largest hearth.yaml Parse accepts, in bytes.
const MaxSize = 64 << 10

// Defaults applied by Parse when a field is absent.
const (
	DefaultMemory      = 128 << 20
	DefaultTimeout     = 30 * time.Second
	DefaultConcurrency = 1
	DefaultScaleMax    = 10

	DefaultRetryAttempts = 3
	DefaultRetryBackoff  = time.Second
	DefaultRetryMaxAge   = 6 * time.Hour
)

// Manifest is a validated hearth.yaml. The zero value is not valid; use Parse.
//
// A Manifest marshals to JSON and YAML with sizes and durations in their
// human form ("128Mi", "30s"); after decoding one from JSON, call Validate.
//
// RootFS, for a sandbox function, names a .tar, .tar.gz or .tgz file inside
// the function directory, for instance an exported container image (docker
// export): the sandbox then uses its contents, read-only, as the root file
// system instead of the host's /usr, /lib and /bin. Empty means the host's.
type Manifest struct {
	Name        string            `json:"name" yaml:"name"`
	Isolation   string            `json:"isolation" yaml:"isolation"`
	Protocol    string            `json:"protocol" yaml:"protocol"`
	Module      string            `json:"module,omitempty" yaml:"module,omitempty"`        // wasm only, relative to the function directory
	Command     []string          `json:"command,omitempty" yaml:"command,omitempty,flow"` // sandbox only
	RootFS      string            `json:"rootfs,omitempty" yaml:"rootfs,omitempty"`        // sandbox only: root file system archive, see above
	Memory      Bytes             `json:"memory" yaml:"memory"`                            // hard limit for one instance
	Timeout     Duration          `json:"timeout" yaml:"timeout"`                          // per invocation
	Concurrency int               `json:"concurrency" yaml:"concurrency"`                  // in-flight invocations one instance takes
	Scale       Scale             `json:"scale" yaml:"scale,flow"`
	Env         map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Allow       Allow             `json:"allow" yaml:"allow,omitempty"`
	// KeepAlive names the keep-alive policy for idle instances (see
	// internal/keepalive): "hearth", "hybrid", "fixed-<duration>" such as
	// "fixed-10m". Empty means the node's default.
	KeepAlive string `json:"keepalive,omitempty" yaml:"keepalive,omitempty"`
	// Retry and Destinations apply to asynchronous invocations only
	// (POST /async/fn/{name}); zero fields mean the defaults (see Retry).
	Retry        Retry        `json:"retry,omitzero" yaml:"retry,omitempty,flow"`
	Destinations Destinations `json:"destinations,omitzero" yaml:"destinations,omitempty"`
	// Triggers invoke the function on a schedule, on messages, on object
	// and bus events, and on extra HTTP routes (see Trigger).
	Triggers []Trigger `json:"triggers,omitempty" yaml:"triggers,omitempty"`
}

// Retry is how an asynchronous invocation that fails (an error, a timeout,
// or an HTTP status of 500 and above or 429) is tried again. A zero field
// means its default; Effective fills them in.
//
// Attempt n+1 starts Backoff × 2^(n-1) after attempt n failed (1s, 2s, 4s, …
// by default), capped at MaxBackoff. An invocation that has failed Attempts
// times, or whose next attempt would start more than MaxAge after it was
// enqueued, goes to the dead-letter queue.
type Retry struct {
	// Attempts is the total number of executions, the first included:
	// 1 means never retry. Default DefaultRetryAttempts.
	Attempts int `json:"attempts,omitempty" yaml:"attempts,omitempty"`
	// Backoff is the delay before the first retry. Default DefaultRetryBackoff.
	Backoff Duration `json:"backoff,omitempty" yaml:"backoff,omitempty"`
	// MaxAge bounds how long after enqueueing an invocation may still
	// start. Default DefaultRetryMaxAge.
	MaxAge Duration `json:"max_age,omitempty" yaml:"max_age,omitempty"`
}

// Destinations says where the result of an asynchronous invocation goes once
// it is final. Each is empty (nowhere), the name of a function, which is
// invoked asynchronously with the result as its JSON body, or an absolute
// http or https URL, which receives the result in a POST.
type Destinations struct {
	OnSuccess string `json:"on_success,omitempty" yaml:"on_success,omitempty"`
	OnFailure string `json:"on_failure,omitempty" yaml:"on_failure,omitempty"`
}

// Scale bounds the number of instances of a function.
type Scale struct {
	Min int `json:"min" yaml:"min"`
	Max int `json:"max" yaml:"max"`
}

// Allow lists the capabilities a function is granted beyond computation.
// Everything is denied by default.
type Allow struct {
	// Files mounts the function's own directory read-only (wasm: at /,
	// sandbox: always at /var/task).
	Files bool `json:"files,omitempty" yaml:"files,omitempty"`
	// Network grants outbound network access (not supported yet by any driver).
	Network bool `json:"network,omitempty" yaml:"network,omitempty"`
}

// Bytes is a size in bytes, written in YAML as "128Mi", "1Gi", "512Ki" or a
// plain integer.
type Bytes int64

// Duration is a time.Duration written in YAML as "30s", "1m30s", "500ms".
type Duration time.Duration
