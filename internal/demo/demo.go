// Package demo builds the bundled example functions from the sources
// embedded in the binary, for `hearth up --demo` and `hearth bench`.
//
// Go examples are compiled with the Go toolchain found on PATH; examples in
// other languages ship their built module next to their source. Builds are
// cached in a directory keyed by the sources' hash, so a restart does not
// rebuild.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	hearth "github.com/hearthdev/hearth"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Example is a built example function directory, ready to deploy.
type Example struct {
	Name     string // function name from its manifest
	Dir      string // the function directory
	Manifest *manifest.Manifest
}

// GoBuild says how one Go example is compiled.
type GoBuild struct {
	Dir    string   // example directory under examples/
	Output string   // file written into that directory
	Env    []string // GOOS/GOARCH etc.
	Flags  []string // extra go build flags
}

// GoBuilds are the Go examples and how to build them.
var GoBuilds = []GoBuild{
	// hello-go is a WASI reactor: its runtime initialises once at deploy and
	// every request starts from that snapshot (see driver/wasm).
	{Dir: "hello-go", Output: "hello.wasm", Env: []string{"GOOS=wasip1", "GOARCH=wasm"}, Flags: []string{"-buildmode=c-shared"}},
	// Sandbox examples: static Linux binaries.
	{Dir: "go-http", Output: "server", Env: []string{"GOOS=linux"}},
	{Dir: "go-lambda", Output: "bootstrap", Env: []string{"GOOS=linux"}},
}

// ErrNoGo means the Go toolchain is not installed, so Go examples cannot be
// built.
var ErrNoGo = errors.New("the Go toolchain (go) is not on PATH")

// Extract writes the embedded sources (with the module's go.mod and go.sum)
// to dir/src-<hash> (once) and returns that directory, a copy of the Hearth
// module holding just the examples and the SDK.
func Extract(dir string) (string, error) {
	h := sha256.New()
	var files []string
	err := fs.WalkDir(hearth.Sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := hearth.Sources.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	root := filepath.Join(dir, "src-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return root, nil
	}
	tmp, err := os.MkdirTemp(dir, ".extract-")
	if err != nil {
		return "", fmt.Errorf("extracting examples: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range files {
		b, _ := hearth.Sources.ReadFile(f)
		dst := filepath.Join(tmp, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".sh") || path.Base(f) == "bootstrap" {
			mode = 0o755
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			return "", err
		}
	}
	os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644)
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("extracting examples: %w", err)
	}
	return root, nil
}

// Build extracts the sources into dir, builds every example that needs it
// and returns the deployable examples. Examples that cannot be built here
// are reported in skipped with the reason, not as an error.
func Build(ctx context.Context, dir string, stderr io.Writer) (examples []Example, skipped map[string]error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	root, err := Extract(dir)
	if err != nil {
		return nil, nil, err
	}
	skipped = map[string]error{}
	built := map[string]bool{}
	for _, b := range GoBuilds {
		if err := GoBuildIn(ctx, root, b, stderr); err != nil {
			skipped[b.Dir] = err
			continue
		}
		built[b.Dir] = true
	}
	ents, err := os.ReadDir(filepath.Join(root, "examples"))
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, failed := skipped[e.Name()]; failed {
			continue
		}
		d := filepath.Join(root, "examples", e.Name())
		data, err := os.ReadFile(filepath.Join(d, manifest.FileName))
		if err != nil {
			continue
		}
		m, err := manifest.Parse(data)
		if err != nil {
			return nil, nil, fmt.Errorf("example %s: %w", e.Name(), err)
		}
		examples = append(examples, Example{Name: m.Name, Dir: d, Manifest: m})
	}
	return examples, skipped, nil
}

// GoBuildIn compiles one Go example inside an extracted source tree,
// skipping the build when its output is already there.
func GoBuildIn(ctx context.Context, root string, b GoBuild, stderr io.Writer) error {
	out := filepath.Join(root, "examples", b.Dir, b.Output)
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	return GoBuildTo(ctx, root, "./examples/"+b.Dir, out, b.Env, b.Flags, stderr)
}

// GoBuildTo runs `go build` of pkg (relative to root) into out.
func GoBuildTo(ctx context.Context, root, pkg, out string, env, flags []string, stderr io.Writer) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return ErrNoGo
	}
	tmp := out + ".tmp"
	args := append([]string{"build", "-trimpath", "-o", tmp}, flags...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	cmd.Env = append(cmd.Env, env...)
	var msg strings.Builder
	cmd.Stdout = &msg
	cmd.Stderr = &msg
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, msg.String())
	}
	return os.Rename(tmp, out)
}
