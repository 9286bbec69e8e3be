package cli

import (
	"cmp"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/bench"
	"github.com/hearthdev/hearth/internal/server"
)

// DefaultListen is `hearth up`'s default listen address.
const DefaultListen = "127.0.0.1:8080"

func (a *app) upCommand() *cobra.Command {
	var (
		listen, data, logLevel string
		demo                   bool
		sandboxPool, asyncWork int
		keepAlive, natsListen  string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole platform in this process",
		Long: `Run the gateway, scheduler, isolation drivers and the embedded NATS server
in this process until interrupted. All state lives in the data directory, so
running up again on the same directory keeps functions, logs and usage.
SIGINT or SIGTERM drains in-flight invocations and exits.

The embedded NATS server takes only in-process connections unless
--nats-listen is given: then programs outside Hearth can publish to the
subjects that subject and stream triggers listen to, authenticating with the
token in DATA/` + server.NATSTokenFile + ` (created on first use, mode 0600) as a NATS
token (nats://TOKEN@HOST:PORT) or as the password of any user. The token
allows publishing and subscribing on user subjects only: not the JetStream
API, the KV and object stores, or Hearth's own subjects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", logLevel)
			}
			if asyncWork < 0 {
				return fmt.Errorf("invalid --async-workers %d: want 0 or more", asyncWork)
			}
			if data == "" {
				d, err := a.dataDir()
				if err != nil {
					return err
				}
				data = d
			}
			logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			natsURL := ""
			return a.runServer(cmd.Context(), server.Config{
				Listen:      listen,
				DataDir:     data,
				Demo:        demo,
				Logger:      logger,
				Stdout:      a.stdout,
				SandboxPool: sandboxPool,
				KeepAlive:   keepAlive,
				NATSListen:  natsListen,
				// 0 on the command line means none; in the config, the default.
				AsyncWorkers: cmp.Or(asyncWork, -1),
				NATSReady:    func(url string) { natsURL = url },
				Ready: func(addr string) {
					fmt.Fprintf(a.stdout, "hearth is up at http://%s\n  data: %s\n  key:  %s\n",
						addr, data, filepath.Join(data, KeyFile))
					if natsURL != "" {
						tok := filepath.Join(data, server.NATSTokenFile)
						fmt.Fprintf(a.stdout, "  nats: %s (token: %s)\n        e.g. nats -s \"%s\" pub SUBJECT DATA\n",
							natsURL, tok, strings.Replace(natsURL, "nats://", "nats://$(cat "+tok+")@", 1))
					}
				},
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", DefaultListen, "HTTP listen address")
	f.StringVar(&data, "data", "", "data directory (default $"+EnvData+", else ~/.local/share/hearth)")
	f.BoolVar(&demo, "demo", false, "deploy the bundled example functions and print curl lines")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.IntVar(&sandboxPool, "sandbox-pool", 2, "pre-built empty sandboxes kept ready for cold starts of any sandbox function (0: none)")
	f.StringVar(&keepAlive, "keepalive", "hearth", "default keep-alive policy for idle instances: hearth, hybrid or fixed-<duration>")
	f.IntVar(&asyncWork, "async-workers", async.DefaultWorkers, "asynchronous invocations run at once on this node (0: none; they stay queued until a node with workers runs them)")
	f.StringVar(&natsListen, "nats-listen", "", "also accept outside NATS clients on this address (e.g. 127.0.0.1:4222), authenticated by the token in DATA/"+server.NATSTokenFile+"; off by default")
	return cmd
}

func (a *app) benchCommand() *cobra.Command {
	var (
		duration time.Duration
		only     []string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the hot paths against baselines measured in the same run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if duration <= 0 {
				return fmt.Errorf("invalid --duration %s: must be positive", duration)
			}
			return a.runBench(cmd.Context(), bench.Config{
				Out:      a.stdout,
				Duration: duration,
				Only:     only,
				JSON:     a.output == outputJSON,
			})
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 2*time.Second, "time spent on each measurement")
	cmd.Flags().StringSliceVar(&only, "only", nil, "run only these benchmarks (comma-separated names)")
	return cmd
}
