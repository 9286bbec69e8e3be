package wasm

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/driver"
)

func TestParseCGI(t *testing.T) {
	for _, c := range []struct {
		name, out   string
		status      int
		header      http.Header
		body        string
		contractErr string
	}{
		{name: "minimal", out: "Content-Type: text/plain\n\nhi", status: 200, header: http.Header{"Content-Type": {"text/plain"}}, body: "hi"},
		{name: "crlf", out: "Content-Type: text/html\r\nX-A: 1\r\n\r\n<p>", status: 200, header: http.Header{"Content-Type": {"text/html"}, "X-A": {"1"}}, body: "<p>"},
		{name: "status", out: "Status: 404 Not Found\nContent-Type: text/plain\n\nnope", status: 404, header: http.Header{"Content-Type": {"text/plain"}}, body: "nope"},
		{name: "location", out: "Location: /there\n\n", status: 302, header: http.Header{"Location": {"/there"}}},
		{name: "location with status", out: "Status: 301\nLocation: /there\n\n", status: 301, header: http.Header{"Location": {"/there"}}},
		{name: "default content type", out: "X-A: 1\n\nbody", status: 200, header: http.Header{"X-A": {"1"}, "Content-Type": {"text/plain; charset=utf-8"}}, body: "body"},
		{name: "repeated header", out: "Set-Cookie: a=1\nSet-Cookie: b=2\nContent-Type: text/plain\n\n", status: 200, header: http.Header{"Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"text/plain"}}},
		{name: "body keeps blank lines", out: "Content-Type: text/plain\n\n\n\nx\n", status: 200, header: http.Header{"Content-Type": {"text/plain"}}, body: "\n\nx\n"},
		{name: "empty", out: "", contractErr: "wrote nothing"},
		{name: "no header block", out: "hello world\n", contractErr: "malformed CGI header line"},
		{name: "no blank line", out: "Content-Type: text/plain\n", contractErr: "no blank line"},
		{name: "blank first", out: "\nhello", contractErr: "starts with a blank line"},
		{name: "bad status", out: "Status: abc\n\n", contractErr: "bad CGI Status"},
		{name: "status out of range", out: "Status: 42\n\n", contractErr: "bad CGI Status"},
		{name: "header too large", out: "X-A: " + strings.Repeat("a", maxHeaderBytes) + "\n\n", contractErr: "header block larger"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := parseCGI([]byte(c.out))
			if c.contractErr != "" {
				if !errors.Is(err, driver.ErrContract) || !strings.Contains(err.Error(), c.contractErr) {
					t.Fatalf("err = %v, want ErrContract saying %q", err, c.contractErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != c.status || string(resp.Body) != c.body {
				t.Errorf("status %d body %q, want %d %q", resp.Status, resp.Body, c.status, c.body)
			}
			for k, v := range c.header {
				if !slices.Equal(resp.Header[k], v) {
					t.Errorf("header %s = %q, want %q", k, resp.Header[k], v)
				}
			}
			if len(resp.Header) != len(c.header) {
				t.Errorf("headers %v, want %v", resp.Header, c.header)
			}
		})
	}
}

func FuzzParseCGI(f *testing.F) {
	f.Add([]byte("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody"))
	f.Add([]byte("Location: /x\n\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, out []byte) {
		resp, err := parseCGI(out)
		if err != nil {
			if !errors.Is(err, driver.ErrContract) {
				t.Fatalf("error %v is not ErrContract", err)
			}
			return
		}
		if resp.Status < 100 || resp.Status > 999 {
			t.Fatalf("status %d", resp.Status)
		}
		if len(resp.Body) > len(out) {
			t.Fatal("body longer than output")
		}
	})
}

func TestCGIEnv(t *testing.T) {
	spec := &driver.Spec{Function: "fn", Env: map[string]string{"GREETING": "hi", "REQUEST_METHOD": "FAKE"}}
	req := &driver.Request{
		ID: "inv-1", Method: "POST", Path: "/a/b", RawQuery: "x=1", Host: "example.com:8080", RemoteAddr: "10.0.0.1:5555",
		Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}, "Accept-Encoding": {"gzip"}},
		Body:   []byte("12345"),
	}
	env := map[string]string{}
	for _, kv := range cgiEnv(spec, req) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, want := range map[string]string{
		"GREETING": "hi", "REQUEST_METHOD": "POST", "PATH_INFO": "/a/b", "QUERY_STRING": "x=1",
		"SCRIPT_NAME": "/fn/fn", "REQUEST_URI": "/fn/fn/a/b?x=1", "SERVER_NAME": "example.com", "SERVER_PORT": "8080",
		"REMOTE_ADDR": "10.0.0.1", "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5", "SERVER_PROTOCOL": "HTTP/1.1",
		"HTTP_X_MULTI": "a, b", "HTTP_ACCEPT_ENCODING": "gzip", "HTTP_HOST": "example.com:8080", "HEARTH_INVOCATION_ID": "inv-1",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if _, ok := env["HTTP_CONTENT_TYPE"]; ok {
		t.Error("Content-Type duplicated as HTTP_CONTENT_TYPE")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{32 << 20: "32Mi", 1 << 30: "1Gi", 1536: "1536 bytes", 4 << 10: "4Ki"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
