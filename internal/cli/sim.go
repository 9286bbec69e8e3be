package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/keepalive"
	"github.com/hearthdev/hearth/internal/sim"
)

// EnvTrace names the default trace directory for `hearth sim`.
const EnvTrace = "HEARTH_TRACE_DIR"

func (a *app) simCommand() *cobra.Command {
	var (
		trace     string
		functions int
		policy    string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Replay an Azure Functions trace through the keep-alive policies",
		Long: `Replay a per-minute invocation trace in the Azure Functions 2019 format
(N_inv.csv, N_run.csv, N_mem.csv in --trace) through keep-alive policies — the
same code the scheduler runs — and print, per policy, the cold-start fraction,
the 75th-percentile per-function cold-start fraction and the memory-time of
idle loaded instances (GB-s).

--trace defaults to $` + EnvTrace + `, else ../shared/data/azure2019 from the
current directory or the repository root. --policy is all (fixed-10m, hybrid,
hearth) or one of fixed-<duration>, hybrid, hybrid-4h, hearth.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names := keepalive.Names()
			if policy != "all" {
				if _, err := keepalive.New(policy); err != nil {
					return fmt.Errorf("--policy: %w", err)
				}
				names = []string{policy}
			}
			if functions <= 0 {
				return fmt.Errorf("--functions %d: want a positive number of functions (e.g. 100 or 1000)", functions)
			}
			dir := trace
			if dir == "" {
				dir = a.getenv(EnvTrace)
			}
			if dir == "" {
				wd, err := os.Getwd()
				if err != nil {
					return fmt.Errorf("no --trace given and cannot find the working directory: %w", err)
				}
				if dir = findTrace(wd); dir == "" {
					return fmt.Errorf("no --trace given and no ../shared/data/azure2019 beside %s or the repository root; pass --trace DIR or set %s", wd, EnvTrace)
				}
			}
			tr, err := sim.Load(dir, functions)
			if err != nil {
				return err
			}
			results, err := sim.RunPolicies(cmd.Context(), tr, names)
			if err != nil {
				return err
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, results)
			}
			t := newTable(a.stdout, "POLICY", "INVOCATIONS", "COLD STARTS", "COLD %", "P75 FN COLD %", "WASTED GB-S")
			for _, r := range results {
				t.row(r.Policy, r.Invocations, r.ColdStarts,
					fmt.Sprintf("%.4f", 100*r.ColdStartFraction),
					fmt.Sprintf("%.2f", 100*r.P75FunctionColdStartFraction),
					fmt.Sprintf("%.0f", r.WastedMemoryGBSeconds))
			}
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&trace, "trace", "", "trace directory (default $"+EnvTrace+", else ../shared/data/azure2019)")
	f.IntVar(&functions, "functions", 1000, "use the N-function files N_inv.csv, N_run.csv, N_mem.csv")
	f.StringVar(&policy, "policy", "all", "policy to replay: all, fixed-<duration>, hybrid, hybrid-4h or hearth")
	return cmd
}

// findTrace looks for ../shared/data/azure2019 relative to wd, then to the
// repository root above wd (the nearest directory holding go.mod).
func findTrace(wd string) string {
	candidates := []string{wd}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			candidates = append(candidates, d)
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	for _, c := range candidates {
		p := filepath.Join(filepath.Dir(c), "shared", "data", "azure2019")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
	}
	return ""
}
