// Package driver defines the seam between Hearth's scheduler and the isolation
// technologies that run function code: WebAssembly (driver/wasm), Linux
// sandboxes and, later, micro-VMs.
//
// A Driver turns a function version (Spec) into running Instances. An
// Instance serves invocations until it is stopped. The scheduler owns
// instances: it decides how many exist, routes invocations to them and stops
// them. Drivers report guest failures as errors matching the sentinels below
// (errors.Is), so the gateway can map them to HTTP statuses without knowing
// which driver ran the code.
//
// Every driver must pass the shared suite in driver/conformance.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Driver starts instances of one isolation technology.
type Driver interface {
	// Name is the isolation tier this driver implements ("wasm", "sandbox").
	Name() string
	// Start creates a ready instance of spec. The context bounds start-up
	// only; the instance lives until Stop.
	Start(ctx context.Context, spec Spec) (Instance, error)
}

// Preparer is implemented by drivers that do per-version work once, at deploy
// time, such as compiling a module. Prepare validates the artifact: an error
// wrapping ErrInvalidArtifact means the user's upload is bad (HTTP 400).
type Preparer interface {
	Prepare(ctx context.Context, spec Spec) error
}

// Forgetter is implemented by drivers that keep per-version state (compiled
// code, caches). Forget releases it once the version is gone.
type Forgetter interface {
	Forget(spec Spec)
}

// Instance is one running copy of a function version.
type Instance interface {
	// Invoke runs one invocation. It must be safe to call concurrently up to
	// Spec.Concurrency times. When ctx is done the invocation is abandoned
	// and the guest is stopped if it does not return (ErrTimeout).
	Invoke(ctx context.Context, req *Request) (*Response, error)
	// Stop releases everything the instance holds: processes, memory,
	// cgroups, mounts. It is safe to call more than once.
	Stop(ctx context.Context) error
	// Usage reports the instance's current resource use.
	Usage() Usage
}

// Spec is what a driver needs to start an instance of one function version.
type Spec struct {
	Function string // function name
	Version  int    // version number, 1-based
	// Dir holds the function's unpacked files on local disk. Drivers must
	// treat it as read-only.
	Dir string
	// Digest identifies the artifact's content (hex sha256); drivers may key
	// caches on it.
	Digest   string
	Protocol string   // "wagi", "http", "lambda"
	Module   string   // wasm: module path relative to Dir
	Command  []string // sandbox: argv, run in Dir
	RootFS   string   // sandbox: tar archive relative to Dir to use as the root file system; "" = the host's
	Env      map[string]string

	MemoryBytes int64         // hard memory limit of one instance
	Timeout     time.Duration // per invocation
	Concurrency int           // invocations one instance serves at once
	AllowFiles  bool          // mount Dir read-only inside the guest
	AllowNet    bool          // outbound network

	// Logs receives output of the instance that belongs to no single
	// invocation (start-up, background work). May be nil.
	Logs io.Writer
}

// Key identifies a function version ("name@v3").
func (s Spec) Key() string { return fmt.Sprintf("%s@v%d", s.Function, s.Version) }

// Request is one invocation as the gateway received it.
type Request struct {
	ID     string // invocation id
	Method string
	// Path is the part of the URL path after /fn/{name}, starting with "/"
	// (CGI PATH_INFO).
	Path       string
	RawQuery   string
	Host       string
	RemoteAddr string
	Header     http.Header
	Body       []byte
	// Stderr receives the guest's diagnostic output for this invocation.
	// May be nil.
	Stderr io.Writer
}

// Response is a function's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Cold is true when this invocation paid for creating the guest state it
	// ran in (a new instance, as opposed to a reused or restored one).
	Cold bool
}

// Usage is an instance's resource consumption.
type Usage struct {
	MemoryBytes int64         // current resident memory attributable to the instance
	CPUTime     time.Duration // cumulative, where the driver can measure it
}

// Sentinel errors that drivers wrap (see GuestError) and callers branch on.
var (
	// ErrTimeout: the invocation exceeded its timeout and the guest was stopped.
	ErrTimeout = errors.New("timeout")
	// ErrMemoryLimit: the guest exceeded its memory limit.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrCrashed: the guest trapped, panicked, exited or was killed.
	ErrCrashed = errors.New("function crashed")
	// ErrContract: the guest answered but broke its protocol contract.
	ErrContract = errors.New("function broke its contract")
	// ErrInvalidArtifact: the uploaded code cannot be run by this driver.
	ErrInvalidArtifact = errors.New("invalid artifact")
	// ErrStopped: the instance was stopped before or during the invocation.
	ErrStopped = errors.New("instance stopped")
)

// GuestError carries what went wrong inside a guest. Kind is one of the
// sentinel errors above; Detail is shown to the user and written to the
// function's logs.
type GuestError struct {
	Kind   error
	Detail string
}

func (e *GuestError) Error() string {
	if e.Detail == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Detail
}

func (e *GuestError) Unwrap() error { return e.Kind }

// Errorf returns a *GuestError of the given kind.
func Errorf(kind error, format string, args ...any) error {
	return &GuestError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// HealthChecker is implemented by instances that can become unusable (a
// sandbox whose process died). After a failed invocation the scheduler asks
// Healthy and replaces the instance if it reports false. Instances that do
// not implement it are replaced only after ErrStopped.
type HealthChecker interface {
	Healthy() bool
}
