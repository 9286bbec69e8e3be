package registry

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearthdev/hearth/internal/artifact"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/wasm"
	"github.com/hearthdev/hearth/internal/store"
)

func pack(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := artifact.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func open(t *testing.T, data string) (*Registry, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := wasm.New(wasm.Config{CacheDir: filepath.Join(data, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close(context.Background()) })
	r, err := Open(context.Background(), Config{
		Store:      st,
		IsNotFound: func(err error) bool { return errors.Is(err, store.ErrNotFound) },
		Drivers:    map[string]driver.Driver{"wasm": drv},
		Dir:        filepath.Join(data, "functions"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

// TestRestoresFilesFromStore: a node whose local function files are gone
// (a new disk, another node) fetches them from the store's object store.
func TestRestoresFilesFromStore(t *testing.T) {
	data := t.TempDir()
	r, st := open(t, data)
	v, err := r.Deploy(context.Background(), "echo-c", pack(t, "../../examples/echo-c"))
	if err != nil {
		t.Fatal(err)
	}
	fn, ok := r.Lookup("echo-c")
	if !ok || fn.Spec.Version != v.Number {
		t.Fatalf("lookup after deploy: %v %+v", ok, fn)
	}
	st.Close()
	if err := os.RemoveAll(filepath.Join(data, "functions")); err != nil {
		t.Fatal(err)
	}

	r, st = open(t, data)
	defer st.Close()
	fn, ok = r.Lookup("echo-c")
	if !ok {
		t.Fatal("function lost after restart")
	}
	if _, err := os.Stat(filepath.Join(fn.Spec.Dir, "echo.wasm")); err != nil {
		t.Fatalf("files not restored: %v", err)
	}
}

// TestBadDeployLeavesNothing: a module that is not WebAssembly is refused
// with ErrInvalid and leaves no version, no object and no directory.
func TestBadDeployLeavesNothing(t *testing.T) {
	data := t.TempDir()
	r, st := open(t, data)
	defer st.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte("name: bad\nisolation: wasm\nmodule: m.wasm\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m.wasm"), []byte("not wasm"), 0o644)
	if _, err := r.Deploy(context.Background(), "bad", pack(t, dir)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if _, err := r.Get(context.Background(), "bad"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after a bad deploy: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(data, "functions"))
	if len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
}
