package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/bench"
	"github.com/hearthdev/hearth/internal/client"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/server"
)

const testKey = "k3y"

var now = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

// harness runs the CLI with a controlled environment.
type harness struct {
	t         *testing.T
	vars      map[string]string
	home      string
	stdin     string
	serverCfg *server.Config
	benchCfg  *bench.Config
	// natsURL, if set, makes the fake server report it and call Ready.
	natsURL string
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, vars: map[string]string{}, home: t.TempDir()}
}

func (h *harness) run(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, env{
		getenv:  func(k string) string { return h.vars[k] },
		homeDir: func() (string, error) { return h.home, nil },
		now:     func() time.Time { return now },
		stdin:   strings.NewReader(h.stdin),
		stdout:  &out,
		stderr:  &errOut,
		runServer: func(ctx context.Context, cfg server.Config) error {
			h.serverCfg = &cfg
			if h.natsURL != "" {
				cfg.NATSReady(h.natsURL)
				cfg.Ready("127.0.0.1:8080")
			}
			return nil
		},
		runBench: func(ctx context.Context, cfg bench.Config) error {
			h.benchCfg = &cfg
			return nil
		},
	})
	return out.String(), errOut.String(), err
}

func TestServerURL(t *testing.T) {
	tests := []struct {
		flag, env, want, wantErr string
	}{
		{want: DefaultURL},
		{env: "http://10.0.0.1:9000/", want: "http://10.0.0.1:9000"},
		{flag: "https://hearth.example", env: "http://ignored", want: "https://hearth.example"},
		{flag: "localhost:8081", want: "http://localhost:8081"},
		{flag: "ftp://x", wantErr: `invalid server URL "ftp://x" from --url`},
		{env: "http://", wantErr: `from $HEARTH_URL`},
	}
	for _, tt := range tests {
		a := &app{env: env{getenv: func(string) string { return tt.env }}, url: tt.flag}
		got, err := a.serverURL()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("serverURL(flag %q, env %q) err = %v, want %q", tt.flag, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("serverURL(flag %q, env %q) = %q, %v; want %q", tt.flag, tt.env, got, err, tt.want)
		}
	}
}

func TestCredentials(t *testing.T) {
	home := t.TempDir()
	defaultDir := filepath.Join(home, ".local", "share", "hearth")
	dataDir := t.TempDir()
	emptyDir := t.TempDir()
	for dir, key := range map[string]string{defaultDir: "from-home\n", dataDir: "from-data", emptyDir: " \n"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(t.TempDir(), "nothing")

	tests := []struct {
		name    string
		flag    string
		vars    map[string]string
		want    string
		source  keySource
		wantErr []string
	}{
		{name: "flag wins", flag: "f", vars: map[string]string{EnvKey: "e", EnvData: dataDir}, want: "f", source: keyFromFlag},
		{name: "env", vars: map[string]string{EnvKey: "e", EnvData: dataDir}, want: "e", source: keyFromEnv},
		{name: "HEARTH_DATA key file", vars: map[string]string{EnvData: dataDir}, want: "from-data", source: keyFromFile},
		{name: "default key file", vars: map[string]string{}, want: "from-home", source: keyFromFile},
		{name: "no key", vars: map[string]string{EnvData: missing},
			wantErr: []string{"no API key: pass --key, set HEARTH_KEY, or run `hearth up` once to create " + filepath.Join(missing, KeyFile)}},
		{name: "empty key file", vars: map[string]string{EnvData: emptyDir}, wantErr: []string{"is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &app{env: env{
				getenv:  func(k string) string { return tt.vars[k] },
				homeDir: func() (string, error) { return home, nil },
			}, key: tt.flag}
			got, err := a.credentials()
			if len(tt.wantErr) > 0 {
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil || got.key != tt.want || got.source != tt.source {
				t.Errorf("credentials = %+v, %v; want key %q from %v", got, err, tt.want, tt.source)
			}
		})
	}
}

// fakeAPI serves the subset of the API the commands use, with two functions.
func fakeAPI(t *testing.T) *httptest.Server {
	t.Helper()
	created := now.Add(-72 * time.Hour)
	hello := api.Function{
		Name: "hello", Latest: 2, CreatedAt: created, UpdatedAt: now.Add(-5 * time.Minute),
		Versions: []api.Version{
			{Function: "hello", Number: 1, Digest: strings.Repeat("1", 64), Size: 512, CreatedAt: created,
				Manifest: manifest.Manifest{Name: "hello", Isolation: "wasm", Protocol: "wagi", Memory: 64 << 20}},
			{Function: "hello", Number: 2, Digest: "abcd1234abcd1234" + strings.Repeat("0", 48), Size: 1_900_000, CreatedAt: now.Add(-5 * time.Minute),
				Manifest: manifest.Manifest{
					Name: "hello", Isolation: "wasm", Protocol: "wagi", Module: "hello.wasm",
					Memory: 128 << 20, Timeout: manifest.Duration(30 * time.Second), Concurrency: 1,
					Scale: manifest.Scale{Max: 10}, Env: map[string]string{"GREETING": "hi", "A": "b"},
				}},
		},
	}
	api2 := api.Function{
		Name: "api", Latest: 1, CreatedAt: created, UpdatedAt: created,
		Versions: []api.Version{{Function: "api", Number: 1, Manifest: manifest.Manifest{
			Name: "api", Isolation: "sandbox", Protocol: "http", Command: []string{"./server", "--port", "$PORT"}, Memory: 1 << 30,
		}}},
	}
	fns := map[string]api.Function{"hello": hello, "api": api2}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, api.FunctionList{Functions: []api.Function{hello, api2}})
	})
	mux.HandleFunc("GET /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		f, ok := fns[r.PathValue("name")]
		if !ok {
			notFound(w, r.PathValue("name"))
			return
		}
		f.Status = &api.FunctionStatus{Instances: 2, Idle: 1, InFlight: 1, QueueDepth: 0, Desired: 2, Reason: "stable: 60s avg 1.0 in flight", KeepAlive: "hearth"}
		reply(w, http.StatusOK, f)
	})
	mux.HandleFunc("DELETE /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		f, ok := fns[r.PathValue("name")]
		if !ok {
			notFound(w, r.PathValue("name"))
			return
		}
		reply(w, http.StatusOK, api.Deleted{Name: f.Name, Versions: len(f.Versions)})
	})
	mux.HandleFunc("PUT /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		reply(w, http.StatusCreated, api.Version{Function: r.PathValue("name"), Number: 3, Size: n, Digest: "abcd1234abcd1234ffff"})
	})
	mux.HandleFunc("GET /v1/functions/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := fns[r.PathValue("name")]; !ok {
			notFound(w, r.PathValue("name"))
			return
		}
		t0 := time.Date(2026, 11, 27, 5, 1, 2, 123e6, time.UTC)
		enc := json.NewEncoder(w)
		enc.Encode(api.LogEntry{Time: t0, Function: "hello", InvocationID: "a1b2c3d4e5f6", Stream: "stderr", Line: "message\n"})
		enc.Encode(api.LogEntry{Time: t0.Add(time.Second), Function: "hello", Stream: "system", Line: "instance started " + r.URL.RawQuery})
	})
	mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		from, _ := time.Parse(time.RFC3339, r.URL.Query().Get("from"))
		to, _ := time.Parse(time.RFC3339, r.URL.Query().Get("to"))
		reply(w, http.StatusOK, api.Usage{From: from, To: to, Functions: []api.FunctionUsage{
			{Function: "hello", Invocations: 1200, Errors: 3, GBSeconds: 0.15},
			{Function: "api", Invocations: 7, GBSeconds: 0.0000125},
		}})
	})
	invoke := func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("name") {
		case "hello":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Hearth-Invocation-Id", "inv1")
			w.Header().Set("X-Hearth-Cold-Start", "false")
			fmt.Fprintf(w, "%s %s ct=%s cl=%d body=%s", r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), r.ContentLength, body)
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "short and stout")
		case "busy":
			w.Header().Set("Retry-After", "2")
			replyError(w, http.StatusTooManyRequests, api.CodeOverloaded, "queue of busy is full")
		default:
			notFound(w, r.PathValue("name"))
		}
	}
	mux.HandleFunc("/fn/{name}", invoke)
	mux.HandleFunc("/fn/{name}/{path...}", invoke)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			replyError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong API key")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func replyError(w http.ResponseWriter, status int, code, msg string) {
	reply(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

func notFound(w http.ResponseWriter, name string) {
	replyError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("function %q not found", name))
}

func TestCommands(t *testing.T) {
	srv := fakeAPI(t)
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "body.json"), []byte(`{"a":1}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		stdin   string
		want    string // exact stdout, unless wantSub
		wantSub []string
		wantErr string
	}{
		{
			name: "ls",
			args: []string{"ls"},
			want: "" +
				"NAME   VERSION  ISOLATION  PROTOCOL  MEMORY  UPDATED\n" +
				"api    1        sandbox    http      1Gi     3d ago\n" +
				"hello  2        wasm       wagi      128Mi   5m ago\n",
		},
		{
			name:    "ls json",
			args:    []string{"ls", "-o", "json"},
			wantSub: []string{`"functions": [`, `"name": "api"`, `"latest_version": 2`},
		},
		{
			name: "describe",
			args: []string{"describe", "hello"},
			want: "" +
				"Name:            hello\n" +
				"Latest version:  2\n" +
				"Created:         2026-11-24T06:00:00Z (3d ago)\n" +
				"Updated:         2026-11-27T05:55:00Z (5m ago)\n" +
				"Isolation:       wasm\n" +
				"Protocol:        wagi\n" +
				"Module:          hello.wasm\n" +
				"Memory:          128Mi\n" +
				"Timeout:         30s\n" +
				"Concurrency:     1\n" +
				"Scale:           min 0, max 10\n" +
				"Env:             A=b GREETING=hi\n" +
				"Allow:           nothing beyond computation\n" +
				"Status:          2 instances (1 idle, 0 starting), 1 in flight, 0 queued\n" +
				"Sizing:          desired 2: stable: 60s avg 1.0 in flight\n" +
				"Keep-alive:      hearth\n" +
				"\n" +
				"VERSION      DIGEST                SIZE    CREATED\n" +
				"2 (serving)  sha256:abcd1234abcd…  1.9 MB  2026-11-27T05:55:00Z (5m ago)\n" +
				"1            sha256:111111111111…  512 B   2026-11-24T06:00:00Z (3d ago)\n",
		},
		{
			name:    "describe sandbox",
			args:    []string{"describe", "api"},
			wantSub: []string{`Command:         ./server --port "$PORT"` + "\n", "Memory:          1Gi\n"},
		},
		{
			name:    "describe json",
			args:    []string{"describe", "hello", "-o", "json"},
			wantSub: []string{`"status": {`, `"in_flight": 1`},
		},
		{
			name:    "describe unknown",
			args:    []string{"describe", "nope"},
			wantErr: "function \"nope\" not found; `hearth ls` lists deployed functions",
		},
		{
			name: "rm",
			args: []string{"rm", "hello"},
			want: "removed hello (2 versions)\n",
		},
		{
			name: "rm one version",
			args: []string{"rm", "api"},
			want: "removed api (1 version)\n",
		},
		{
			name:    "rm unknown",
			args:    []string{"rm", "nope"},
			wantErr: `function "nope" not found`,
		},
		{
			name: "logs",
			args: []string{"logs", "hello", "--tail", "5", "--since", "2026-11-27T05:00:00Z"},
			want: "" +
				"2026-11-27T05:01:02.123Z [stderr] a1b2c3d4 message\n" +
				"2026-11-27T05:01:03.123Z [system] - instance started since=2026-11-27T05%3A00%3A00Z&tail=5\n",
		},
		{
			name:    "logs json",
			args:    []string{"logs", "hello", "-o", "json"},
			wantSub: []string{`{"time":"2026-11-27T05:01:02.123Z","function":"hello","invocation_id":"a1b2c3d4e5f6","stream":"stderr","line":"message\n"}` + "\n"},
		},
		{
			name:    "logs since duration",
			args:    []string{"logs", "hello", "--since", "90m"},
			wantSub: []string{"since=2026-11-27T04%3A30%3A00Z\n"},
		},
		{
			name:    "logs bad since",
			args:    []string{"logs", "hello", "--since", "yesterday"},
			wantErr: `invalid --since "yesterday"`,
		},
		{
			name: "usage",
			args: []string{"usage"},
			want: "" +
				"FUNCTION  INVOCATIONS  ERRORS  GB-SECONDS\n" +
				"api       7            0       0.000013\n" +
				"hello     1200         3       0.150000\n",
		},
		{
			name:    "usage json window",
			args:    []string{"usage", "--from", "7d", "--to", "2026-11-27T00:00:00Z", "-o", "json"},
			wantSub: []string{`"from": "2026-11-20T06:00:00Z"`, `"to": "2026-11-27T00:00:00Z"`, `"gb_seconds": 0.15`},
		},
		{
			name:    "usage empty window",
			args:    []string{"usage", "--from", "1h", "--to", "2h"},
			wantErr: "is not before --to",
		},
		{
			name: "invoke",
			args: []string{"invoke", "hello"},
			want: "GET /fn/hello ct= cl=0 body=",
		},
		{
			name: "invoke path and data",
			args: []string{"invoke", "hello", "users/1?x=y", "-d", "hi", "-H", "Content-Type: text/plain"},
			want: "POST /fn/hello/users/1?x=y ct=text/plain cl=2 body=hi",
		},
		{
			name: "invoke data from file",
			args: []string{"invoke", "hello", "-X", "put", "-d", "@" + filepath.Join(data, "body.json")},
			want: `PUT /fn/hello ct= cl=7 body={"a":1}`,
		},
		{
			name:  "invoke data from stdin",
			args:  []string{"invoke", "hello", "-d", "@-"},
			stdin: "from stdin",
			want:  "POST /fn/hello ct= cl=10 body=from stdin",
		},
		{
			name:    "invoke include headers",
			args:    []string{"invoke", "hello", "-i"},
			wantSub: []string{"HTTP/1.1 200 OK\n", "X-Hearth-Cold-Start: false\nX-Hearth-Invocation-Id: inv1\n\nGET /fn/hello"},
		},
		{
			name:    "invoke unknown",
			args:    []string{"invoke", "nope"},
			want:    "",
			wantErr: "function \"nope\" not found; `hearth ls` lists deployed functions",
		},
		{
			name:    "invoke function error status",
			args:    []string{"invoke", "teapot"},
			want:    "short and stout",
			wantErr: "teapot answered HTTP 418 I'm a teapot",
		},
		{
			name:    "invoke overloaded",
			args:    []string{"invoke", "busy"},
			wantErr: "HTTP 429 too_many_requests: queue of busy is full (retry after 2s)",
		},
		{
			name:    "invoke bad header",
			args:    []string{"invoke", "hello", "-H", "nocolon"},
			wantErr: `invalid -H "nocolon"`,
		},
		{
			name:    "bad output",
			args:    []string{"ls", "-o", "yaml"},
			wantErr: `invalid --output "yaml": use table or json`,
		},
		{
			name:    "missing argument",
			args:    []string{"rm"},
			wantErr: "hearth rm takes NAME (got 0 arguments); usage: hearth rm NAME",
		},
		{
			name:    "unknown flag",
			args:    []string{"ls", "--nope"},
			wantErr: "unknown flag: --nope; see `hearth ls --help`",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.vars[EnvURL] = srv.URL
			h.vars[EnvKey] = testKey
			h.stdin = tt.stdin
			out, _, err := h.run(tt.args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.wantSub != nil {
				for _, s := range tt.wantSub {
					if !strings.Contains(out, s) {
						t.Errorf("stdout = %q, want it to contain %q", out, s)
					}
				}
				return
			}
			if out != tt.want {
				t.Errorf("stdout =\n%s\nwant\n%s", out, tt.want)
			}
		})
	}
}

func TestLsEmpty(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, api.FunctionList{})
	}))
	defer srv.Close()
	h := newHarness(t)
	out, errOut, err := h.run("ls", "--url", srv.URL, "--key", "k")
	if err != nil || out != "" || !strings.Contains(errOut, "hearth deploy DIR") {
		t.Errorf("ls = %q, %q, %v", out, errOut, err)
	}
	out, _, err = h.run("ls", "--url", srv.URL, "--key", "k", "-o", "json")
	if err != nil || out != "{\n  \"functions\": []\n}\n" {
		t.Errorf("ls -o json = %q, %v", out, err)
	}
}

func TestDeploy(t *testing.T) {
	srv := fakeAPI(t)
	fn := t.TempDir()
	if err := os.WriteFile(filepath.Join(fn, manifest.FileName), []byte("name: hello\nisolation: wasm\nprotocol: wagi\nmodule: m.wasm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fn, "m.wasm"), []byte("\x00asm"), 0o644); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t)
	dir := filepath.Join(h.home, ".local", "share", "hearth")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte(testKey), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := h.run("deploy", fn, "--url", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"deployed hello version 3 (",
		" B, sha256:abcd1234abcd…)\n",
		"  hearth invoke hello\n",
		`  curl -H "Authorization: Bearer $(cat ~/.local/share/hearth/admin.key)" ` + srv.URL + "/fn/hello\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy printed %q, want it to contain %q", out, want)
		}
	}

	h.vars[EnvKey] = testKey
	out, _, err = h.run("deploy", fn, "--url", srv.URL)
	if err != nil || !strings.Contains(out, `Bearer $HEARTH_KEY"`) {
		t.Errorf("deploy with $HEARTH_KEY printed %q, %v", out, err)
	}
}

func TestErrorsTellWhatToDo(t *testing.T) {
	srv := fakeAPI(t)
	h := newHarness(t)

	h.vars[EnvURL] = srv.URL
	h.vars[EnvKey] = "wrong"
	_, _, err := h.run("ls")
	if err == nil || !strings.Contains(err.Error(), "rejected the API key from $HEARTH_KEY") || !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("wrong key: err = %v", err)
	}

	delete(h.vars, EnvKey)
	_, _, err = h.run("ls")
	want := "run `hearth up` once to create " + filepath.Join(h.home, ".local", "share", "hearth", KeyFile)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("no key: err = %v, want %q", err, want)
	}

	srv.Close()
	_, _, err = h.run("ls", "--key", "k")
	if err == nil || !strings.Contains(err.Error(), "hearth up") || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("server down: err = %v", err)
	}
}

func TestUp(t *testing.T) {
	h := newHarness(t)
	if _, _, err := h.run("up"); err != nil {
		t.Fatal(err)
	}
	cfg := h.serverCfg
	if cfg.Listen != DefaultListen || cfg.DataDir != filepath.Join(h.home, ".local", "share", "hearth") || cfg.Demo || cfg.Logger == nil || cfg.Ready == nil {
		t.Errorf("up: config %+v", cfg)
	}

	h.vars[EnvData] = "/srv/hearth"
	if _, _, err := h.run("up", "--demo", "--listen", ":9999"); err != nil {
		t.Fatal(err)
	}
	if cfg := h.serverCfg; cfg.DataDir != "/srv/hearth" || !cfg.Demo || cfg.Listen != ":9999" {
		t.Errorf("up with HEARTH_DATA: config %+v", cfg)
	}
	if _, _, err := h.run("up", "--data", "/tmp/x"); err != nil || h.serverCfg.DataDir != "/tmp/x" {
		t.Errorf("up --data: %v, config %+v", err, h.serverCfg)
	}
	if h.serverCfg.NATSListen != "" {
		t.Errorf("the NATS listener is on by default: %q", h.serverCfg.NATSListen)
	}

	// --async-workers: the default runs async.DefaultWorkers; 0 runs none.
	if h.serverCfg.AsyncWorkers != async.DefaultWorkers {
		t.Errorf("default async workers: config %d", h.serverCfg.AsyncWorkers)
	}
	if _, _, err := h.run("up", "--data", "/tmp/x", "--async-workers", "0"); err != nil || h.serverCfg.AsyncWorkers >= 0 {
		t.Errorf("up --async-workers 0: %v, config %d (want negative: none)", err, h.serverCfg.AsyncWorkers)
	}
	if _, _, err := h.run("up", "--data", "/tmp/x", "--async-workers", "-1"); err == nil || !strings.Contains(err.Error(), "want 0 or more") {
		t.Errorf("up --async-workers -1: err = %v", err)
	}

	// --nats-listen: how to connect is printed at start-up.
	if _, _, err := h.run("up", "--data", "/tmp/x", "--nats-listen", "127.0.0.1:4222"); err != nil || h.serverCfg.NATSListen != "127.0.0.1:4222" {
		t.Fatalf("up --nats-listen: %v, config %+v", err, h.serverCfg)
	}
	h.natsURL = "nats://127.0.0.1:4222"
	out, _, err := h.run("up", "--data", "/tmp/x", "--nats-listen", "127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hearth is up at http://127.0.0.1:8080", "nats: nats://127.0.0.1:4222 (token: /tmp/x/nats.token)", `nats -s "nats://$(cat /tmp/x/nats.token)@127.0.0.1:4222" pub`} {
		if !strings.Contains(out, want) {
			t.Errorf("up --nats-listen printed\n%s\nwithout %q", out, want)
		}
	}

	_, _, err = h.run("up", "--log-level", "loud")
	if err == nil || !strings.Contains(err.Error(), "use debug, info, warn or error") {
		t.Errorf("bad --log-level: err = %v", err)
	}
}

func TestBench(t *testing.T) {
	h := newHarness(t)
	if _, _, err := h.run("bench", "--duration", "500ms", "--only", "a,b", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	cfg := h.benchCfg
	if cfg.Duration != 500*time.Millisecond || strings.Join(cfg.Only, "|") != "a|b" || !cfg.JSON || cfg.Out == nil {
		t.Errorf("bench config %+v", cfg)
	}
	if _, _, err := h.run("bench"); err != nil || h.benchCfg.Duration != 2*time.Second || h.benchCfg.JSON {
		t.Errorf("bench defaults: %v, %+v", err, h.benchCfg)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := newHarness(t).run("version")
	if err != nil || !strings.HasPrefix(out, "hearth ") {
		t.Errorf("version = %q, %v", out, err)
	}
}

func TestFormat(t *testing.T) {
	sizes := map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1_900_000: "1.9 MB", 3_200_000_000: "3.2 GB"}
	for n, want := range sizes {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
	mems := map[manifest.Bytes]string{0: "-", 128 << 20: "128Mi", 2 << 30: "2Gi", 1536 << 10: "1536Ki", 1000: "1000"}
	for n, want := range mems {
		if got := formatMemory(n); got != want {
			t.Errorf("formatMemory(%d) = %q, want %q", n, got, want)
		}
	}
	times := map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	}
	for s, want := range times {
		if got, err := parseTime("--from", s, now); err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1h", "soon", "xd"} {
		if _, err := parseTime("--from", s, now); err == nil {
			t.Errorf("parseTime(%q) succeeded, want an error", s)
		}
	}
}
