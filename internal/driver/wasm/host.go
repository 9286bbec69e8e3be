package wasm

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
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
	_, err := wasiBuilder(r).Instantiate(ctx)
	return err
}

// wasiBuilder is wazero's WASI preview 1 with the environment taken from
// the call's context (see instantiateWASI).
func wasiBuilder(r wazero.Runtime) wazero.HostModuleBuilder {
	i32 := api.ValueTypeI32
	b := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	return b.
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(envSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("result.environc", "result.environv_len").
		Export("environ_sizes_get").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(envGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ", "environ_buf").
		Export("environ_get")
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

// reuseWASIName is the name of the second wasi_snapshot_preview1 instance,
// the one command modules on the reuse path import (see command.go). It is
// reached only through the import resolver: a module importing it by this
// name is rejected by checkImports.
const reuseWASIName = "hearth:wasi_snapshot_preview1/reuse"

// WASI errno values of the reuse module's fd_close and fd_renumber.
const (
	errnoBadf    = 8
	errnoNotsup  = 58
	stdioFDCount = 3
)

// instantiateReuseWASI provides the WASI module of reused command instances:
// instantiateWASI's, except for the functions that would end or change an
// instance for good.
//
//   - proc_exit records the exit code and unwinds the guest by panicking
//     with a *sys.ExitError without closing the module (wazero's closes it).
//     wazero's call engine recovers a host function's panic, returns a
//     *sys.ExitError unwrapped, and resets its state so that the module and
//     the function stay callable.
//   - fd_close and fd_renumber would change the instance's descriptor table,
//     which memory and global restore cannot undo. An instance on the reuse
//     path has only stdio; closing one of those is acknowledged without
//     closing it, and the instance is discarded after the request.
//
// The returned module is a plain module instance (not the wrapper wazero's
// HostModuleBuilder.Instantiate returns), as the import resolver needs.
func instantiateReuseWASI(ctx context.Context, r wazero.Runtime) (api.Module, error) {
	i32 := api.ValueTypeI32
	compiled, err := wasiBuilder(r).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(reuseProcExit), []api.ValueType{i32}, nil).
		WithParameterNames("rval").
		Export("proc_exit").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(reuseFDClose), []api.ValueType{i32}, []api.ValueType{i32}).
		WithParameterNames("fd").
		Export("fd_close").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(reuseFDRenumber), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("fd", "to").
		Export("fd_renumber").
		Compile(ctx)
	if err != nil {
		return nil, err
	}
	return r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(reuseWASIName))
}

type cmdRunKey struct{}

// cmdRunOf returns the reused command instance a call runs in, if any.
func cmdRunOf(ctx context.Context) *cmdInst {
	c, _ := ctx.Value(cmdRunKey{}).(*cmdInst)
	return c
}

func reuseProcExit(ctx context.Context, mod api.Module, stack []uint64) {
	code := uint32(stack[0])
	c := cmdRunOf(ctx)
	if c == nil { // not a reuse-path call: behave like wazero's proc_exit
		_ = mod.CloseWithExitCode(ctx, code)
	} else {
		c.exited, c.exitCode = true, code
	}
	panic(sys.NewExitError(code))
}

func reuseFDClose(ctx context.Context, _ api.Module, stack []uint64) {
	if c := cmdRunOf(ctx); c != nil {
		c.tainted = true
	}
	if uint32(stack[0]) >= stdioFDCount {
		stack[0] = errnoBadf
		return
	}
	stack[0] = errnoSuccess
}

func reuseFDRenumber(ctx context.Context, _ api.Module, stack []uint64) {
	if c := cmdRunOf(ctx); c != nil {
		c.tainted = true
	}
	from, to := uint32(stack[0]), uint32(stack[1])
	switch {
	case from >= stdioFDCount || to >= stdioFDCount:
		stack[0] = errnoBadf
	case from == to:
		stack[0] = errnoSuccess
	default:
		stack[0] = errnoNotsup
	}
}
