package client_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/client"
	"github.com/hearthdev/hearth/internal/manifest"
)

const testKey = "secret-key"

// newServer serves h behind the bearer-key check every /v1 and /fn call
// needs, and returns a client for it.
func newServer(t *testing.T, h http.Handler) *client.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.Header.Get("Authorization") != "Bearer "+testKey {
			writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong API key")
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL+"/", testKey)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

func TestAuthAndErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("function %q not found", r.PathValue("name")))
	})
	mux.HandleFunc("DELETE /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "upstream exploded\n")
	})
	mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	c := newServer(t, mux)
	ctx := context.Background()

	tests := []struct {
		name       string
		call       func() error
		want       string
		notFound   bool
		unauthored bool
	}{
		{
			name:     "json error body",
			call:     func() error { _, err := c.Function(ctx, "x"); return err },
			want:     `HTTP 404 not_found: function "x" not found`,
			notFound: true,
		},
		{
			name: "plain text body",
			call: func() error { _, err := c.Delete(ctx, "x"); return err },
			want: "HTTP 502: upstream exploded",
		},
		{
			name: "empty body",
			call: func() error { _, err := c.Usage(ctx, time.Time{}, time.Time{}); return err },
			want: "HTTP 500: Internal Server Error",
		},
		{
			name: "wrong key",
			call: func() error {
				_, err := client.New(c.URL(), "wrong").Functions(ctx)
				return err
			},
			want:       "HTTP 401 unauthorized: missing or wrong API key",
			unauthored: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var apiErr *client.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
			if got := errors.Is(err, client.ErrNotFound); got != tt.notFound {
				t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v", got, tt.notFound)
			}
			if got := errors.Is(err, client.ErrUnauthorized); got != tt.unauthored {
				t.Errorf("errors.Is(err, ErrUnauthorized) = %v, want %v", got, tt.unauthored)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	err = client.New(u, testKey).Health(context.Background())
	var ue *client.UnreachableError
	if !errors.As(err, &ue) || !ue.Refused() {
		t.Fatalf("err = %v (%T), want a refused *UnreachableError", err, err)
	}
	for _, want := range []string{u, "hearth up"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to mention %q", err, want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := client.New(u, testKey).Health(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context: err = %v, want context.Canceled", err)
	}
}

func TestFunctions(t *testing.T) {
	created := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	fn := api.Function{
		Name: "hello", Latest: 2, CreatedAt: created, UpdatedAt: created.Add(time.Hour),
		Versions: []api.Version{{Function: "hello", Number: 1}, {Function: "hello", Number: 2, Size: 1900000}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.FunctionList{Functions: []api.Function{fn}})
	})
	mux.HandleFunc("GET /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		f := fn
		f.Status = &api.FunctionStatus{Instances: 2, Idle: 1, InFlight: 1}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("DELETE /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Deleted{Name: r.PathValue("name"), Versions: 2})
	})
	c := newServer(t, mux)
	ctx := context.Background()

	fns, err := c.Functions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 1 || fns[0].Name != "hello" || fns[0].Latest != 2 || len(fns[0].Versions) != 2 || !fns[0].UpdatedAt.Equal(fn.UpdatedAt) {
		t.Errorf("Functions = %+v", fns)
	}
	f, err := c.Function(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if f.Status == nil || f.Status.Instances != 2 || f.Versions[1].Size != 1900000 {
		t.Errorf("Function = %+v", f)
	}
	d, err := c.Delete(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if d != (api.Deleted{Name: "hello", Versions: 2}) {
		t.Errorf("Delete = %+v", d)
	}
}

func TestDeploy(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "hearth.yaml"), "name: hello\nisolation: wasm\nprotocol: wagi\nmodule: hello.wasm\n")
	writeFile(t, filepath.Join(dir, "hello.wasm"), "\x00asm")

	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/gzip" {
			writeError(w, http.StatusBadRequest, api.CodeInvalidArtifact, "content type "+ct)
			return
		}
		files, err := untar(r.Body)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.CodeInvalidArtifact, err.Error())
			return
		}
		if !strings.Contains(files["hearth.yaml"], "name: hello") || files["hello.wasm"] != "\x00asm" {
			writeError(w, http.StatusBadRequest, api.CodeInvalidArtifact, fmt.Sprintf("files %q", files))
			return
		}
		writeJSON(w, http.StatusCreated, api.Version{Function: r.PathValue("name"), Number: 3, Size: r.ContentLength, Digest: "abc"})
	})
	c := newServer(t, mux)

	v, err := c.Deploy(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.Function != "hello" || v.Number != 3 || v.Size <= 0 {
		t.Errorf("Deploy = %+v", v)
	}

	if _, err := c.Deploy(context.Background(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "no hearth.yaml") {
		t.Errorf("Deploy of a directory without a manifest: err = %v", err)
	}

	bad := t.TempDir()
	writeFile(t, filepath.Join(bad, "hearth.yaml"), "name: Hello World\nisolation: wasm\nprotocol: wagi\nmodule: hello.wasm\n")
	if _, err := c.Deploy(context.Background(), bad); !errors.Is(err, manifest.ErrInvalid) || !strings.Contains(err.Error(), "name") {
		t.Errorf("Deploy with a bad name: err = %v, want a manifest error naming the field", err)
	}
}

func TestLogs(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 5, 1, 2, 0, time.UTC)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/functions/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("tail") != "2" || q.Get("since") != t0.Format(time.RFC3339Nano) {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, "query "+r.URL.RawQuery)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for i := range 2 {
			enc.Encode(api.LogEntry{Time: t0.Add(time.Duration(i) * time.Second), Function: "hello", Stream: "stderr", Line: fmt.Sprint("line ", i)})
			w.(http.Flusher).Flush()
		}
		if q.Get("follow") == "true" {
			<-r.Context().Done() // stream until the client goes away
		}
	})
	c := newServer(t, mux)

	t.Run("tail", func(t *testing.T) {
		var got []string
		err := c.Logs(context.Background(), "hello", client.LogOptions{Tail: 2, Since: t0}, func(e api.LogEntry) error {
			got = append(got, e.Line)
			return nil
		})
		if err != nil || strings.Join(got, ",") != "line 0,line 1" {
			t.Errorf("Logs = %q, %v", got, err)
		}
	})
	t.Run("callback error stops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := c.Logs(context.Background(), "hello", client.LogOptions{Tail: 2, Since: t0, Follow: true}, func(e api.LogEntry) error {
			n++
			return stop
		})
		if err != stop || n != 1 {
			t.Errorf("Logs = %v after %d lines, want stop after 1", err, n)
		}
	})
	t.Run("follow ends with ctx", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n := 0
		err := c.Logs(ctx, "hello", client.LogOptions{Tail: 2, Since: t0, Follow: true}, func(e api.LogEntry) error {
			if n++; n == 2 {
				cancel() // both lines arrived while the stream is open
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || n != 2 {
			t.Errorf("Logs = %v after %d lines, want context.Canceled after 2", err, n)
		}
	})
	t.Run("unknown function", func(t *testing.T) {
		err := c.Logs(context.Background(), "nope", client.LogOptions{}, func(api.LogEntry) error { return nil })
		if !errors.As(err, new(*client.APIError)) {
			t.Errorf("err = %v, want *APIError", err)
		}
	})
}

func TestUsage(t *testing.T) {
	from := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		f, err1 := time.Parse(time.RFC3339, r.URL.Query().Get("from"))
		t, err2 := time.Parse(time.RFC3339, r.URL.Query().Get("to"))
		if err := errors.Join(err1, err2); err != nil {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, api.Usage{From: f, To: t, Functions: []api.FunctionUsage{{Function: "hello", Invocations: 3, GBSeconds: 0.000375}}})
	})
	c := newServer(t, mux)
	u, err := c.Usage(context.Background(), from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !u.From.Equal(from) || !u.To.Equal(to) || len(u.Functions) != 1 || u.Functions[0].GBSeconds != 0.000375 {
		t.Errorf("Usage = %+v", u)
	}
}

func TestInvoke(t *testing.T) {
	mux := http.NewServeMux()
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Hearth-Invocation-Id", "a1b2c3d4e5")
		w.Header().Set("X-Hearth-Cold-Start", "true")
		w.WriteHeader(http.StatusTeapot) // raw: any status comes back as is
		fmt.Fprintf(w, "%s %s %s %s %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Test"), body)
	}
	mux.HandleFunc("/fn/{name}", echo)
	mux.HandleFunc("/fn/{name}/{path...}", echo)
	mux.HandleFunc("POST /async/fn/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusAccepted, map[string]string{"id": "inv-1"})
	})
	c := newServer(t, mux)
	ctx := context.Background()

	tests := []struct{ path, method, want string }{
		{"", "", "GET /fn/hello  v "},
		{"users/1?full=true", "POST", "POST /fn/hello/users/1 full=true v data"},
		{"/users/1", "PUT", "PUT /fn/hello/users/1  v data"},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.method != "" {
			body = strings.NewReader("data")
		}
		resp, err := c.Invoke(ctx, "hello", tt.path, tt.method, body, http.Header{"X-Test": {"v"}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot || string(got) != tt.want || resp.Header.Get("X-Hearth-Cold-Start") != "true" {
			t.Errorf("Invoke(%q, %q) = %d %q, want 418 %q", tt.path, tt.method, resp.StatusCode, got, tt.want)
		}
	}

	id, err := c.InvokeAsync(ctx, "hello", "", strings.NewReader("x"), nil)
	if err != nil || id != "inv-1" {
		t.Errorf("InvokeAsync = %q, %v", id, err)
	}
}

func TestParseError(t *testing.T) {
	e := client.ParseError(http.StatusTooManyRequests, []byte(`{"error":{"code":"too_many_requests","message":"queue full"}}`))
	if e.Code != api.CodeOverloaded || e.Message != "queue full" || e.Status != 429 {
		t.Errorf("ParseError = %+v", e)
	}
	e = client.ParseError(http.StatusNotFound, []byte(`{"other":1}`))
	if e.Code != "" || e.Message != `{"other":1}` {
		t.Errorf("ParseError of foreign JSON = %+v", e)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// untar reads a gzip tar into a map from file name to contents.
func untar(r io.Reader) (map[string]string, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		files[strings.TrimPrefix(h.Name, "./")] = string(b)
	}
}
