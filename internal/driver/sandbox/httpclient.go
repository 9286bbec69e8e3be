//go:build linux

package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// The http contract's forwarding path. It is deliberately leaner than
// net/http.Transport + httputil.ReverseProxy: one synchronous round trip on
// a kept-alive connection, no per-connection goroutines, buffers reused per
// connection, the request head written in one buffered write, the response
// parsed by net/http's reader and its body read once into the Response.

type httpConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// connPool holds idle keep-alive connections to one sandbox.
type connPool struct {
	dial func(ctx context.Context) (net.Conn, error)
	max  int

	mu     sync.Mutex
	idle   []*httpConn
	closed bool
}

func (p *connPool) get(ctx context.Context) (*httpConn, bool, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, net.ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return newHTTPConn(c), false, nil
}

func newHTTPConn(c net.Conn) *httpConn {
	return &httpConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 8<<10)}
}

func (p *connPool) put(c *httpConn) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.max {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.c.Close()
}

func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// hopHeaders are not forwarded (RFC 9110 section 7.6.1), nor are the
// headers the forwarder sets itself.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true,
}

var headRequest = &http.Request{Method: http.MethodHead}

// errBeforeResponse marks failures after which no byte of a response was
// read: the request may be retried on a fresh connection when the idle
// connection it used had been closed by the function.
type errBeforeResponse struct{ err error }

func (e errBeforeResponse) Error() string { return e.err.Error() }
func (e errBeforeResponse) Unwrap() error { return e.err }

// roundTrip sends req to the function and reads its whole response.
func roundTrip(ctx context.Context, p *connPool, req *driver.Request, maxBody int64) (*driver.Response, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.do(ctx, req, maxBody)
		if err == nil {
			if resp.keep {
				p.put(c)
			} else {
				c.c.Close()
			}
			return resp.Response, nil
		}
		c.c.Close()
		var before errBeforeResponse
		if reused && attempt == 0 && errors.As(err, &before) && !expired(ctx) {
			continue
		}
		return nil, err
	}
}

type roundTripResult struct {
	*driver.Response
	keep bool
}

func (c *httpConn) do(ctx context.Context, req *driver.Request, maxBody int64) (roundTripResult, error) {
	if dl, ok := ctx.Deadline(); ok {
		// A safety net only: at the deadline the driver kills the
		// sandbox, which ends the connection.
		c.c.SetDeadline(dl.Add(time.Second))
	} else {
		c.c.SetDeadline(time.Time{})
	}
	if err := writeRequest(c.bw, req); err != nil {
		return roundTripResult{}, errBeforeResponse{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		return roundTripResult{}, errBeforeResponse{err}
	}
	var hreq *http.Request
	if req.Method == http.MethodHead {
		hreq = headRequest
	}
	resp, err := http.ReadResponse(c.br, hreq)
	if err != nil {
		return roundTripResult{}, driver.Errorf(driver.ErrContract, "reading the function's HTTP response: %v", err)
	}
	var body []byte
	if resp.ContentLength > maxBody {
		resp.Body.Close()
		return roundTripResult{}, driver.Errorf(driver.ErrContract, "response body of %d bytes exceeds the limit of %d", resp.ContentLength, maxBody)
	}
	if resp.ContentLength > 0 {
		body = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(resp.Body, body)
	} else if resp.ContentLength < 0 {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err == nil && int64(len(body)) > maxBody {
			resp.Body.Close()
			return roundTripResult{}, driver.Errorf(driver.ErrContract, "response body exceeds the limit of %d bytes", maxBody)
		}
	}
	resp.Body.Close()
	if err != nil {
		return roundTripResult{}, fmt.Errorf("reading the function's response body: %w", err)
	}
	h := resp.Header
	for _, k := range []string{"Connection", "Keep-Alive", "Transfer-Encoding"} {
		delete(h, k)
	}
	return roundTripResult{
		Response: &driver.Response{Status: resp.StatusCode, Header: h, Body: body},
		keep:     !resp.Close && resp.ProtoAtLeast(1, 1),
	}, nil
}

func writeRequest(w *bufio.Writer, req *driver.Request) error {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validToken(method) {
		return fmt.Errorf("invalid method %q", method)
	}
	w.WriteString(method)
	w.WriteByte(' ')
	path := req.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	if needsEscape(path) {
		path = (&url.URL{Path: path}).EscapedPath()
	}
	w.WriteString(path)
	if req.RawQuery != "" {
		w.WriteByte('?')
		q := req.RawQuery
		if needsEscape(q) {
			q = url.PathEscape(q)
		}
		w.WriteString(q)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" || !validValue(host) {
		host = "localhost"
	}
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		if hopHeaders[k] || !validToken(k) {
			continue
		}
		for _, v := range vs {
			if !validValue(v) {
				continue
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if req.RemoteAddr != "" && req.Header.Get("X-Forwarded-For") == "" {
		if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil && validValue(ip) {
			w.WriteString("X-Forwarded-For: ")
			w.WriteString(ip)
			w.WriteString("\r\n")
		}
	}
	if len(req.Body) > 0 || (method != http.MethodGet && method != http.MethodHead) {
		w.WriteString("Content-Length: ")
		var num [20]byte
		w.Write(strconv.AppendInt(num[:0], int64(len(req.Body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	if len(req.Body) > 0 {
		if w.Available() >= len(req.Body) {
			w.Write(req.Body)
		} else {
			if err := w.Flush(); err != nil {
				return err
			}
			if _, err := w.Write(req.Body); err != nil {
				return err
			}
		}
	}
	return w.Flush()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return true
		}
	}
	return false
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}
