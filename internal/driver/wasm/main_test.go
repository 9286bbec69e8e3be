package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// guests holds the paths of the test modules built by TestMain.
var guests struct {
	dir                 string
	guest, guestReactor string // testdata/guest
	hello, helloReactor string // examples/hello-go
	wazeroCache         string
}

func TestMain(m *testing.M) {
	if err := buildGuests(); err != nil {
		fmt.Fprintln(os.Stderr, "building test guests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// repoRoot is the module root, two levels above this package.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

// buildGuests builds the Go test guests for GOOS=wasip1, once per source
// change: outputs are cached under the user cache dir keyed by a hash of the
// sources and the Go version.
func buildGuests() error {
	root := repoRoot()
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	for _, dir := range []string{"internal/driver/wasm/testdata/guest", "sdk/wagi", "examples/hello-go"} {
		if err := hashTree(h, filepath.Join(root, dir)); err != nil {
			return err
		}
	}
	if err := hashTree(h, filepath.Join(root, "go.mod")); err != nil {
		return err
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	guests.wazeroCache = filepath.Join(base, "hearth-test", "wazero")
	guests.dir = filepath.Join(base, "hearth-test", "guests-"+key)
	guests.guest = filepath.Join(guests.dir, "guest", "guest.wasm")
	guests.guestReactor = filepath.Join(guests.dir, "guest-reactor", "guest.wasm")
	guests.hello = filepath.Join(guests.dir, "hello", "hello.wasm")
	guests.helloReactor = filepath.Join(guests.dir, "hello-reactor", "hello.wasm")
	for _, b := range []struct {
		out, pkg string
		reactor  bool
	}{
		{guests.guest, "./internal/driver/wasm/testdata/guest", false},
		{guests.guestReactor, "./internal/driver/wasm/testdata/guest", true},
		{guests.hello, "./examples/hello-go", false},
		{guests.helloReactor, "./examples/hello-go", true},
	} {
		if _, err := os.Stat(b.out); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(b.out), 0o755); err != nil {
			return err
		}
		args := []string{"build", "-trimpath", "-o", b.out + ".tmp"}
		if b.reactor {
			args = append(args, "-buildmode=c-shared")
		}
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, b.pkg)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if err := os.Rename(b.out+".tmp", b.out); err != nil {
			return err
		}
	}
	return nil
}

func hashTree(h io.Writer, root string) error {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".mod")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return nil
}

// newTestDriver returns a driver sharing the on-disk compilation cache of
// all test runs, closed at the end of the test.
func newTestDriver(t testing.TB) *Driver {
	t.Helper()
	d, err := New(Config{CacheDir: guests.wazeroCache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

// guestSpec is a spec for a module file with the given behaviour.
func guestSpec(t testing.TB, module, behaviour string) driver.Spec {
	t.Helper()
	b, err := os.ReadFile(module)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return driver.Spec{
		Function:    "guest",
		Version:     1,
		Dir:         filepath.Dir(module),
		Digest:      hex.EncodeToString(sum[:]),
		Protocol:    "wagi",
		Module:      filepath.Base(module),
		Env:         map[string]string{"BEHAVIOUR": behaviour},
		MemoryBytes: 128 << 20,
		Timeout:     30 * time.Second,
		Concurrency: 1,
	}
}

// mappingLeaks reports linear memories the driver still has mapped.
func mappingLeaks(d *Driver) func() error {
	return func() error {
		if n := d.live.Load(); n != 0 {
			return fmt.Errorf("%d linear memories still mapped", n)
		}
		return nil
	}
}
