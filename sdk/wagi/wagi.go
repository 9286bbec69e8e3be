// Package wagi is the Go guest SDK for Hearth's wagi contract: it turns the
// CGI-style request a Hearth wasm function receives (environment variables
// and stdin) into an *http.Request, runs an http.Handler, and writes the
// answer to stdout as CGI headers, a blank line and the body.
//
// One source builds two ways:
//
//	var handler = http.HandlerFunc(serve)
//
//	func init() { wagi.Handle(handler) } // reactor mode
//	func main() { wagi.Serve(handler) }  // command mode
//
// Command mode (GOOS=wasip1 GOARCH=wasm go build -o fn.wasm .) runs main for
// every request, in a fresh module instance.
//
// Reactor mode (the same command plus -buildmode=c-shared) never runs main:
// Hearth runs the module's initialisation once, snapshots its memory, and
// calls the exported hearth_handle function for each request on a copy of
// that snapshot, which is an order of magnitude faster for Go modules.
// Per-request CGI variables then come from Hearth's "hearth" host module and
// are also set with os.Setenv, so handlers may read them either way.
//
// The package also builds on other platforms so that code using it can be
// vetted and unit-tested on the host; there Serve reads the process
// environment and stdin like any CGI program.
package wagi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
)

var registered http.Handler

// Handle registers h as the handler for reactor-mode requests. Call it from
// an init function: in reactor mode main is never run.
func Handle(h http.Handler) { registered = h }

// Serve answers the single request of a command-mode invocation with h (the
// handler registered by Handle when h is nil) and returns. Errors reading
// the request or writing the response are reported on stderr and exit the
// program with status 1.
func Serve(h http.Handler) {
	if h == nil {
		h = registered
	}
	if err := ServeCGI(h, os.Environ(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wagi:", err)
		os.Exit(1)
	}
}

// ServeCGI runs h for the request described by the CGI environment env
// ("KEY=value" entries) and body, and writes the CGI response to out. It is
// exported for tests and for programs that obtain the request another way.
func ServeCGI(h http.Handler, env []string, body io.Reader, out io.Writer) error {
	if h == nil {
		return errors.New("no handler: call wagi.Handle or pass one to wagi.Serve")
	}
	req, err := NewRequest(env, body)
	if err != nil {
		return err
	}
	w := &responseWriter{w: bufio.NewWriterSize(out, 32<<10), header: http.Header{}}
	h.ServeHTTP(w, req)
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	return w.w.Flush()
}

// NewRequest builds the *http.Request described by a CGI environment.
// URL.Path is PATH_INFO (the path below /fn/{name}); RequestURI is the full
// REQUEST_URI as the client sent it.
func NewRequest(env []string, body io.Reader) (*http.Request, error) {
	vars := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	method := vars["REQUEST_METHOD"]
	if method == "" {
		method = http.MethodGet
	}
	path := vars["PATH_INFO"]
	if path == "" {
		path = "/"
	}
	r := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: path, RawQuery: vars["QUERY_STRING"]},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       vars["SERVER_NAME"],
		RemoteAddr: vars["REMOTE_ADDR"],
		RequestURI: vars["REQUEST_URI"],
	}
	if p := vars["SERVER_PROTOCOL"]; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			r.Proto, r.ProtoMajor, r.ProtoMinor = p, major, minor
		}
	}
	for k, v := range vars {
		name, ok := strings.CutPrefix(k, "HTTP_")
		if !ok || name == "" {
			continue
		}
		r.Header.Add(textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-")), v)
	}
	if h := r.Header.Get("Host"); h != "" {
		r.Host = h
	}
	if ct := vars["CONTENT_TYPE"]; ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	r.ContentLength = -1
	if cl := vars["CONTENT_LENGTH"]; cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad CONTENT_LENGTH %q", cl)
		}
		r.ContentLength = n
		r.Header.Set("Content-Length", cl)
		body = io.LimitReader(body, n)
	}
	if body == nil {
		body = http.NoBody
	}
	r.Body = io.NopCloser(body)
	return r, nil
}

// responseWriter streams a CGI response: the header block is written on the
// first Write or WriteHeader, the body goes straight through.
type responseWriter struct {
	w           *bufio.Writer
	header      http.Header
	wroteHeader bool
	err         error
}

func (rw *responseWriter) Header() http.Header { return rw.header }

func (rw *responseWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	rw.writeHeader(code, nil)
}

func (rw *responseWriter) writeHeader(code int, firstChunk []byte) {
	rw.wroteHeader = true
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if rw.header.Get("Content-Type") == "" && code != http.StatusNoContent && code != http.StatusNotModified {
		rw.header.Set("Content-Type", http.DetectContentType(firstChunk))
	}
	fmt.Fprintf(rw.w, "Status: %d %s\r\n", code, http.StatusText(code))
	if err := rw.header.Write(rw.w); err != nil && rw.err == nil {
		rw.err = err
	}
	if _, err := rw.w.WriteString("\r\n"); err != nil && rw.err == nil {
		rw.err = err
	}
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.writeHeader(http.StatusOK, p)
	}
	n, err := rw.w.Write(p)
	if err != nil && rw.err == nil {
		rw.err = err
	}
	return n, err
}

// Flush implements http.Flusher.
func (rw *responseWriter) Flush() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if err := rw.w.Flush(); err != nil && rw.err == nil {
		rw.err = err
	}
}
