package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/client"
)

// invokeAsync is `hearth invoke --async`: queue, print the id.
func (a *app) invokeAsync(cmd *cobra.Command, c *client.Client, cred credentials, name, path, method string, body io.Reader, hdr http.Header, key string) error {
	if cmd.Flags().Changed("request") && method != http.MethodPost {
		return fmt.Errorf("--async invocations are POST requests; drop -X %s", method)
	}
	if key != "" {
		hdr.Set("Idempotency-Key", key)
	}
	id, err := c.InvokeAsync(cmd.Context(), name, path, body, hdr)
	if err != nil {
		return a.explain(err, name, cred)
	}
	if a.output == outputJSON {
		return writeJSON(a.stdout, api.AsyncAccepted{ID: id})
	}
	_, err = fmt.Fprintln(a.stdout, id)
	return err
}

func (a *app) invocationCommand() *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "invocation ID",
		Short: "Show the status and response of an asynchronous invocation",
		Long: `Show an asynchronous invocation queued with ` + "`hearth invoke --async`" + `: its status
(queued, running, succeeded, failed), attempts, last error and stored response.
With --wait, poll until it succeeds or fails; a failed invocation makes the
command fail.`,
		Example: `  id=$(hearth invoke resize --async -d @photo.jpg)
  hearth invocation $id --wait`,
		Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var st api.InvocationStatus
			if wait {
				if timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, timeout)
					defer cancel()
				}
				st, err = c.WaitInvocation(ctx, args[0], 200*time.Millisecond)
			} else {
				st, err = c.Invocation(ctx, args[0])
			}
			if err != nil {
				return a.invocationErr(err, args[0], cred)
			}
			if a.output == outputJSON {
				err = writeJSON(a.stdout, st)
			} else {
				err = describeInvocation(a.stdout, st, a.now())
			}
			if err == nil && wait && st.Status == api.StatusFailed {
				err = fmt.Errorf("invocation %s failed after %s: %s", st.ID, plural(st.Attempts, "attempt"), dash(st.Error))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "poll until the invocation succeeds or fails")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long (default: no limit)")
	return cmd
}

func describeInvocation(w io.Writer, st api.InvocationStatus, now time.Time) error {
	kv := newTable(w)
	kv.row("ID:", st.ID)
	kv.row("Function:", st.Function)
	kv.row("Status:", st.Status)
	attempts := fmt.Sprint(st.Attempts)
	if st.Replays > 0 {
		attempts += fmt.Sprintf(" (after %s from the dead-letter queue)", plural(st.Replays, "replay"))
	}
	kv.row("Attempts:", attempts)
	kv.row("Enqueued:", formatTime(st.EnqueuedAt, now))
	kv.row("Started:", formatTime(st.StartedAt, now))
	kv.row("Finished:", formatTime(st.FinishedAt, now))
	if !st.NextAttemptAt.IsZero() {
		kv.row("Next attempt:", st.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	kv.row("Error:", dash(st.Error))
	if r := st.Response; r != nil {
		resp := fmt.Sprintf("HTTP %d, %s", r.Status, formatSize(int64(len(r.Body))))
		if r.Truncated {
			resp += " (truncated)"
		}
		kv.row("Response:", resp)
	} else {
		kv.row("Response:", "-")
	}
	if err := kv.flush(); err != nil {
		return err
	}
	if r := st.Response; r != nil && len(r.Body) > 0 {
		body := r.Body
		if !utf8.Valid(body) {
			_, err := fmt.Fprintf(w, "\n(binary body of %s; use -o json to get it base64-encoded)\n", formatSize(int64(len(body))))
			return err
		}
		if _, err := fmt.Fprintf(w, "\n%s", body); err != nil {
			return err
		}
		if !strings.HasSuffix(string(body), "\n") {
			fmt.Fprintln(w)
		}
	}
	return nil
}

func (a *app) invocationErr(err error, id string, cred credentials) error {
	if errors.Is(err, client.ErrNotFound) {
		return &hintError{fmt.Sprintf("no asynchronous invocation %q; ids come from `hearth invoke --async` and are kept for 7 days", id), err}
	}
	return a.explain(err, "", cred)
}

func (a *app) dlqCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List and replay asynchronous invocations that failed for good",
		Long: `The dead-letter queue holds asynchronous invocations that used up their retry
attempts or outlived their max age (retry: in hearth.yaml). Entries are kept
for 14 days. A replay queues the original request again under the same
invocation id, with a fresh set of attempts, and removes the entry.`,
	}
	cmd.AddCommand(a.dlqLsCommand(), a.dlqReplayCommand())
	return cmd
}

func (a *app) dlqLsCommand() *cobra.Command {
	var (
		function string
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the dead-letter queue, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			dls, err := c.DeadLetters(cmd.Context(), function, limit)
			if err != nil {
				return a.explain(err, "", cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, api.DeadLetterList{DeadLetters: dls})
			}
			if len(dls) == 0 {
				_, err := fmt.Fprintln(a.stdout, "The dead-letter queue is empty.")
				return err
			}
			t := newTable(a.stdout, "ID", "FUNCTION", "REASON", "ATTEMPTS", "FAILED", "ERROR")
			for _, d := range dls {
				t.row(d.ID, d.Function, d.Reason, d.Attempts, age(a.now(), d.FailedAt), oneLine(d.Error, 60))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&function, "function", "", "only this function's entries")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many entries (server default 100)")
	return cmd
}

func (a *app) dlqReplayCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "replay ID...",
		Short: "Queue dead-lettered invocations again under their ids",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%s needs at least one invocation ID (see `hearth dlq ls`)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			var errs []error
			for _, id := range args {
				st, err := c.Replay(cmd.Context(), id)
				if err != nil {
					if errors.Is(err, client.ErrNotFound) {
						err = fmt.Errorf("%s is not in the dead-letter queue", id)
					} else {
						err = a.explain(err, "", cred)
					}
					errs = append(errs, err)
					continue
				}
				if a.output == outputJSON {
					if err := writeJSONLine(a.stdout, st); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(a.stdout, "%s queued again (replay %d); `hearth invocation %s --wait` follows it\n", st.ID, st.Replays, st.ID)
			}
			return errors.Join(errs...)
		},
	}
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n-1]) + "…"
	}
	return dash(s)
}
