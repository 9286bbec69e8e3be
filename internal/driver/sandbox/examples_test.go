//go:build linux

package sandbox

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

func exampleSpec(name, dir, protocol string, command ...string) driver.Spec {
	return driver.Spec{
		Function: name, Version: 1, Dir: dir, Protocol: protocol, Command: command,
		MemoryBytes: 128 << 20, Timeout: 10 * time.Second, Concurrency: 1,
		Env: map[string]string{"GREETING": "Howdy"},
	}
}

func startT(t *testing.T, d *Driver, spec driver.Spec) driver.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Prepare(ctx, spec); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	inst, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })
	return inst
}

func call(t *testing.T, inst driver.Instance, method, path, query string, body string) (*driver.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return inst.Invoke(ctx, &driver.Request{ID: "req-1", Method: method, Path: path, RawQuery: query,
		Host: "localhost:8080", RemoteAddr: "192.0.2.1:4000", Header: http.Header{"User-Agent": {"test"}}, Body: []byte(body)})
}

func TestExamples(t *testing.T) {
	d := newTestDriver(t, Config{})
	examples := filepath.Join(repoRoot(), "examples")
	for _, c := range []struct {
		name   string
		spec   driver.Spec
		want   string // in the GET body
		header [2]string
	}{
		{"go-http", exampleSpec("go-http", bins.goHTTP, "http", "./server"), "Howdy, ada! (path /hi)", [2]string{"Content-Type", "text/plain; charset=utf-8"}},
		{"py-http", exampleSpec("py-http", filepath.Join(examples, "py-http"), "http", "python3", "main.py"), "Howdy, ada! (python, path /hi)", [2]string{"Content-Type", "text/plain; charset=utf-8"}},
		{"go-lambda", exampleSpec("go-lambda", bins.lambda, "lambda", "./bootstrap"), "Hello, ada! GET /hi from go-lambda", [2]string{"X-Example", "go-lambda"}},
		{"sh-bootstrap", exampleSpec("sh-bootstrap", filepath.Join(examples, "sh-bootstrap"), "lambda", "./bootstrap"), "hello from sh: GET /hi", [2]string{"X-Runtime", "sh-curl"}},
		{"sh-bootstrap-devtcp", func() driver.Spec {
			s := exampleSpec("sh-bootstrap", filepath.Join(examples, "sh-bootstrap"), "lambda", "./bootstrap")
			s.Env["HEARTH_NO_CURL"] = "1"
			return s
		}(), "hello from sh: GET /hi", [2]string{"X-Runtime", "sh-devtcp"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.spec.Dir == "" {
				t.Skip("example not built")
			}
			inst := startT(t, d, c.spec)
			for range 2 {
				resp, err := call(t, inst, http.MethodGet, "/hi", "name=ada", "")
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if resp.Status != 200 || !strings.Contains(string(resp.Body), c.want) {
					t.Errorf("got %d %q, want 200 containing %q", resp.Status, resp.Body, c.want)
				}
				if got := resp.Header.Get(c.header[0]); got != c.header[1] {
					t.Errorf("%s = %q, want %q", c.header[0], got, c.header[1])
				}
			}
			if c.spec.Protocol == "lambda" {
				_, err := call(t, inst, http.MethodGet, "/fail", "", "")
				if !errors.Is(err, driver.ErrCrashed) {
					t.Fatalf("handler error: err = %v, want ErrCrashed", err)
				}
				if !strings.Contains(err.Error(), "asked to fail") && !strings.Contains(err.Error(), "HandlerError") {
					t.Errorf("handler error %q lacks the error type or message", err)
				}
				// The runtime survives a handler error.
				if resp, err := call(t, inst, http.MethodGet, "/again", "", ""); err != nil || resp.Status != 200 {
					t.Errorf("after a handler error: %v", err)
				}
			}
			if c.name == "go-http" || c.name == "go-lambda" || c.name == "py-http" {
				resp, err := call(t, inst, http.MethodPost, "/echo", "", "posted body")
				if err != nil || string(resp.Body) != "posted body" {
					t.Errorf("POST: %v %q", err, respBody(resp))
				}
			}
		})
	}
}

func respBody(r *driver.Response) string {
	if r == nil {
		return ""
	}
	return string(r.Body)
}

// TestLambdaErrors covers /init/error and a runtime that dies.
func TestLambdaErrors(t *testing.T) {
	d := newTestDriver(t, Config{})
	dir := t.TempDir()
	writeScript(t, dir, "bootstrap", `#!/bin/sh
curl -sS -X POST -d '{"errorType":"ConfigError","errorMessage":"missing setting"}' "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error"
exit 1
`)
	_, err := d.Start(context.Background(), exampleSpec("initerr", dir, "lambda", "./bootstrap"))
	if !errors.Is(err, driver.ErrCrashed) || !strings.Contains(err.Error(), "ConfigError: missing setting") {
		t.Errorf("init error: err = %v, want ErrCrashed with ConfigError: missing setting", err)
	}
}
