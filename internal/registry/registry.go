// Package registry is the node's view of deployed functions. It validates and
// stores new versions (manifest, archive, driver preparation, store), keeps
// the serving version of every function in memory for the invocation hot
// path, and removes functions with everything they own.
//
// The store is the source of truth; the registry's map is a cache rebuilt
// from it at start-up, and each version's files are unpacked once into a
// content-addressed directory under the data dir.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/artifact"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/funclog"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/scheduler"
)

// Errors callers branch on. Messages wrapped around them are user-facing.
var (
	ErrNotFound = errors.New("function not found")
	ErrInvalid  = errors.New("invalid function")
	ErrTooLarge = errors.New("function archive too large")
)

// Store is what the registry needs from the state store.
type Store interface {
	PutVersion(ctx context.Context, m manifest.Manifest, artifact io.Reader) (api.Version, error)
	Function(ctx context.Context, name string) (api.Function, error)
	Functions(ctx context.Context) ([]api.Function, error)
	Artifact(ctx context.Context, name string, version int) ([]byte, error)
	DeleteFunction(ctx context.Context, name string) (int, error)
}

// Remover stops a function's instances.
type Remover interface {
	Remove(ctx context.Context, name string)
}

// Config configures a Registry.
type Config struct {
	Store      Store
	IsNotFound func(error) bool // reports the store's not-found error
	Drivers    map[string]driver.Driver
	Scheduler  Remover
	Logs       funclog.Sink
	// Dir holds unpacked function files, one directory per artifact digest.
	Dir    string
	Limits artifact.Limits
	Logger *slog.Logger
}

// Registry holds the serving version of every function.
type Registry struct {
	cfg Config

	mu  sync.RWMutex
	fns map[string]*scheduler.Function
}

// Open loads every function from the store and makes sure its serving
// version's files are on local disk.
func Open(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits == (artifact.Limits{}) {
		cfg.Limits = artifact.DefaultLimits
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{cfg: cfg, fns: make(map[string]*scheduler.Function)}
	fns, err := cfg.Store.Functions(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: listing functions: %w", err)
	}
	for _, f := range fns {
		v, ok := latest(f)
		if !ok {
			continue
		}
		dir, err := r.ensureFiles(ctx, v)
		if err != nil {
			// One broken function must not keep the node down.
			cfg.Logger.Error("loading function", "function", f.Name, "version", v.Number, "err", err)
			continue
		}
		r.fns[f.Name] = r.function(v, dir)
	}
	cleanStaging(cfg.Dir)
	return r, nil
}

func latest(f api.Function) (api.Version, bool) {
	for _, v := range f.Versions {
		if v.Number == f.Latest {
			return v, true
		}
	}
	return api.Version{}, false
}

// Lookup returns the serving version of a function. It is the invocation
// hot path: a read-locked map lookup.
func (r *Registry) Lookup(name string) (*scheduler.Function, bool) {
	r.mu.RLock()
	fn, ok := r.fns[name]
	r.mu.RUnlock()
	return fn, ok
}

// Names lists the deployed functions.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.fns))
	for n := range r.fns {
		names = append(names, n)
	}
	return names
}

// Deploy validates archive (a gzip'd tar of a function directory) as a new
// version of name and makes it the serving version.
func (r *Registry) Deploy(ctx context.Context, name string, archive []byte) (api.Version, error) {
	mdata, err := artifact.ReadManifest(bytes.NewReader(archive), r.cfg.Limits)
	if err != nil {
		return api.Version{}, r.archiveErr(err)
	}
	m, err := manifest.Parse(mdata)
	if err != nil {
		return api.Version{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if m.Name != name {
		return api.Version{}, fmt.Errorf("%w: hearth.yaml: name: the manifest says %q but the URL says %q", ErrInvalid, m.Name, name)
	}
	drv, ok := r.cfg.Drivers[m.Isolation]
	if !ok {
		return api.Version{}, fmt.Errorf("%w: hearth.yaml: isolation: %q is not available on this node", ErrInvalid, m.Isolation)
	}
	sum := sha256.Sum256(archive)
	digest := hex.EncodeToString(sum[:])

	dir, created, err := r.unpack(digest, archive)
	if err != nil {
		return api.Version{}, err
	}
	undo := func() {
		if created {
			os.RemoveAll(dir)
		}
	}
	spec := specFor(*m, 0, dir, digest)
	if p, ok := drv.(driver.Preparer); ok {
		if err := p.Prepare(ctx, spec); err != nil {
			undo()
			if errors.Is(err, driver.ErrInvalidArtifact) {
				return api.Version{}, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			return api.Version{}, fmt.Errorf("preparing %s: %w", name, err)
		}
	}
	v, err := r.cfg.Store.PutVersion(ctx, *m, bytes.NewReader(archive))
	if err != nil {
		undo()
		return api.Version{}, fmt.Errorf("storing %s: %w", name, err)
	}
	fn := r.function(v, dir)
	r.mu.Lock()
	if cur, ok := r.fns[name]; !ok || cur.Spec.Version < v.Number {
		r.fns[name] = fn
	}
	r.mu.Unlock()
	r.cfg.Logger.Info("deployed", "function", name, "version", v.Number, "digest", digest[:12])
	return v, nil
}

func (r *Registry) archiveErr(err error) error {
	if errors.Is(err, artifact.ErrTooLarge) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalid, err)
}

// unpack extracts archive into the directory of its digest unless it is
// already there. created reports whether this call made the directory.
func (r *Registry) unpack(digest string, archive []byte) (dir string, created bool, err error) {
	dir = filepath.Join(r.cfg.Dir, digest)
	if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err == nil {
		return dir, false, nil
	}
	staging, err := os.MkdirTemp(r.cfg.Dir, ".staging-")
	if err != nil {
		return "", false, fmt.Errorf("unpacking: %w", err)
	}
	target := filepath.Join(staging, "files")
	if _, err := artifact.Unpack(bytes.NewReader(archive), target, r.cfg.Limits); err != nil {
		os.RemoveAll(staging)
		return "", false, r.archiveErr(err)
	}
	if err := os.Rename(target, dir); err != nil {
		os.RemoveAll(staging)
		if _, serr := os.Stat(filepath.Join(dir, manifest.FileName)); serr == nil {
			return dir, false, nil // a concurrent deploy of the same bytes won
		}
		return "", false, fmt.Errorf("unpacking: %w", err)
	}
	os.RemoveAll(staging)
	return dir, true, nil
}

// ensureFiles makes sure a version's files are unpacked locally, fetching
// the artifact from the store when they are not.
func (r *Registry) ensureFiles(ctx context.Context, v api.Version) (string, error) {
	dir := filepath.Join(r.cfg.Dir, v.Digest)
	if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err == nil {
		return dir, nil
	}
	data, err := r.cfg.Store.Artifact(ctx, v.Function, v.Number)
	if err != nil {
		return "", fmt.Errorf("fetching artifact: %w", err)
	}
	dir, _, err = r.unpack(v.Digest, data)
	return dir, err
}

func (r *Registry) function(v api.Version, dir string) *scheduler.Function {
	m := v.Manifest
	spec := specFor(m, v.Number, dir, v.Digest)
	if r.cfg.Logs != nil {
		spec.Logs = funclog.NewWriter(r.cfg.Logs, api.LogEntry{Function: m.Name, Version: v.Number, Stream: "stdout"})
	}
	return &scheduler.Function{Isolation: m.Isolation, Spec: spec, ScaleMin: m.Scale.Min, ScaleMax: m.Scale.Max, KeepAlive: m.KeepAlive}
}

func specFor(m manifest.Manifest, version int, dir, digest string) driver.Spec {
	return driver.Spec{
		Function:    m.Name,
		Version:     version,
		Dir:         dir,
		Digest:      digest,
		Protocol:    m.Protocol,
		Module:      m.Module,
		Command:     m.Command,
		RootFS:      m.RootFS,
		Env:         m.Env,
		MemoryBytes: int64(m.Memory),
		Timeout:     time.Duration(m.Timeout),
		Concurrency: m.Concurrency,
		AllowFiles:  m.Allow.Files,
		AllowNet:    m.Allow.Network,
	}
}

// Get returns a function with all its versions.
func (r *Registry) Get(ctx context.Context, name string) (api.Function, error) {
	f, err := r.cfg.Store.Function(ctx, name)
	if err != nil {
		return api.Function{}, r.storeErr(name, err)
	}
	return f, nil
}

// List returns every function, sorted by name.
func (r *Registry) List(ctx context.Context) ([]api.Function, error) {
	return r.cfg.Store.Functions(ctx)
}

// Delete removes a function: its versions and artifacts from the store, its
// instances, its prepared code and its local files. Logs and usage stay.
func (r *Registry) Delete(ctx context.Context, name string) (api.Deleted, error) {
	f, err := r.cfg.Store.Function(ctx, name)
	if err != nil {
		return api.Deleted{}, r.storeErr(name, err)
	}
	n, err := r.cfg.Store.DeleteFunction(ctx, name)
	if err != nil {
		return api.Deleted{}, r.storeErr(name, err)
	}
	r.mu.Lock()
	delete(r.fns, name)
	r.mu.Unlock()
	if r.cfg.Scheduler != nil {
		r.cfg.Scheduler.Remove(ctx, name)
	}
	for _, v := range f.Versions {
		spec := specFor(v.Manifest, v.Number, filepath.Join(r.cfg.Dir, v.Digest), v.Digest)
		if fg, ok := r.cfg.Drivers[v.Manifest.Isolation].(driver.Forgetter); ok {
			fg.Forget(spec)
		}
		os.RemoveAll(spec.Dir)
	}
	r.cfg.Logger.Info("removed", "function", name, "versions", n)
	return api.Deleted{Name: name, Versions: n}, nil
}

func (r *Registry) storeErr(name string, err error) error {
	if r.cfg.IsNotFound != nil && r.cfg.IsNotFound(err) {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return err
}

func cleanStaging(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if len(e.Name()) > 9 && e.Name()[:9] == ".staging-" {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// Warm prepares the serving version of every function (for wasm: loads its
// compiled code from the cache and takes its snapshot) so that the first
// invocations after a start do not pay for it. It stops starting new work
// after budget and returns when the work in flight is done.
func (r *Registry) Warm(ctx context.Context, budget time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	r.mu.RLock()
	fns := make([]*scheduler.Function, 0, len(r.fns))
	for _, fn := range r.fns {
		fns = append(fns, fn)
	}
	r.mu.RUnlock()
	work := make(chan *scheduler.Function)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fn := range work {
				p, ok := r.cfg.Drivers[fn.Isolation].(driver.Preparer)
				if !ok {
					continue
				}
				if err := p.Prepare(ctx, fn.Spec); err != nil && ctx.Err() == nil {
					r.cfg.Logger.Warn("warming function", "function", fn.Spec.Function, "err", err)
				}
			}
		}()
	}
	for _, fn := range fns {
		select {
		case work <- fn:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}
