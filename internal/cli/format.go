package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearthdev/hearth/internal/manifest"
)

// Output formats for -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct {
	tw  *tabwriter.Writer
	err error
}

// newTable starts a table; a header is written if columns are given.
func newTable(w io.Writer, columns ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(columns) > 0 {
		t.row(stringsToAny(columns)...)
	}
	return t
}

func (t *table) row(cells ...any) {
	if t.err != nil {
		return
	}
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	_, t.err = io.WriteString(t.tw, strings.Join(s, "\t")+"\n")
}

func (t *table) flush() error {
	if t.err != nil {
		return t.err
	}
	return t.tw.Flush()
}

func stringsToAny(s []string) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}

// formatSize writes a byte count in SI units: "512 B", "1.9 MB".
func formatSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTP"[exp])
}

// formatMemory writes a memory limit the way manifests spell it: "128Mi".
func formatMemory(b manifest.Bytes) string {
	if b <= 0 {
		return "-"
	}
	return b.String()
}

// shortDigest is "sha256:" and the first 12 hex digits of a digest.
func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if d == "" {
		return "-"
	}
	if len(d) > 12 {
		d = d[:12] + "…"
	}
	return "sha256:" + d
}

// shortID is the first 8 characters of an invocation id, as in log lines.
func shortID(id string) string {
	if id == "" {
		return "-"
	}
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// age is how long before now t was: "42s ago", "5m ago", "3h ago", "2d ago".
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// formatTime is an RFC 3339 UTC time followed by its age.
func formatTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + age(now, t) + ")"
}

// logTime is the time format of log lines: 2026-11-27T05:01:02.123Z.
const logTime = "2006-01-02T15:04:05.000Z07:00"

func formatCommand(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func formatEnv(env map[string]string) string {
	if len(env) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]string, len(keys))
	for i, k := range keys {
		kv[i] = k + "=" + env[k]
	}
	return strings.Join(kv, " ")
}

func formatAllow(files, network bool) string {
	var s []string
	if files {
		s = append(s, "files")
	}
	if network {
		s = append(s, "network")
	}
	if len(s) == 0 {
		return "nothing beyond computation"
	}
	return strings.Join(s, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseTime reads a --from/--to/--since value: an RFC 3339 time, or a
// duration meaning that long before now ("24h", "90m", "7d").
func parseTime(flag, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil && strings.HasSuffix(s, "d") {
		if n, aerr := strconv.Atoi(strings.TrimSuffix(s, "d")); aerr == nil {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("invalid %s %q: want an RFC 3339 time (2026-11-27T05:00:00Z) or a duration before now (24h, 90m, 7d)", flag, s)
	}
	return now.Add(-d), nil
}

// writeJSONLine writes v as one line of newline-delimited JSON.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
