package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/client"
)

func (a *app) logsCommand() *cobra.Command {
	var (
		follow bool
		tail   int
		since  string
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a function's logs",
		Long: `Print a function's log lines, oldest first, as
  TIME [STREAM] INVOCATION MESSAGE
where INVOCATION is the first 8 characters of the invocation id. With -o json
each line is one api.LogEntry JSON object.`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			opts := client.LogOptions{Tail: tail, Follow: follow}
			if since != "" {
				t, err := parseTime("--since", since, a.now())
				if err != nil {
					return err
				}
				opts.Since = t
			}
			if tail < 0 {
				return fmt.Errorf("invalid --tail %d: must be 0 or more", tail)
			}
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			emit := func(e api.LogEntry) error {
				_, err := fmt.Fprintf(a.stdout, "%s [%s] %s %s\n",
					e.Time.UTC().Format(logTime), e.Stream, shortID(e.InvocationID), strings.TrimRight(e.Line, "\r\n"))
				return err
			}
			if a.output == outputJSON {
				emit = func(e api.LogEntry) error { return writeJSONLine(a.stdout, e) }
			}
			err = c.Logs(cmd.Context(), name, opts, emit)
			if follow && errors.Is(err, context.Canceled) {
				return nil // Ctrl-C ends a follow
			}
			return a.explain(err, name, cred)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	f.IntVar(&tail, "tail", 0, "print only the last N lines (0: the server's default)")
	f.StringVar(&since, "since", "", "only lines since this RFC 3339 time or duration ago (10m, 2h)")
	return cmd
}

func (a *app) usageCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Print invocations, errors and GB-seconds per function",
		Long: `Print per-function usage between --from and --to (default: the last 24 hours).
Times are RFC 3339 or a duration before now (24h, 7d). One invocation bills
its memory limit in GB times its duration rounded up to the next millisecond.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			now := a.now()
			start, end := now.Add(-24*time.Hour), now
			var err error
			if from != "" {
				if start, err = parseTime("--from", from, now); err != nil {
					return err
				}
			}
			if to != "" {
				if end, err = parseTime("--to", to, now); err != nil {
					return err
				}
			}
			if !start.Before(end) {
				return fmt.Errorf("--from %s is not before --to %s", start.Format(time.RFC3339), end.Format(time.RFC3339))
			}
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.Usage(cmd.Context(), start, end)
			if err != nil {
				return a.explain(err, "", cred)
			}
			sort.Slice(u.Functions, func(i, j int) bool { return u.Functions[i].Function < u.Functions[j].Function })
			if a.output == outputJSON {
				if u.Functions == nil {
					u.Functions = []api.FunctionUsage{}
				}
				return writeJSON(a.stdout, u)
			}
			t := newTable(a.stdout, "FUNCTION", "INVOCATIONS", "ERRORS", "GB-SECONDS")
			for _, f := range u.Functions {
				t.row(f.Function, f.Invocations, f.Errors, fmt.Sprintf("%.6f", f.GBSeconds))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start: RFC 3339 time or duration before now (default 24h)")
	cmd.Flags().StringVar(&to, "to", "", "end: RFC 3339 time or duration before now (default now)")
	return cmd
}
