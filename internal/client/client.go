// Package client is a Go client for Hearth's HTTP API (the contract in
// SPEC.md), used by the CLI. It speaks the JSON shapes of package api, turns
// error responses into *APIError and an unreachable server into
// *UnreachableError, whose messages tell the user what to do next.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/artifact"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Client talks to one Hearth server. It is safe for concurrent use.
type Client struct {
	baseURL   string // without a trailing slash
	key       string
	hc        *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc. The default is
// an http.Client without a timeout, because log streams last as long as the
// caller's context; bound calls with their context instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a Client for the server at baseURL (e.g.
// "http://127.0.0.1:8080") that authenticates with the API key key. An empty
// key sends no Authorization header.
func New(baseURL, key string, opts ...Option) *Client {
	c := &Client{
		baseURL:   strings.TrimRight(baseURL, "/"),
		key:       key,
		hc:        &http.Client{},
		userAgent: "hearth-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// URL returns the server's base URL.
func (c *Client) URL() string { return c.baseURL }

// Health returns nil if the server answers GET /healthz with 200.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, "/healthz", nil, nil, nil)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errorFromResponse(resp)
	}
	return nil
}

// Deploy packs the function directory dir with artifact.Pack and uploads it
// as a new version of the function named in dir's hearth.yaml.
func (c *Client) Deploy(ctx context.Context, dir string) (api.Version, error) {
	name, err := functionName(dir)
	if err != nil {
		return api.Version{}, err
	}
	// Packing into memory rather than a pipe sends a Content-Length, so the
	// server can refuse an oversized artifact before reading it, and it
	// reports a packing error before any request is made.
	var buf bytes.Buffer
	if err := artifact.Pack(dir, &buf); err != nil {
		return api.Version{}, fmt.Errorf("packing %s: %w", dir, err)
	}
	hdr := http.Header{"Content-Type": {"application/gzip"}}
	var v api.Version
	err = c.doJSON(ctx, http.MethodPut, "/v1/functions/"+url.PathEscape(name), nil, hdr, bytes.NewReader(buf.Bytes()), &v)
	return v, err
}

// functionName reads and validates dir's manifest, so a bad manifest is
// reported before anything is packed or sent, and returns the function's
// name for the URL. The server validates the manifest again.
func functionName(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifest.FileName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s is not a function directory: it has no %s", dir, manifest.FileName)
		}
		return "", err
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dir, err)
	}
	return m.Name, nil
}

// Functions lists the deployed functions.
func (c *Client) Functions(ctx context.Context) ([]api.Function, error) {
	var l api.FunctionList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/functions", nil, nil, nil, &l); err != nil {
		return nil, err
	}
	return l.Functions, nil
}

// Function returns one function with its versions and live status.
func (c *Client) Function(ctx context.Context, name string) (api.Function, error) {
	var f api.Function
	err := c.doJSON(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name), nil, nil, nil, &f)
	return f, err
}

// Delete removes a function and all its versions.
func (c *Client) Delete(ctx context.Context, name string) (api.Deleted, error) {
	var d api.Deleted
	err := c.doJSON(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil, nil, nil, &d)
	return d, err
}

// LogOptions selects which log lines Logs returns.
type LogOptions struct {
	Tail   int       // the last Tail lines; 0 leaves the choice to the server
	Follow bool      // keep streaming new lines until ctx is done
	Since  time.Time // only lines at or after Since; zero means no bound
}

// Logs streams a function's log lines to fn, oldest first. It returns when
// the server ends the stream (nil), when fn returns an error (that error), or
// when ctx is done (ctx.Err()) — the way a follow stream normally ends.
func (c *Client) Logs(ctx context.Context, name string, opts LogOptions, fn func(api.LogEntry) error) error {
	q := url.Values{}
	if opts.Tail > 0 {
		q.Set("tail", fmt.Sprint(opts.Tail))
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if !opts.Since.IsZero() {
		q.Set("since", opts.Since.UTC().Format(time.RFC3339Nano))
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name)+"/logs", q, nil, nil)
	if err != nil {
		return err
	}
	// Close without draining: a follow stream does not end by itself.
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errorFromResponse(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var e api.LogEntry
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the logs of %q: %w", name, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// Usage returns per-function usage between from and to. A zero time leaves
// that bound to the server.
func (c *Client) Usage(ctx context.Context, from, to time.Time) (api.Usage, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
	var u api.Usage
	err := c.doJSON(ctx, http.MethodGet, "/v1/usage", q, nil, nil, &u)
	return u, err
}

// Invoke calls the function name synchronously: method on /fn/{name}{path}.
// path may be empty, may start with "/" or not, and may carry a query
// ("/users/1?full=true"). header is added to the request.
//
// The response is returned as the function (or the gateway) produced it,
// whatever its status; the caller must close its body. Use ParseError to
// read a gateway error out of a non-2xx response. Only a failure to reach
// the server is an error.
func (c *Client) Invoke(ctx context.Context, name, path, method string, body io.Reader, header http.Header) (*http.Response, error) {
	p, q, err := fnPath("/fn/", name, path)
	if err != nil {
		return nil, err
	}
	if method == "" {
		method = http.MethodGet
	}
	return c.send(ctx, method, p, q, header, body)
}

// InvokeAsync queues an invocation of name (POST /async/fn/{name}{path}) and
// returns its id.
func (c *Client) InvokeAsync(ctx context.Context, name, path string, body io.Reader, header http.Header) (string, error) {
	p, q, err := fnPath("/async/fn/", name, path)
	if err != nil {
		return "", err
	}
	var r struct {
		ID string `json:"id"`
	}
	if err := c.doJSON(ctx, http.MethodPost, p, q, header, body, &r); err != nil {
		return "", err
	}
	return r.ID, nil
}

func fnPath(prefix, name, path string) (string, url.Values, error) {
	rawQuery := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, rawQuery = path[:i], path[i+1:]
	}
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("invalid query in path %q: %w", path+"?"+rawQuery, err)
	}
	return prefix + url.PathEscape(name) + path, q, nil
}

// doJSON sends a request and decodes a 2xx JSON response into out; any other
// status becomes an *APIError.
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, header http.Header, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, q, header, body)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	if resp.StatusCode/100 != 2 {
		return errorFromResponse(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w", method, path, err)
	}
	return nil
}

// send builds and sends one request. Transport failures become
// *UnreachableError; a done context is returned as the context's error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, header http.Header, body io.Reader) (*http.Response, error) {
	u := c.baseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if c.userAgent != "" && req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &UnreachableError{URL: c.baseURL, Err: err}
	}
	return resp, nil
}

// drain reads what is left of a response body, so the connection can be
// reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
