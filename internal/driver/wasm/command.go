package wasm

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/hearthdev/hearth/internal/driver"
)

// The command reuse path. Instantiating a module costs more than the whole
// run of a small WASI command (a C CGI program), so instead of a fresh
// module instance per request, a command without file access runs in a
// pooled instance reverted between requests to its state right after
// instantiation, before _start:
//
//  1. A new instance is instantiated without start functions. The first one
//     of an Instance provides the reference state: a copy of its linear
//     memory (the data segments) and the values of its mutable globals
//     (every global is exported by the rewriter, see wasmbin.go).
//  2. A request calls _start on the instance. proc_exit, which wazero's WASI
//     implements by closing the module, is replaced for these instances (the
//     import resolver points them at instantiateReuseWASI's module) by one
//     that unwinds the guest and leaves the module open.
//  3. After _start returned or exited with code 0, memory is reverted page
//     by page against the reference, growth is zeroed and cut back, and the
//     globals are restored, as for reactors (snapshot.go). The instance is
//     then pooled. Any other outcome (a trap, a non-zero exit, a timeout, a
//     closed or renumbered descriptor, growth that cannot be cut back)
//     discards it.
//
// Modules with file access keep the fresh-instance path: open descriptors
// live outside linear memory and would leak across requests.

// cmdSnapshot is a command module's state after instantiation.
type cmdSnapshot struct {
	pages    uint32 // memory size
	pristine []byte // memory contents
	globals  []globalValue
}

// cmdInst is a command module instance on the reuse path.
type cmdInst struct {
	mod     api.Module
	alloc   *allocator
	slot    *slot
	start   api.Function
	globals []api.MutableGlobal // parallel to snap.globals
	snap    *cmdSnapshot

	// Set by the reuse WASI functions during a call.
	exited   bool
	exitCode uint32
	tainted  bool
}

func (c *cmdInst) close() { _ = c.mod.Close(context.Background()) }

// errNoReuse means the module cannot take the reuse path.
var errNoReuse = errors.New("module state cannot be captured")

// newCmdInst instantiates a command module for the reuse path.
func (i *instance) newCmdInst(ctx context.Context, stderr *stderrWriter) (*cmdInst, error) {
	c := &cmdInst{slot: newSlot()}
	c.alloc = newAllocator(i.limit, -1, i.d.mem, &i.usage, &i.d.live)
	ictx := experimental.WithMemoryAllocator(experimental.WithImportResolver(ctx, i.d.reuse), c.alloc)
	mod, err := i.d.runtime.InstantiateModule(ictx, i.m.compiled, baseConfig(i.m, &i.spec, c.slot).WithStartFunctions())
	if err != nil {
		if gerr := i.guestError(ctx, err, c.alloc, stderr); gerr != nil {
			return nil, gerr
		}
		return nil, fmt.Errorf("wasm: instantiating %s: %w", i.m.name, err)
	}
	c.mod = mod
	c.start = mod.ExportedFunction("_start")
	i.cmdMu.Lock()
	defer i.cmdMu.Unlock()
	snap := i.cmdSnap
	if snap == nil {
		snap = &cmdSnapshot{}
	}
	for j := range i.m.info.globals {
		name := globalExportPrefix + strconv.Itoa(j)
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			continue
		}
		switch g.Type() {
		case api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF32, api.ValueTypeF64:
		default:
			c.close()
			return nil, errNoReuse
		}
		c.globals = append(c.globals, g)
		if i.cmdSnap == nil {
			snap.globals = append(snap.globals, globalValue{name: name, value: g.Get()})
		}
	}
	if i.cmdSnap == nil {
		if mem := mod.Memory(); mem != nil {
			snap.pages = mem.Size() / pageSize
			image, _ := mem.Read(0, mem.Size())
			snap.pristine = append([]byte(nil), image...)
		}
		i.cmdSnap = snap
	}
	c.snap = snap
	if c.start == nil || len(c.globals) != len(snap.globals) {
		c.close()
		return nil, errNoReuse
	}
	return c, nil
}

// reset reverts c to its state after instantiation. An error means c must
// be discarded.
func (c *cmdInst) reset() error {
	s := c.snap
	if err := revert(c.mod, c.alloc, c.globals, s.pages, s.pristine, s.globals); err != nil {
		return err
	}
	c.exited, c.exitCode, c.tainted = false, 0, false
	return nil
}

// invokeReused serves one request of a command module on a pooled (or new)
// instance. cold reports whether a new instance was instantiated. ok false
// means the module cannot take the reuse path and nothing was run.
func (i *instance) invokeReused(ctx context.Context, req *driver.Request, env []string, stdout *outputBuffer, stderr *stderrWriter) (cold, ok bool, err error) {
	i.mu.Lock()
	var c *cmdInst
	if n := len(i.cmdIdle); n > 0 {
		c, i.cmdIdle = i.cmdIdle[n-1], i.cmdIdle[:n-1]
	}
	i.mu.Unlock()
	if c == nil {
		cold = true
		if c, err = i.newCmdInst(ctx, stderr); err != nil {
			if errors.Is(err, errNoReuse) {
				i.noReuse.Store(true)
				return cold, false, nil
			}
			return cold, true, err
		}
	}
	s := c.slot
	s.origin.Store(monotonic()) // a fresh guest's clock starts at zero
	s.set(ctx, req.Body, stdout, stderr)
	_, err = c.start.Call(context.WithValue(withRequestEnv(ctx, env), cmdRunKey{}, c))
	s.clear()
	reusable := !c.tainted && !c.mod.IsClosed() && ctx.Err() == nil
	if err != nil {
		var exit *sys.ExitError
		reusable = reusable && c.exited && c.exitCode == 0 && errors.As(err, &exit) && exit.ExitCode() == 0
	}
	gerr := i.guestError(ctx, err, c.alloc, stderr)
	reusable = reusable && gerr == nil
	if reusable {
		if rerr := c.reset(); rerr != nil {
			i.d.log.Debug("discarding command instance", "function", i.spec.Function, "reason", rerr)
			reusable = false
		}
	}
	if reusable {
		i.mu.Lock()
		if !i.stopped && len(i.cmdIdle) < max(i.spec.Concurrency, 1) {
			i.cmdIdle = append(i.cmdIdle, c)
			c = nil
		}
		i.mu.Unlock()
	}
	if c != nil {
		c.close()
	}
	return cold, true, gerr
}
