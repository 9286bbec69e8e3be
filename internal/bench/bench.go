// Package bench measures Hearth's hot paths, each next to a baseline measured
// in the same run on the same machine, and prints the ratios. Absolute
// figures on a shared 2-core machine are noisy; the ratios are what the
// targets are stated in.
//
// Load comes from a closed-loop generator (Load): net/http's client in this
// process by default; a lean hand-written HTTP/1.1 client (Load.Lean, like
// wrk) where the baseline's own client is lean (async enqueue against raw
// NATS publishes); and that lean client in a child process (Load.Process)
// where the figure is the forwarder's CPU per request, which the bench
// reads from this process's rusage while the load runs elsewhere.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Config selects what to measure.
type Config struct {
	Out      io.Writer
	Duration time.Duration // per measurement; default 3 s
	Only     []string      // names of benchmarks to run; empty = all
	JSON     bool
	// WorkDir holds build caches and the node's data; default a cache dir.
	WorkDir string
	Logger  *slog.Logger
}

// Figure is one measured result next to its baseline.
type Figure struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline string  `json:"baseline,omitempty"` // what the value is compared with
	BaseVal  float64 `json:"baseline_value,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Target   string  `json:"target,omitempty"`
	Pass     *bool   `json:"pass,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// A benchmark measures one thing and returns its figures.
type benchmark struct {
	name string
	run  func(ctx context.Context, e *env) ([]Figure, error)
}

var all = []benchmark{
	{"wasm-warm", benchWasmWarm},
	{"wasm-snapshot", benchSnapshot},
	{"wasm-cold", benchCold},
	{"sandbox-warm", benchSandboxWarm},
	{"sandbox-cold", benchSandboxCold},
	{"burst", benchBurst},
	{"async", benchAsync},
	{"triggers", benchTriggers},
}

// Names lists the benchmarks Run knows.
func Names() []string {
	var n []string
	for _, b := range all {
		n = append(n, b.name)
	}
	return n
}

// Run runs the benchmarks and prints a table (or JSON) to cfg.Out.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WorkDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cfg.WorkDir = filepath.Join(base, "hearth", "bench")
	}
	for _, o := range cfg.Only {
		if !slices.Contains(Names(), o) {
			return fmt.Errorf("unknown benchmark %q; known: %s", o, strings.Join(Names(), ", "))
		}
	}
	if path := os.Getenv("HEARTH_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	e, err := newEnv(ctx, cfg)
	if err != nil {
		return err
	}
	defer e.close()
	if !cfg.JSON {
		fmt.Fprintf(cfg.Out, "hearth bench: %d CPUs, %s per measurement; every figure is compared with a baseline measured in this run\n\n", runtime.NumCPU(), cfg.Duration)
	}
	var figs []Figure
	for _, b := range all {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, b.name) {
			continue
		}
		fs, err := b.run(ctx, e)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		figs = append(figs, fs...)
		if !cfg.JSON {
			printFigures(cfg.Out, fs)
		}
	}
	if cfg.JSON {
		enc := json.NewEncoder(cfg.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(figs)
	}
	return nil
}

func printFigures(w io.Writer, figs []Figure) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range figs {
		ratio := ""
		if f.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", f.Ratio)
		}
		verdict := ""
		if f.Pass != nil {
			verdict = "FAIL"
			if *f.Pass {
				verdict = "ok"
			}
		}
		base := f.Baseline
		if base != "" && f.BaseVal != 0 {
			base = fmt.Sprintf("%s %s", f.Baseline, fmtVal(f.BaseVal, f.Unit))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\n", f.Name, fmtVal(f.Value, f.Unit), base, ratio, f.Target, verdict)
		if f.Note != "" {
			fmt.Fprintf(tw, "  %s\t\t\t\t\n", f.Note)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func fmtVal(v float64, unit string) string {
	switch unit {
	case "req/s":
		return fmt.Sprintf("%.0f req/s", v)
	case "µs":
		return fmt.Sprintf("%.0f µs", v)
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

func pass(b bool) *bool { return &b }

// rawBaseline serves a plain in-process net/http hello handler.
func rawBaseline() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello\n"))
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/", func() { srv.Close() }, nil
}
