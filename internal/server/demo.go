package server

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hearthdev/hearth/internal/artifact"
	"github.com/hearthdev/hearth/internal/demo"
	"github.com/hearthdev/hearth/internal/registry"
)

// demoRequests are the curl lines printed for each bundled example: extra
// curl arguments and the path after /fn/{name}.
var demoRequests = map[string][][2]string{
	"hello":  {{"", ""}, {"-d 'hello, hearth'", ""}},
	"echo-c": {{"-d 'echo me'", "/some/path?x=1"}},
}

// deployDemo builds and deploys the bundled examples and prints curl lines
// that work when pasted.
func deployDemo(ctx context.Context, fns *registry.Registry, available func(isolation string) bool, cfg Config, addr string) error {
	out := cfg.Stdout
	examples, skipped, err := demo.Build(ctx, filepath.Join(cfg.DataDir, "cache", "demo"), out)
	if err != nil {
		return err
	}
	for name, why := range skipped {
		fmt.Fprintf(out, "demo: skipping example %s: %v\n", name, why)
	}
	keyPath := filepath.Join(cfg.DataDir, KeyFile)
	auth := fmt.Sprintf(`-H "Authorization: Bearer $(cat %s)"`, shellQuote(keyPath))
	var msg strings.Builder
	deployed := 0
	for _, ex := range examples {
		if !available(ex.Manifest.Isolation) {
			fmt.Fprintf(out, "demo: skipping example %s: isolation %q is not available on this node\n", ex.Name, ex.Manifest.Isolation)
			continue
		}
		var buf bytes.Buffer
		if err := artifact.Pack(ex.Dir, &buf); err != nil {
			return fmt.Errorf("packing %s: %w", ex.Name, err)
		}
		v, err := fns.Deploy(ctx, ex.Name, buf.Bytes())
		if err != nil {
			fmt.Fprintf(out, "demo: deploying %s: %v\n", ex.Name, err)
			continue
		}
		deployed++
		fmt.Fprintf(&msg, "  # %s (%s/%s, version %d)\n", ex.Name, ex.Manifest.Isolation, ex.Manifest.Protocol, v.Number)
		reqs := demoRequests[ex.Name]
		if len(reqs) == 0 {
			reqs = [][2]string{{"", ""}}
		}
		for _, r := range reqs {
			args := auth
			if r[0] != "" {
				args += " " + r[0]
			}
			fmt.Fprintf(&msg, "  curl -i %s 'http://%s/fn/%s%s'\n", args, addr, ex.Name, r[1])
		}
		msg.WriteString("\n")
	}
	fmt.Fprintf(out, "\nHearth is running on http://%s with %d demo functions. Try:\n\n%s", addr, deployed, msg.String())
	fmt.Fprintf(out, "  # the CLI finds the server and key by itself:\n  hearth ls\n  hearth invoke hello -d 'hi'\n  hearth logs hello\n\n")
	return nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
