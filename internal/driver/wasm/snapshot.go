package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/driver"
)

// The reactor fast path (the Wizer / Catalyzer idea, with wasmtime's memfd
// copy-on-write instance memory):
//
//  1. At Prepare the reactor is recompiled with every global exported,
//     instantiated once, and its _initialize (Go: runtime start-up and
//     package init) and optional hearth_prepare run. The linear memory is
//     written into a memfd, the values of the mutable globals are kept, and
//     the guest's monotonic clock reading is noted.
//  2. A new instance maps that memfd MAP_PRIVATE as its linear memory: it
//     starts as the snapshot without a copy. The pages wazero's
//     instantiation wrote (data segments) are put back, the memory is grown
//     to the snapshot's size and the globals restored; hearth_handle then
//     runs, with the guest's clock resumed at the snapshot's reading so that
//     Go's runtime does not see time pass between snapshot and request.
//  3. After a successful call the instance is reset the same way and pooled:
//     every page is compared with the snapshot and the changed ones copied
//     back, memory the request grew is zeroed and cut back, globals are
//     restored. An instance whose call failed or timed out is discarded.
//
// Resetting by comparison rather than MADV_DONTNEED is deliberate: dropping
// private pages makes the next request fault them in again (copying each
// from the page cache), and on virtual machines a fault costs tens of
// microseconds, far more than comparing a 4 KiB page. Measured on a 2-vCPU VM
// with the hello example: ~1 ms per request with comparison, ~4 ms with
// MADV_DONTNEED, ~21 ms for a fresh command instance.
//
// Per-request CGI variables reach the guest through the "hearth" host module
// (host.go) and stdio through the instance's slot.

// snapshot is the post-initialisation state of a reactor for one
// configuration (environment, memory limit, files).
type snapshot struct {
	m       *module
	key     string
	fd      int    // memfd holding the memory image, sized to limit
	limit   uint64 // bytes
	pages   uint32 // memory size at snapshot time
	env     []string
	globals []globalValue
	clock   int64 // the guest's monotonic clock when the snapshot was taken
	// pristine maps the memory image read-only and shared: the reference
	// that restored instances are compared against and copied from.
	pristine []byte
	refs     atomic.Int32
}

type globalValue struct {
	name  string
	value uint64
}

// snapshotKey identifies what a snapshot depends on besides the module.
func snapshotKey(spec *driver.Spec, limit uint64) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%t\x00%s\x00", spec.Function, limit, spec.AllowFiles, spec.Dir)
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, spec.Env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// snapshotEnv is the WASI environment of a reactor: the function's variables
// and the CGI variables that do not change per request.
func snapshotEnv(spec *driver.Spec) []string {
	vars := make(map[string]string, len(spec.Env)+4)
	for k, v := range spec.Env {
		vars[k] = v
	}
	for _, kv := range staticEnv(spec) {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return sortedEnv(vars)
}

// snapshot returns the snapshot of m for spec, taking it on first use, with a
// reference the caller must release.
func (m *module) snapshot(ctx context.Context, d *Driver, spec *driver.Spec) (*snapshot, error) {
	limit := pageLimit(spec.MemoryBytes)
	key := snapshotKey(spec, limit)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forgotten && m.refs == 0 {
		return nil, errors.New("wasm: module released")
	}
	if s := m.snapshots[key]; s != nil {
		s.refs.Add(1)
		return s, nil
	}
	s, err := takeSnapshot(ctx, d, m, spec, limit)
	if err != nil {
		return nil, err
	}
	s.key = key
	s.refs.Store(2) // the module's map and the caller
	m.snapshots[key] = s
	return s, nil
}

func (s *snapshot) release() {
	if s.refs.Add(-1) == 0 {
		if s.pristine != nil {
			_ = unix.Munmap(s.pristine)
		}
		_ = unix.Close(s.fd)
	}
}

func takeSnapshot(ctx context.Context, d *Driver, m *module, spec *driver.Spec, limit uint64) (*snapshot, error) {
	if min := m.info.memMin * pageSize; m.info.hasMemory && min > limit {
		return nil, driver.Errorf(driver.ErrMemoryLimit, "module %s needs at least %s of memory, more than the function's limit of %s", m.name, formatBytes(int64(min)), formatBytes(int64(limit)))
	}
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	env := snapshotEnv(spec)
	logs := spec.Logs
	if logs == nil {
		logs = io.Discard
	}
	sl := newSlot()
	stderr := &stderrWriter{dst: logs}
	sl.set(ctx, nil, &outputBuffer{}, stderr)
	var usage atomic.Int64
	alloc := newAllocator(limit, -1, nil, &usage, &d.live)
	ctx = withRequestEnv(ctx, env) // the environment _initialize sees
	mod, err := d.runtime.InstantiateModule(experimental.WithMemoryAllocator(ctx, alloc), m.compiled, reactorConfig(m, spec, sl, env))
	if err == nil && m.hasInit {
		_, err = mod.ExportedFunction("_initialize").Call(ctx)
	}
	if prepare := mod.ExportedFunction(prepareExport); err == nil && prepare != nil {
		_, err = prepare.Call(ctx)
	}
	if mod != nil {
		defer mod.Close(context.Background())
	}
	if err != nil {
		init := &instance{spec: *spec, limit: limit, stopCtx: context.Background()}
		gerr := init.guestError(ctx, err, alloc, stderr)
		var ge *driver.GuestError
		if errors.As(gerr, &ge) && ge.Kind == driver.ErrCrashed {
			return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s failed to initialise: %s", m.name, ge.Detail)
		}
		if gerr == nil { // proc_exit(0) during _initialize
			gerr = driver.Errorf(driver.ErrInvalidArtifact, "module %s exited during initialisation", m.name)
		}
		return nil, gerr
	}
	s := &snapshot{m: m, fd: -1, limit: limit, env: env, clock: sl.nanotime()}
	for i := range m.info.globals {
		name := globalExportPrefix + strconv.Itoa(i)
		g := mod.ExportedGlobal(name)
		if g == nil {
			return nil, fmt.Errorf("wasm: rewritten module %s lacks export %s", m.name, name)
		}
		if _, ok := g.(api.MutableGlobal); !ok {
			continue
		}
		switch g.Type() {
		case api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF32, api.ValueTypeF64:
		default:
			return nil, driver.Errorf(driver.ErrInvalidArtifact, "module %s has a mutable %s global, which Hearth cannot snapshot", m.name, api.ValueTypeName(g.Type()))
		}
		s.globals = append(s.globals, globalValue{name: name, value: g.Get()})
	}
	var image []byte
	if mem := mod.Memory(); mem != nil {
		s.pages = mem.Size() / pageSize
		image, _ = mem.Read(0, mem.Size())
	}
	fd, err := memfdCreate("hearth-" + spec.Function)
	if err != nil {
		return nil, fmt.Errorf("wasm: snapshot memfd: %w", err)
	}
	if err := writeImage(fd, image, limit); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("wasm: writing snapshot: %w", err)
	}
	s.fd = fd
	if len(image) > 0 {
		if s.pristine, err = unix.Mmap(fd, 0, len(image), unix.PROT_READ, unix.MAP_SHARED); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("wasm: mapping snapshot: %w", err)
		}
	}
	d.log.Debug("took reactor snapshot", "function", spec.Function, "module", m.name, "memory", len(image), "globals", len(s.globals))
	return s, nil
}

// writeImage stores image in fd, sized to size bytes. All-zero pages are
// skipped: the file stays sparse and reads them as zero.
func writeImage(fd int, image []byte, size uint64) error {
	if err := unix.Ftruncate(fd, int64(max(size, uint64(len(image))))); err != nil {
		return err
	}
	const chunk = 4096
	zero := make([]byte, chunk)
	for off := 0; off < len(image); off += chunk {
		p := image[off:min(off+chunk, len(image))]
		if bytes.Equal(p, zero[:len(p)]) {
			continue
		}
		for at := off; len(p) > 0; {
			n, err := unix.Pwrite(fd, p, int64(at))
			if err != nil {
				return err
			}
			p, at = p[n:], at+n
		}
	}
	return nil
}

// reactorConfig is the module configuration of a reactor instance.
func reactorConfig(m *module, spec *driver.Spec, s *slot, env []string) wazero.ModuleConfig {
	return baseConfig(m, spec, s).WithStartFunctions() // _initialize is run (once) by hand
}

// pooled is a reactor module instance restored from a snapshot.
type pooled struct {
	mod     api.Module
	alloc   *allocator
	slot    *slot
	handle  api.Function
	globals []api.MutableGlobal // parallel to snapshot.globals
	snap    *snapshot
}

// restore instantiates a module instance in the snapshot's state.
func (i *instance) restore(ctx context.Context) (*pooled, error) {
	s := i.snap
	p := &pooled{slot: newSlot(), snap: s}
	p.alloc = newAllocator(s.limit, s.fd, nil, &i.usage, &i.d.live)
	mod, err := i.d.runtime.InstantiateModule(experimental.WithMemoryAllocator(withRequestEnv(ctx, s.env), p.alloc), i.m.compiled, reactorConfig(i.m, &i.spec, p.slot, s.env))
	if err != nil {
		return nil, fmt.Errorf("wasm: instantiating %s: %w", i.m.name, err)
	}
	p.mod = mod
	p.handle = mod.ExportedFunction(handleExport)
	for _, g := range s.globals {
		p.globals = append(p.globals, mod.ExportedGlobal(g.name).(api.MutableGlobal))
	}
	if mem := mod.Memory(); mem != nil {
		if pages := mem.Size() / pageSize; pages < s.pages {
			if _, ok := mem.Grow(s.pages - pages); !ok {
				p.close()
				return nil, fmt.Errorf("wasm: restoring %s: cannot grow memory to %d pages", i.m.name, s.pages)
			}
		}
	}
	if err := p.reset(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// reset returns the instance to the snapshot. An error means the instance
// must be discarded.
func (p *pooled) reset() error {
	return revert(p.mod, p.alloc, p.globals, p.snap.pages, p.snap.pristine, p.snap.globals)
}

// revert returns a module instance to an image of its state — a reactor's
// snapshot or a command module's state after instantiation: memory
// contents, memory size and mutable globals (parallel to values). An error
// means the instance must be discarded.
//
// Go's runtime grows linear memory on most requests, so discarding every
// instance that grew would defeat reuse. Instead the memory is cut back to
// the image's size: wazero's Grow adopts whatever slice the allocator
// returns and hands it to the engine, so a Grow(1) answered with the
// image-sized slice shrinks it. That is outside the allocator contract; the
// size is checked afterwards and the instance discarded if the trick ever
// stops working (TestSnapshotDiscardsGrownInstance covers both).
func revert(mod api.Module, alloc *allocator, globals []api.MutableGlobal, pages uint32, pristine []byte, values []globalValue) error {
	if mem := mod.Memory(); mem != nil {
		want := pages * pageSize
		size := mem.Size()
		if size < want {
			return errors.New("memory smaller than the image")
		}
		alloc.mem.restore(pristine, uint64(size))
		if size > want {
			alloc.mem.shrinkTo = uint64(want)
			mem.Grow(1)
			alloc.mem.shrinkTo = 0
			if mem.Size() != want {
				return errors.New("memory grew past the image")
			}
		}
	}
	for j, g := range globals {
		g.Set(values[j].value)
	}
	alloc.limitHit.Store(false)
	return nil
}

func (p *pooled) close() {
	_ = p.mod.Close(context.Background())
}

// invokeReactor serves one request on a pooled (or freshly restored)
// instance. cold reports whether a restore was needed.
func (i *instance) invokeReactor(ctx context.Context, req *driver.Request, env []string, stdout *outputBuffer, stderr *stderrWriter) (cold bool, err error) {
	i.mu.Lock()
	var p *pooled
	if n := len(i.idle); n > 0 {
		p, i.idle = i.idle[n-1], i.idle[:n-1]
	}
	i.mu.Unlock()
	if p == nil {
		cold = true
		if p, err = i.restore(ctx); err != nil {
			return cold, err
		}
	}
	p.slot.set(ctx, req.Body, stdout, stderr)
	p.slot.resumeClock(p.snap.clock)
	_, err = p.handle.Call(withRequestEnv(ctx, env))
	p.slot.clear()
	if err != nil {
		p.close()
		return cold, i.guestError(ctx, err, p.alloc, stderr)
	}
	if err := p.reset(); err != nil {
		i.d.log.Debug("discarding reactor instance", "function", i.spec.Function, "reason", err)
		p.close() // the next request restores a fresh one
		return cold, nil
	}
	i.mu.Lock()
	if !i.stopped && len(i.idle) < max(i.spec.Concurrency, 1) {
		i.idle = append(i.idle, p)
		p = nil
	}
	i.mu.Unlock()
	if p != nil {
		p.close()
	}
	return cold, nil
}
