package wasm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hearthdev/hearth/internal/driver"
)

// Output limits of one wagi invocation.
const (
	maxBodyBytes   = 6 << 20
	maxHeaderBytes = 64 << 10
	maxOutputBytes = maxBodyBytes + maxHeaderBytes
)

// cgiEnv returns the environment of one wagi invocation: the CGI
// variables of the request, then the function's own variables except those
// a CGI variable already sets (users cannot override them). It runs on every
// invocation, so it builds the slice directly rather than through a map.
func cgiEnv(spec *driver.Spec, req *driver.Request) []string {
	env := make([]string, 0, len(spec.Env)+16+len(req.Header))
	env = appendRequestVars(env, spec, req)
	cgi := len(env)
	for k, v := range spec.Env {
		shadowed := false
		for _, kv := range env[:cgi] {
			if len(kv) > len(k) && kv[len(k)] == '=' && kv[:len(k)] == k {
				shadowed = true
				break
			}
		}
		if !shadowed {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func sortedEnv(vars map[string]string) []string {
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// staticEnv is the CGI variables that are the same for every request of a
// function version, as "NAME=value".
func staticEnv(spec *driver.Spec) []string {
	return []string{
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_PROTOCOL=HTTP/1.1",
		"SERVER_SOFTWARE=hearth",
		"SCRIPT_NAME=/fn/" + spec.Function,
	}
}

// appendRequestVars appends the CGI variables of one request (RFC 3875
// section 4.1), the static ones included, to env.
func appendRequestVars(env []string, spec *driver.Spec, req *driver.Request) []string {
	path := req.Path
	if path == "" {
		path = "/"
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	uri := "/fn/" + spec.Function + path
	if req.RawQuery != "" {
		uri += "?" + req.RawQuery
	}
	host, port := req.Host, ""
	if h, p, err := net.SplitHostPort(req.Host); err == nil {
		host, port = h, p
	}
	remote := req.RemoteAddr
	if h, _, err := net.SplitHostPort(remote); err == nil {
		remote = h
	}
	env = append(env, staticEnv(spec)...)
	env = append(env,
		"REQUEST_METHOD="+method,
		"PATH_INFO="+path,
		"QUERY_STRING="+req.RawQuery,
		"REQUEST_URI="+uri,
		"SERVER_NAME="+host,
		"SERVER_PORT="+port,
		"REMOTE_ADDR="+remote,
		"CONTENT_LENGTH="+strconv.Itoa(len(req.Body)),
		"CONTENT_TYPE="+req.Header.Get("Content-Type"),
	)
	if req.ID != "" {
		env = append(env, "HEARTH_INVOCATION_ID="+req.ID)
	}
	for k, vs := range req.Header {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if ck == "Content-Type" || ck == "Content-Length" || ck == "Host" {
			continue // CONTENT_TYPE, CONTENT_LENGTH, HTTP_HOST below
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ", ")
		}
		env = append(env, "HTTP_"+headerEnvName(k)+"="+v)
	}
	if req.Host != "" {
		env = append(env, "HTTP_HOST="+req.Host)
	}
	return env
}

// headerEnvName turns a header name into its CGI form: upper case, "-" → "_".
func headerEnvName(k string) string {
	b := make([]byte, len(k))
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c == '-':
			c = '_'
		}
		b[i] = c
	}
	return string(b)
}

// parseCGI turns a wagi module's stdout into a response: header lines up
// to a blank line ("\n" or "\r\n" line ends), then the body.
func parseCGI(out []byte) (*driver.Response, error) {
	if len(out) == 0 {
		return nil, driver.Errorf(driver.ErrContract, "the module wrote nothing to stdout; a wagi module must write CGI headers (e.g. \"Content-Type: text/plain\"), a blank line, then the body")
	}
	resp := &driver.Response{Status: http.StatusOK, Header: http.Header{}}
	rest := out
	for n := 0; ; n++ {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return nil, driver.Errorf(driver.ErrContract, "the module's output has no blank line ending the CGI header block")
		}
		if consumed := len(out) - len(rest) + nl; consumed > maxHeaderBytes {
			return nil, driver.Errorf(driver.ErrContract, "CGI header block larger than %d bytes", maxHeaderBytes)
		}
		line := string(bytes.TrimSuffix(rest[:nl], []byte("\r")))
		rest = rest[nl+1:]
		if line == "" {
			if n == 0 {
				return nil, driver.Errorf(driver.ErrContract, "the module's output starts with a blank line: no CGI headers (want at least \"Content-Type: ...\")")
			}
			break
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, driver.Errorf(driver.ErrContract, "malformed CGI header line %q (want \"Name: value\"); did the module forget the header block?", truncate(line, 80))
		}
		value = strings.TrimSpace(value)
		if textproto.CanonicalMIMEHeaderKey(name) == "Status" {
			code, err := strconv.Atoi(strings.SplitN(value, " ", 2)[0])
			if err != nil || code < 100 || code > 999 {
				return nil, driver.Errorf(driver.ErrContract, "bad CGI Status header %q (want e.g. \"Status: 404 Not Found\")", truncate(value, 80))
			}
			resp.Header.Set("Status", strconv.Itoa(code)) // removed below
			continue
		}
		resp.Header.Add(name, value)
	}
	if s := resp.Header.Get("Status"); s != "" {
		resp.Status, _ = strconv.Atoi(s)
		resp.Header.Del("Status")
	} else if resp.Header.Get("Location") != "" {
		resp.Status = http.StatusFound
	}
	if resp.Header.Get("Content-Type") == "" && len(rest) > 0 {
		resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	if len(rest) > maxBodyBytes {
		return nil, driver.Errorf(driver.ErrContract, "response body larger than %s", formatBytes(maxBodyBytes))
	}
	resp.Body = rest
	return resp, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errOutputTooLarge is what a guest's write to stdout sees past the limit.
var errOutputTooLarge = errors.New("output exceeds limit")

// outputBuffer collects a guest's stdout up to maxOutputBytes.
type outputBuffer struct {
	buf      bytes.Buffer
	overflow bool
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	if o.buf.Len()+len(p) > maxOutputBytes {
		o.overflow = true
		return 0, errOutputTooLarge
	}
	return o.buf.Write(p)
}

// stderrWriter forwards a guest's stderr to the invocation's Request.Stderr
// and keeps the beginning, to quote in crash reports.
type stderrWriter struct {
	mu   sync.Mutex
	dst  io.Writer
	head []byte
}

const stderrHeadBytes = 8 << 10

func (s *stderrWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if room := stderrHeadBytes - len(s.head); room > 0 {
		s.head = append(s.head, p[:min(room, len(p))]...)
	}
	if s.dst != nil {
		_, _ = s.dst.Write(p) // the guest must not fail because logging did
	}
	return len(p), nil
}

// hint picks the line of captured stderr that best explains a crash: a Go
// panic or fatal error, else the last non-empty line.
func (s *stderrWriter) hint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := ""
	for _, line := range strings.Split(string(s.head), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			return truncate(line, 200)
		}
		if line != "" && !strings.HasPrefix(line, "goroutine ") {
			last = line
		}
	}
	return truncate(last, 200)
}

// formatBytes renders a byte count the way manifests write it (32Mi).
func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
