// Package cli implements the hearth command line: `hearth up` runs the
// platform in-process, and the other commands talk to a running server
// through package client.
//
// Everything the commands touch outside their arguments — environment, home
// directory, clock, standard streams, the server and benchmark entry points —
// is held in an env value, so tests control all of it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/bench"
	"github.com/hearthdev/hearth/internal/client"
	"github.com/hearthdev/hearth/internal/server"
)

// Version is the version `hearth version` reports. Release builds set it with
// -ldflags "-X github.com/hearthdev/hearth/internal/cli.Version=v1.2.3";
// otherwise it comes from the module's build information.
var Version = ""

// DefaultURL is where the CLI looks for a server when neither --url nor
// $HEARTH_URL says otherwise.
const DefaultURL = "http://127.0.0.1:8080"

// Environment variables the CLI reads.
const (
	EnvURL  = "HEARTH_URL"
	EnvKey  = "HEARTH_KEY"
	EnvData = "HEARTH_DATA"
)

// KeyFile is the admin key's file name inside the data directory.
const KeyFile = "admin.key"

// Run builds the hearth command tree and executes it with args (without the
// program name). It returns the error to report; it never exits the process.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return run(ctx, args, env{
		getenv:    os.Getenv,
		homeDir:   os.UserHomeDir,
		now:       time.Now,
		stdin:     stdin,
		stdout:    stdout,
		stderr:    stderr,
		runServer: server.Run,
		runBench:  bench.Run,
	})
}

// env is everything outside the arguments that commands depend on.
type env struct {
	getenv    func(string) string
	homeDir   func() (string, error)
	now       func() time.Time
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	runServer func(context.Context, server.Config) error
	runBench  func(context.Context, bench.Config) error
}

// app is one execution of the command tree: env plus the global flags.
type app struct {
	env
	url    string // --url
	key    string // --key
	output string // -o
}

func run(ctx context.Context, args []string, e env) error {
	if args == nil {
		args = []string{} // cobra falls back to os.Args on nil
	}
	a := &app{env: e}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	return root.ExecuteContext(ctx)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hearth",
		Short: "Hearth: a self-hosted serverless platform in one binary",
		Long: `Hearth runs functions (WebAssembly modules and sandboxed programs) behind one
HTTP gateway. Start the platform with ` + "`hearth up`" + `, deploy a function directory with
` + "`hearth deploy DIR`" + ` and call it with ` + "`hearth invoke NAME`" + `.

The CLI finds the server with --url, else $HEARTH_URL, else ` + DefaultURL + `,
and the API key with --key, else $HEARTH_KEY, else the admin.key file in the
data directory ($HEARTH_DATA, else ~/.local/share/hearth).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch a.output {
			case outputTable, outputJSON:
				return nil
			}
			return fmt.Errorf("invalid --output %q: use table or json", a.output)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", "", "server URL (default $"+EnvURL+", else "+DefaultURL+")")
	pf.StringVar(&a.key, "key", "", "API key (default $"+EnvKey+", else the "+KeyFile+" file in the data directory)")
	pf.StringVarP(&a.output, "output", "o", outputTable, "output format: table or json")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w; see `%s --help`", err, cmd.CommandPath())
	})

	root.AddCommand(
		a.upCommand(),
		a.deployCommand(),
		a.invokeCommand(),
		a.invocationCommand(), // dlq.go
		a.dlqCommand(),        // dlq.go
		a.triggersCommand(),   // triggers.go
		a.eventsCommand(),     // triggers.go
		a.bucketCommand(),     // triggers.go
		a.lsCommand(),
		a.describeCommand(),
		a.rmCommand(),
		a.logsCommand(),
		a.usageCommand(),
		a.benchCommand(),
		a.simCommand(),
		a.versionCommand(),
	)
	return root
}

// dataDir is $HEARTH_DATA, else ~/.local/share/hearth.
func (a *app) dataDir() (string, error) {
	if d := a.getenv(EnvData); d != "" {
		return d, nil
	}
	home, err := a.homeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("cannot find the data directory: no home directory (%v); set %s or pass --data", err, EnvData)
	}
	return filepath.Join(home, ".local", "share", "hearth"), nil
}

// serverURL resolves --url, $HEARTH_URL, DefaultURL in that order. A URL
// without a scheme gets http://.
func (a *app) serverURL() (string, error) {
	raw, from := a.url, "--url"
	if raw == "" {
		raw, from = a.getenv(EnvURL), "$"+EnvURL
	}
	if raw == "" {
		return DefaultURL, nil
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("invalid server URL %q from %s: want e.g. %s", raw, from, DefaultURL)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Where an API key came from; used to print hints without printing the key.
type keySource int

const (
	keyFromFlag keySource = iota
	keyFromEnv
	keyFromFile
)

type credentials struct {
	key    string
	source keySource
	path   string // the key file, if source is keyFromFile
}

// credentials resolves --key, $HEARTH_KEY, then <data dir>/admin.key.
func (a *app) credentials() (credentials, error) {
	if a.key != "" {
		return credentials{key: a.key, source: keyFromFlag}, nil
	}
	if k := a.getenv(EnvKey); k != "" {
		return credentials{key: k, source: keyFromEnv}, nil
	}
	dir, err := a.dataDir()
	if err != nil {
		return credentials{}, fmt.Errorf("no API key: pass --key or set %s (%w)", EnvKey, err)
	}
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return credentials{}, fmt.Errorf("no API key: pass --key, set %s, or run `hearth up` once to create %s", EnvKey, path)
	case errors.Is(err, os.ErrPermission):
		return credentials{}, fmt.Errorf("no API key: cannot read %s (permission denied); run as the user that ran `hearth up`, or pass --key or set %s", path, EnvKey)
	case err != nil:
		return credentials{}, fmt.Errorf("no API key: reading %s: %w", path, err)
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		return credentials{}, fmt.Errorf("no API key: %s is empty; pass --key or set %s", path, EnvKey)
	}
	return credentials{key: key, source: keyFromFile, path: path}, nil
}

// client returns a client for the resolved server and key.
func (a *app) client() (*client.Client, credentials, error) {
	u, err := a.serverURL()
	if err != nil {
		return nil, credentials{}, err
	}
	cred, err := a.credentials()
	if err != nil {
		return nil, credentials{}, err
	}
	return client.New(u, cred.key, client.WithUserAgent("hearth-cli/"+version())), cred, nil
}

// hintError replaces an error's message with one that says what to do next,
// keeping the original for errors.Is and errors.As.
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }

// explain rewrites errors a user can act on: an unknown function and a
// rejected key. name is the function the command was about, if any.
func (a *app) explain(err error, name string, cred credentials) error {
	switch {
	case err == nil:
		return nil
	case name != "" && errors.Is(err, client.ErrNotFound):
		return &hintError{fmt.Sprintf("function %q not found; `hearth ls` lists deployed functions", name), err}
	case errors.Is(err, client.ErrUnauthorized):
		var from string
		switch cred.source {
		case keyFromFlag:
			from = "--key"
		case keyFromEnv:
			from = "$" + EnvKey
		default:
			from = cred.path
		}
		u, _ := a.serverURL()
		return &hintError{fmt.Sprintf("the server at %s rejected the API key from %s; use the key in its data directory's %s (pass --key or set %s)", u, from, KeyFile, EnvKey), err}
	}
	return err
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of hearth",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.output == outputJSON {
				return writeJSON(a.stdout, map[string]string{
					"version": version(), "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH,
				})
			}
			_, err := fmt.Fprintf(a.stdout, "hearth %s (%s %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
