package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
)

func (a *app) deployCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "deploy DIR",
		Short: "Deploy a function directory as a new version",
		Long: `Pack the function directory DIR (it holds hearth.yaml and the function's
files) and upload it. Each deploy creates a new immutable version; the newest
serves traffic.`,
		Args: exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			v, err := c.Deploy(cmd.Context(), args[0])
			if err != nil {
				return a.explain(err, "", cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, v)
			}
			w := a.stdout
			fmt.Fprintf(w, "deployed %s version %d (%s, %s)\n", v.Function, v.Number, formatSize(v.Size), shortDigest(v.Digest))
			fmt.Fprintf(w, "invoke it with:\n  hearth invoke %s\n  curl -H \"Authorization: Bearer %s\" %s/fn/%s\n",
				v.Function, a.keyForShell(cred), c.URL(), v.Function)
			return nil
		},
	}
}

// keyForShell is how a pasted shell command should refer to the key, without
// printing it.
func (a *app) keyForShell(cred credentials) string {
	switch cred.source {
	case keyFromFile:
		path := cred.path
		if home, err := a.homeDir(); err == nil && home != "" {
			if rel, err := filepath.Rel(home, path); err == nil && !strings.HasPrefix(rel, "..") {
				path = "~" + string(filepath.Separator) + rel
			}
		}
		return "$(cat " + path + ")"
	case keyFromEnv:
		return "$" + EnvKey
	default:
		return "<key>"
	}
}

func (a *app) lsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List deployed functions",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			fns, err := c.Functions(cmd.Context())
			if err != nil {
				return a.explain(err, "", cred)
			}
			sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
			if a.output == outputJSON {
				if fns == nil {
					fns = []api.Function{}
				}
				return writeJSON(a.stdout, api.FunctionList{Functions: fns})
			}
			if len(fns) == 0 {
				fmt.Fprintln(a.stderr, "no functions deployed; deploy one with `hearth deploy DIR`")
				return nil
			}
			now := a.now()
			t := newTable(a.stdout, "NAME", "VERSION", "ISOLATION", "PROTOCOL", "MEMORY", "UPDATED")
			for _, f := range fns {
				m := latest(f).Manifest
				t.row(f.Name, f.Latest, dash(m.Isolation), dash(m.Protocol), formatMemory(m.Memory), age(now, f.UpdatedAt))
			}
			return t.flush()
		},
	}
}

func (a *app) describeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a function's versions, manifest and live status",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			f, err := c.Function(cmd.Context(), args[0])
			if err != nil {
				return a.explain(err, args[0], cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, f)
			}
			return describe(a.stdout, f, a.now())
		},
	}
}

func describe(w io.Writer, f api.Function, now time.Time) error {
	m := latest(f).Manifest
	kv := newTable(w)
	kv.row("Name:", f.Name)
	kv.row("Latest version:", f.Latest)
	kv.row("Created:", formatTime(f.CreatedAt, now))
	kv.row("Updated:", formatTime(f.UpdatedAt, now))
	kv.row("Isolation:", dash(m.Isolation))
	kv.row("Protocol:", dash(m.Protocol))
	if m.Module != "" {
		kv.row("Module:", m.Module)
	}
	if len(m.Command) > 0 {
		kv.row("Command:", formatCommand(m.Command))
	}
	kv.row("Memory:", formatMemory(m.Memory))
	kv.row("Timeout:", time.Duration(m.Timeout))
	kv.row("Concurrency:", m.Concurrency)
	kv.row("Scale:", fmt.Sprintf("min %d, max %d", m.Scale.Min, m.Scale.Max))
	kv.row("Env:", formatEnv(m.Env))
	kv.row("Allow:", formatAllow(m.Allow.Files, m.Allow.Network))
	if s := f.Status; s != nil {
		kv.row("Status:", fmt.Sprintf("%s (%d idle, %d starting), %d in flight, %d queued", plural(s.Instances, "instance"), s.Idle, s.Starting, s.InFlight, s.QueueDepth))
		scale := fmt.Sprintf("desired %d", s.Desired)
		if s.Panic {
			scale += " (panic mode)"
		}
		if s.Reason != "" {
			scale += ": " + s.Reason
		}
		kv.row("Sizing:", scale)
		if s.KeepAlive != "" {
			kv.row("Keep-alive:", s.KeepAlive)
		}
	} else {
		kv.row("Status:", "-")
	}
	if err := kv.flush(); err != nil {
		return err
	}

	if len(f.Triggers) > 0 {
		fmt.Fprintln(w)
		if err := writeTriggers(w, f.Triggers, now, false); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	vs := append([]api.Version(nil), f.Versions...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].Number > vs[j].Number })
	t := newTable(w, "VERSION", "DIGEST", "SIZE", "CREATED")
	for _, v := range vs {
		n := fmt.Sprint(v.Number)
		if v.Number == f.Latest {
			n += " (serving)"
		}
		t.row(n, shortDigest(v.Digest), formatSize(v.Size), formatTime(v.CreatedAt, now))
	}
	return t.flush()
}

func (a *app) rmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Remove a function and all its versions",
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.Delete(cmd.Context(), args[0])
			if err != nil {
				return a.explain(err, args[0], cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, d)
			}
			name := d.Name
			if name == "" {
				name = args[0]
			}
			_, err = fmt.Fprintf(a.stdout, "removed %s (%s)\n", name, plural(d.Versions, "version"))
			return err
		},
	}
}

// latest returns the version of f that serves traffic, or the zero Version.
func latest(f api.Function) api.Version {
	var best api.Version
	for _, v := range f.Versions {
		if v.Number == f.Latest {
			return v
		}
		if v.Number > best.Number {
			best = v
		}
	}
	return best
}

// exactArgs is cobra.ExactArgs with a message naming the missing argument.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s (got %d arguments); usage: %s", cmd.CommandPath(), names, len(args), cmd.UseLine())
		}
		return nil
	}
}
