package wasm

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// hostModuleName is the module of Hearth's own host functions.
const hostModuleName = "hearth"

// handleExport is the function a reactor exports to serve one request.
const handleExport = "hearth_handle"

// prepareExport is an optional reactor export, called once after
// _initialize and before the snapshot (sdk/wagi collects garbage there).
const prepareExport = "hearth_prepare"

// WASI errno values the host functions return.
const (
	errnoSuccess = 0
	errnoFault   = 21
)

type requestEnvKey struct{}

// withRequestEnv makes env the CGI environment the "hearth" host functions
// report for calls made with the returned context.
func withRequestEnv(ctx context.Context, env []string) context.Context {
	return context.WithValue(ctx, requestEnvKey{}, env)
}

// instantiateHostModule provides the "hearth" module: env_sizes_get and
// env_get, with the semantics of WASI environ_sizes_get and environ_get,
// return the current request's CGI variables. A reactor instance outlives
// requests, so its WASI environment cannot carry them.
func instantiateHostModule(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	_, err := r.NewHostModuleBuilder(hostModuleName).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(envSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("count_ptr", "size_ptr").
		Export("env_sizes_get").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(envGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ_ptr", "buf_ptr").
		Export("env_get").
		Instantiate(ctx)
	return err
}

// instantiateWASI provides wasi_snapshot_preview1 with environ_sizes_get
// and environ_get taken from the call's context (withRequestEnv) instead of
// the module configuration: a per-request environment then costs nothing
// at instantiation (wazero's ModuleConfig.WithEnv copies the configuration
// for every variable).
func instantiateWASI(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	_, err := b.
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(envSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("result.environc", "result.environv_len").
		Export("environ_sizes_get").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(envGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ", "environ_buf").
		Export("environ_get").
		Instantiate(ctx)
	return err
}

func envSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	env, _ := ctx.Value(requestEnvKey{}).([]string)
	size := 0
	for _, kv := range env {
		size += len(kv) + 1
	}
	mem := mod.Memory()
	if mem == nil || !mem.WriteUint32Le(uint32(stack[0]), uint32(len(env))) || !mem.WriteUint32Le(uint32(stack[1]), uint32(size)) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

func envGet(ctx context.Context, mod api.Module, stack []uint64) {
	env, _ := ctx.Value(requestEnvKey{}).([]string)
	environ, buf := uint32(stack[0]), uint32(stack[1])
	mem := mod.Memory()
	if mem == nil {
		stack[0] = errnoFault
		return
	}
	for i, kv := range env {
		if !mem.WriteUint32Le(environ+uint32(4*i), buf) ||
			!mem.WriteString(buf, kv) || !mem.WriteByte(buf+uint32(len(kv)), 0) {
			stack[0] = errnoFault
			return
		}
		buf += uint32(len(kv)) + 1
	}
	stack[0] = errnoSuccess
}

// slot is the per-call plumbing of one module instance: WASI stdin, stdout
// and stderr, and the signal that interrupts sleeps. A reactor instance is
// reused across requests, so its module configuration points at a slot
// whose contents are swapped per request.
type slot struct {
	stdin  bytes.Reader
	stdout *outputBuffer
	stderr *stderrWriter
	done   <-chan struct{}
	// origin is when, on the host's monotonic clock, the guest's monotonic
	// clock read zero. See nanotime.
	origin atomic.Int64
}

func newSlot() *slot {
	s := &slot{}
	s.origin.Store(monotonic())
	return s
}

func (s *slot) set(ctx context.Context, body []byte, stdout *outputBuffer, stderr *stderrWriter) {
	s.stdin.Reset(body)
	s.stdout, s.stderr, s.done = stdout, stderr, ctx.Done()
}

// clockStart is the zero of the host monotonic clock the guests' clocks are
// derived from.
var clockStart = time.Now()

func monotonic() int64 { return int64(time.Since(clockStart)) }

// nanotime is the guest's monotonic clock (WASI clock_time_get with the
// monotonic clock id). A restored reactor instance resumes the clock where
// the snapshot left it (see resumeClock): to the guest, every request runs
// right after initialisation. Otherwise Go's runtime would see the time since
// the snapshot grow with every request and do time-driven background work
// (scavenging, pacing) at the start of each one.
func (s *slot) nanotime() int64 { return monotonic() - s.origin.Load() }

// resumeClock makes the guest's monotonic clock read at now.
func (s *slot) resumeClock(at int64) { s.origin.Store(monotonic() - at) }

func (s *slot) clear() {
	s.stdin.Reset(nil)
	s.stdout, s.stderr, s.done = nil, nil, nil
}

// sleep implements the WASI clock (poll_oneoff) sleep, cut short when the
// call is cancelled so that a sleeping guest still times out promptly.
func (s *slot) sleep(ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

type slotStdin struct{ s *slot }

func (r slotStdin) Read(p []byte) (int, error) { return r.s.stdin.Read(p) }

type slotStdout struct{ s *slot }

func (w slotStdout) Write(p []byte) (int, error) {
	if w.s.stdout == nil {
		return len(p), nil // between requests (reactor initialisation)
	}
	return w.s.stdout.Write(p)
}

type slotStderr struct{ s *slot }

func (w slotStderr) Write(p []byte) (int, error) {
	if w.s.stderr == nil {
		return len(p), nil
	}
	return w.s.stderr.Write(p)
}
