// Command hearth is Hearth, a self-hosted serverless platform in one binary:
// `hearth up` runs the platform, and the other subcommands (deploy, invoke,
// ls, describe, rm, logs, usage, bench) manage and call it. See
// `hearth --help`; the commands are implemented in internal/cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hearthdev/hearth/internal/bench"
	"github.com/hearthdev/hearth/internal/cli"
	"github.com/hearthdev/hearth/internal/driver/sandbox"
)

func main() {
	// When this process was started as a sandbox's init (PID 1 inside the
	// sandbox's namespaces), it runs that and never returns.
	sandbox.MaybeRunInit()
	bench.MaybeRunLoad()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
