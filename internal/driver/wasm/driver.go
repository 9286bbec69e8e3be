// Package wasm is Hearth's WebAssembly isolation driver. It runs WASI
// preview-1 modules with wazero under the wagi contract (CGI for
// WebAssembly): each request runs the module as a fresh program, with the
// body on stdin and CGI variables in the environment, and the module's
// stdout is parsed as a CGI response. A command module without file access
// runs in a pooled instance reverted to its post-instantiation state between
// requests rather than in a new instance (see command.go); with file access
// every request gets a new instance.
//
// Modules are compiled once per artifact digest; with Config.CacheDir the
// compiled code also survives restarts. Each instance's linear memory is an
// mmap'd region reserved up to the function's memory limit by the driver's
// own allocator, so the limit is exact and a guest that hits it is reported
// as driver.ErrMemoryLimit rather than a generic crash. Timeouts close the
// guest (wazero's WithCloseOnContextDone). Guests get no sockets and, unless
// the spec allows files, no filesystem.
//
// Reactor modules (exporting _initialize and hearth_handle, as Go's
// -buildmode=c-shared builds with sdk/wagi do) take a fast path: the driver
// initialises the module once, snapshots its memory and globals, and serves
// every request on an instance restored from that snapshot by copy-on-write
// mapping, then reverts it for reuse. See snapshot.go.
package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/hearthdev/hearth/internal/driver"
)

var (
	_ driver.Driver    = (*Driver)(nil)
	_ driver.Preparer  = (*Driver)(nil)
	_ driver.Forgetter = (*Driver)(nil)
	_ driver.Instance  = (*instance)(nil)
)

// Config configures a Driver.
type Config struct {
	// CacheDir, when set, holds compiled machine code across restarts, so a
	// restarted server does not recompile modules it has seen.
	CacheDir string
	// Logger receives the driver's own diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Driver runs WebAssembly modules. It is safe for concurrent use.
type Driver struct {
	log     *slog.Logger
	runtime wazero.Runtime
	cache   wazero.CompilationCache
	live    atomic.Int64 // mapped linear memories, for leak checks
	mem     *memPool     // recycled linear memories of fresh instances
	// reuse resolves wasi_snapshot_preview1 to the WASI module of reused
	// command instances (instantiateReuseWASI).
	reuse experimental.ImportResolver

	mu      sync.Mutex
	modules map[string]*moduleEntry // by moduleKey
	closed  bool
}

type moduleEntry struct {
	ready chan struct{} // closed when m or err is set
	m     *module
	err   error
}

// New returns a Driver. Close releases it.
func New(cfg Config) (*Driver, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("wasm: compilation cache: %w", err)
		}
	} else {
		cache = wazero.NewCompilationCache()
	}
	ctx := context.Background()
	// NewRuntimeConfig picks the optimizing compiler where wazero supports
	// it (amd64, arm64) and the interpreter elsewhere.
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithCompilationCache(cache)
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateWASI(ctx, r); err != nil {
		r.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("wasm: WASI: %w", err)
	}
	if err := instantiateHostModule(ctx, r); err != nil {
		r.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("wasm: hearth host module: %w", err)
	}
	reuseWASI, err := instantiateReuseWASI(ctx, r)
	if err != nil {
		r.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("wasm: WASI for reused instances: %w", err)
	}
	reuse := func(name string) api.Module {
		if name == wasi_snapshot_preview1.ModuleName {
			return reuseWASI
		}
		return nil
	}
	return &Driver{log: log, runtime: r, cache: cache, mem: newMemPool(4 * runtime.NumCPU()), reuse: reuse, modules: map[string]*moduleEntry{}}, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "wasm" }

// Close releases the runtime, every compiled module and every snapshot.
// Instances must be stopped first; any still running are closed with it.
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	entries := d.modules
	d.modules = nil
	d.mu.Unlock()
	for _, e := range entries {
		<-e.ready
		if e.m != nil {
			e.m.forget()
		}
	}
	err := d.runtime.Close(ctx)
	d.mem.close()
	return errors.Join(err, d.cache.Close(ctx))
}

// Prepare implements driver.Preparer: it reads, validates and compiles the
// spec's module (once per digest) and, for a reactor, takes its snapshot.
func (d *Driver) Prepare(ctx context.Context, spec driver.Spec) error {
	if err := checkProtocol(&spec); err != nil {
		return err
	}
	m, err := d.acquire(ctx, &spec)
	if err != nil {
		return err
	}
	defer m.release()
	if m.reactor {
		s, err := m.snapshot(ctx, d, &spec)
		if err != nil {
			return err
		}
		s.release()
	} else {
		d.mem.prefill(reservation(pageLimit(spec.MemoryBytes), m))
	}
	return nil
}

// Forget implements driver.Forgetter. Compiled code and snapshots are
// released once the last instance using them stops.
func (d *Driver) Forget(spec driver.Spec) {
	key := moduleKey(&spec)
	d.mu.Lock()
	e := d.modules[key]
	if e != nil {
		delete(d.modules, key)
	}
	d.mu.Unlock()
	if e != nil {
		<-e.ready
		if e.m != nil {
			e.m.forget()
		}
	}
}

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	if err := checkProtocol(&spec); err != nil {
		return nil, err
	}
	m, err := d.acquire(ctx, &spec)
	if err != nil {
		return nil, err
	}
	inst, err := newInstance(ctx, d, m, spec)
	if err != nil {
		m.release()
		return nil, err
	}
	return inst, nil
}

func checkProtocol(spec *driver.Spec) error {
	if spec.Protocol != "" && spec.Protocol != "wagi" {
		return driver.Errorf(driver.ErrInvalidArtifact, "the wasm driver speaks the wagi protocol, not %q", spec.Protocol)
	}
	return nil
}

func moduleKey(spec *driver.Spec) string {
	return spec.Digest + "\x00" + filepath.Join(spec.Dir, spec.Module)
}

// acquire returns the compiled module of spec, compiling it on first use,
// with a reference the caller must release.
func (d *Driver) acquire(ctx context.Context, spec *driver.Spec) (*module, error) {
	key := moduleKey(spec)
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, errors.New("wasm: driver closed")
		}
		e, ok := d.modules[key]
		if !ok {
			e = &moduleEntry{ready: make(chan struct{})}
			d.modules[key] = e
			d.mu.Unlock()
			e.m, e.err = d.compile(ctx, spec)
			if e.err != nil {
				d.mu.Lock()
				if d.modules[key] == e {
					delete(d.modules, key) // let a later Prepare retry
				}
				d.mu.Unlock()
			}
			close(e.ready)
		} else {
			d.mu.Unlock()
		}
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err != nil {
			return nil, e.err
		}
		if e.m.acquire() {
			return e.m, nil
		}
		// Forgotten between lookup and acquire: compile afresh.
	}
}

// compile reads and compiles spec's module.
func (d *Driver) compile(ctx context.Context, spec *driver.Spec) (*module, error) {
	name := path.Base(filepath.ToSlash(spec.Module))
	if spec.Module == "" {
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "no module: the manifest must name a .wasm file in \"module\"")
	}
	bin, err := os.ReadFile(filepath.Join(spec.Dir, filepath.FromSlash(spec.Module)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s: file not found in the function directory", spec.Module)
		}
		return nil, fmt.Errorf("wasm: reading module %s: %w", spec.Module, err)
	}
	info, err := parseModule(bin)
	if err != nil {
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s: %v", name, err)
	}
	if info.importedMemory {
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s imports its memory; Hearth modules must define their own", name)
	}
	m := &module{name: name, info: info, refs: 1}
	// Compile once, with every global exported: a reactor needs that to
	// capture and restore its post-initialisation state, and the extra
	// exports are harmless to a command module. Compilation is the
	// expensive part of a deploy, so it uses every CPU.
	rewritten, err := exportGlobals(bin, info)
	if err != nil {
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s: %v", name, err)
	}
	cctx := experimental.WithCompilationWorkers(ctx, runtime.NumCPU())
	compiled, err := d.runtime.CompileModule(cctx, rewritten)
	if err != nil {
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s: %v", name, err)
	}
	if err := checkImports(name, compiled); err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	exports := compiled.ExportedFunctions()
	_, hasStart := exports["_start"]
	_, hasInit := exports["_initialize"]
	_, hasHandle := exports[handleExport]
	switch {
	case hasStart:
		m.compiled = compiled
	case hasHandle:
		m.compiled = compiled
		m.reactor, m.hasInit = true, hasInit
		m.snapshots = map[string]*snapshot{}
	case hasInit:
		compiled.Close(ctx)
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s is a WASI reactor (exports _initialize) but does not export %s; build Go functions with sdk/wagi", name, handleExport)
	default:
		compiled.Close(ctx)
		return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s exports neither _start (a WASI command) nor %s (a Hearth reactor)", name, handleExport)
	}
	d.log.Debug("compiled module", "module", name, "function", spec.Function, "reactor", m.reactor)
	return m, nil
}

// checkImports rejects modules that import functions Hearth does not provide,
// at deploy time rather than at the first request.
func checkImports(name string, compiled wazero.CompiledModule) error {
	for _, f := range compiled.ImportedFunctions() {
		mod, field, _ := f.Import()
		if mod != wasi_snapshot_preview1.ModuleName && mod != hostModuleName {
			return driver.Errorf(driver.ErrInvalidArtifact, "module %s imports %s.%s; Hearth provides only WASI preview 1 (%s) and %q", name, mod, field, wasi_snapshot_preview1.ModuleName, hostModuleName)
		}
	}
	return nil
}

// module is one compiled module, shared by every instance of every function
// version with the same artifact.
type module struct {
	name     string // base name of the .wasm file, argv[0]
	info     *moduleInfo
	compiled wazero.CompiledModule
	reactor  bool
	hasInit  bool

	mu        sync.Mutex
	refs      int // the driver's entry holds one until forgotten
	forgotten bool
	snapshots map[string]*snapshot // reactor only, by snapshotKey
}

func (m *module) acquire() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forgotten {
		return false
	}
	m.refs++
	return true
}

func (m *module) release() {
	m.mu.Lock()
	m.refs--
	last := m.refs == 0
	snaps := m.snapshots
	if last {
		m.snapshots = nil
	}
	m.mu.Unlock()
	if last {
		for _, s := range snaps {
			s.release()
		}
		_ = m.compiled.Close(context.Background())
	}
}

// forget drops the driver's reference.
func (m *module) forget() {
	m.mu.Lock()
	if m.forgotten {
		m.mu.Unlock()
		return
	}
	m.forgotten = true
	m.mu.Unlock()
	m.release()
}

// baseConfig is the module configuration every instance of spec shares.
func baseConfig(m *module, spec *driver.Spec, s *slot) wazero.ModuleConfig {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithArgs(m.name).
		WithSysWalltime().
		WithNanotime(s.nanotime, 1).
		WithNanosleep(s.sleep).
		WithRandSource(rand.Reader).
		WithStdin(slotStdin{s}).
		WithStdout(slotStdout{s}).
		WithStderr(slotStderr{s})
	if spec.AllowFiles {
		cfg = cfg.WithFSConfig(wazero.NewFSConfig().WithReadOnlyDirMount(spec.Dir, "/"))
	}
	return cfg
}
