package wagi

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestServeCGI(t *testing.T) {
	env := []string{
		"REQUEST_METHOD=POST", "PATH_INFO=/items/7", "QUERY_STRING=x=1", "REQUEST_URI=/fn/f/items/7?x=1",
		"CONTENT_TYPE=text/plain", "CONTENT_LENGTH=5", "HTTP_X_TEST=yes", "HTTP_HOST=example.com", "REMOTE_ADDR=10.0.0.1",
		"SERVER_PROTOCOL=HTTP/1.1",
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.URL.Path != "/items/7" || r.URL.Query().Get("x") != "1" || r.Header.Get("X-Test") != "yes" ||
			r.Host != "example.com" || r.ContentLength != 5 || r.Header.Get("Content-Type") != "text/plain" || r.RequestURI != "/fn/f/items/7?x=1" {
			t.Errorf("request %+v", r)
		}
		w.Header().Set("X-Reply", "1")
		w.WriteHeader(http.StatusCreated)
		w.Write(bytes.ToUpper(body))
	})
	var out bytes.Buffer
	if err := ServeCGI(h, env, strings.NewReader("hello and more"), &out); err != nil {
		t.Fatal(err)
	}
	want := "Status: 201 Created\r\nContent-Type: text/plain; charset=utf-8\r\nX-Reply: 1\r\n\r\nHELLO"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}

func TestServeCGIDefaults(t *testing.T) {
	var out bytes.Buffer
	err := ServeCGI(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" || r.URL.Path != "/" {
			t.Errorf("defaults: %s %s", r.Method, r.URL.Path)
		}
	}), nil, strings.NewReader(""), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "Status: 200 OK\r\n") || !strings.HasSuffix(out.String(), "\r\n\r\n") {
		t.Errorf("output %q", out.String())
	}
	if err := ServeCGI(nil, nil, nil, &out); err == nil {
		t.Error("nil handler accepted")
	}
}
