//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/driver"
)

// runtimeAPI serves the AWS Lambda Runtime API (2018-06-01) to one sandbox,
// on 127.0.0.1:9001 inside its network namespace. HTTP requests are
// delivered as API Gateway v2 (payload format 2.0) events and the handler's
// result is mapped back like a Lambda function URL does.
type runtimeAPI struct {
	sb   *sandbox
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
	next chan *lambdaInvocation // invocations waiting for /next

	mu       sync.Mutex
	pending  map[string]*lambdaInvocation // handed out, waiting for a result
	polled   chan struct{}                // closed at the first /next
	initErr  error
	closed   chan struct{}
	isClosed bool
}

type lambdaInvocation struct {
	id       string
	payload  []byte
	deadline time.Time
	result   chan lambdaResult // buffered, 1
}

type lambdaResult struct {
	payload []byte
	err     error
}

// maxLambdaPayload is Lambda's own limit for synchronous responses.
const maxLambdaPayload = 6 << 20

func newRuntimeAPI(sb *sandbox) (*runtimeAPI, error) {
	ln, err := listenNetns(sb.d.hostNS, sb.netns, "127.0.0.1:"+strconv.Itoa(lambdaPort))
	if err != nil {
		return nil, fmt.Errorf("sandbox: runtime API listener: %w", err)
	}
	api := &runtimeAPI{
		sb:      sb,
		ln:      ln,
		next:    make(chan *lambdaInvocation),
		pending: map[string]*lambdaInvocation{},
		polled:  make(chan struct{}),
		closed:  make(chan struct{}),
	}
	api.srv = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	api.wg.Add(1)
	go func() {
		defer api.wg.Done()
		api.srv.Serve(ln)
	}()
	return api, nil
}

func (api *runtimeAPI) close() {
	api.mu.Lock()
	if api.isClosed {
		api.mu.Unlock()
		return
	}
	api.isClosed = true
	close(api.closed)
	api.mu.Unlock()
	api.srv.Close()
	api.wg.Wait()
}

func (api *runtimeAPI) healthy() bool {
	api.mu.Lock()
	defer api.mu.Unlock()
	return api.initErr == nil
}

// waitReady waits for the runtime's first /next (or its failure).
func (api *runtimeAPI) waitReady(ctx context.Context) error {
	select {
	case <-api.polled:
		return nil
	case <-api.sb.done:
		api.mu.Lock()
		err := api.initErr
		api.mu.Unlock()
		if err != nil {
			return err
		}
		return api.sb.exitError("the runtime exited before asking for an invocation")
	case <-ctx.Done():
		return driver.Errorf(driver.ErrTimeout, "the runtime did not poll %s in time", "/runtime/invocation/next")
	}
}

const apiPrefix = "/2018-06-01/runtime/"

func (api *runtimeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, apiPrefix)
	if !ok {
		apiError(w, http.StatusNotFound, "unknown endpoint")
		return
	}
	switch {
	case path == "invocation/next" && r.Method == http.MethodGet:
		api.serveNext(w, r)
	case path == "init/error" && r.Method == http.MethodPost:
		err := readFunctionError(r, "init")
		api.mu.Lock()
		if api.initErr == nil {
			api.initErr = err
		}
		api.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"OK"}`)
	case strings.HasPrefix(path, "invocation/") && r.Method == http.MethodPost:
		rest := strings.TrimPrefix(path, "invocation/")
		id, verb, _ := strings.Cut(rest, "/")
		api.mu.Lock()
		inv := api.pending[id]
		if inv != nil && (verb == "response" || verb == "error") {
			delete(api.pending, id)
		}
		api.mu.Unlock()
		if inv == nil {
			apiError(w, http.StatusBadRequest, "unknown or finished invocation "+id)
			return
		}
		var res lambdaResult
		switch verb {
		case "response":
			body, err := io.ReadAll(io.LimitReader(r.Body, maxLambdaPayload+1))
			switch {
			case err != nil:
				res.err = driver.Errorf(driver.ErrContract, "reading the runtime's response: %v", err)
			case len(body) > maxLambdaPayload:
				res.err = driver.Errorf(driver.ErrContract, "response larger than %d bytes", maxLambdaPayload)
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				io.WriteString(w, `{"errorType":"RequestEntityTooLarge","errorMessage":"response too large"}`)
				inv.result <- res
				return
			default:
				res.payload = body
			}
		case "error":
			res.err = readFunctionError(r, "function")
		default:
			apiError(w, http.StatusNotFound, "unknown endpoint")
			return
		}
		inv.result <- res
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"OK"}`)
	default:
		apiError(w, http.StatusNotFound, "unknown endpoint")
	}
}

func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"errorType": http.StatusText(status), "errorMessage": msg})
	w.Write(b)
}

// readFunctionError turns an /error or /init/error body into ErrCrashed
// carrying the error type and message.
func readFunctionError(r *http.Request, phase string) error {
	var e struct {
		Type    string `json:"errorType"`
		Message string `json:"errorMessage"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(body, &e); err != nil || (e.Type == "" && e.Message == "") {
		e.Message = strings.TrimSpace(string(body))
	}
	if e.Type == "" {
		e.Type = r.Header.Get("Lambda-Runtime-Function-Error-Type")
	}
	if e.Type == "" {
		e.Type = "Unhandled"
	}
	if phase == "init" {
		return driver.Errorf(driver.ErrCrashed, "init error: %s: %s", e.Type, e.Message)
	}
	return driver.Errorf(driver.ErrCrashed, "%s: %s", e.Type, e.Message)
}

func (api *runtimeAPI) serveNext(w http.ResponseWriter, r *http.Request) {
	api.mu.Lock()
	select {
	case <-api.polled:
	default:
		close(api.polled)
	}
	api.mu.Unlock()
	var inv *lambdaInvocation
	select {
	case inv = <-api.next:
	case <-r.Context().Done():
		return
	case <-api.closed:
		return
	}
	api.mu.Lock()
	api.pending[inv.id] = inv
	api.mu.Unlock()
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Lambda-Runtime-Aws-Request-Id"] = []string{inv.id}
	h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(inv.deadline.UnixMilli(), 10)}
	h["Lambda-Runtime-Invoked-Function-Arn"] = []string{"arn:aws:lambda:local:000000000000:function:" + api.sb.spec.Function}
	h["Lambda-Runtime-Trace-Id"] = []string{"Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0"}
	h["Content-Length"] = []string{strconv.Itoa(len(inv.payload))}
	w.WriteHeader(http.StatusOK)
	w.Write(inv.payload)
}

// invoke delivers req as an API Gateway v2 event and maps the result back.
func (api *runtimeAPI) invoke(ctx context.Context, req *driver.Request) (*driver.Response, error) {
	payload, err := apiGatewayEvent(req)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(15 * time.Minute)
	}
	id := req.ID
	if id == "" {
		id = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	inv := &lambdaInvocation{id: id, payload: payload, deadline: deadline, result: make(chan lambdaResult, 1)}
	select {
	case api.next <- inv:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-api.sb.done:
		return nil, driver.Errorf(driver.ErrCrashed, "the runtime exited")
	}
	var res lambdaResult
	select {
	case res = <-inv.result:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-api.sb.done:
		// A result may have raced with the exit.
		select {
		case res = <-inv.result:
		default:
			return nil, driver.Errorf(driver.ErrCrashed, "the runtime exited during the invocation")
		}
	}
	if res.err != nil {
		return nil, res.err
	}
	return functionURLResponse(res.payload)
}

// apiGatewayEvent builds the payload format 2.0 event for req.
func apiGatewayEvent(req *driver.Request) ([]byte, error) {
	now := time.Now()
	ev := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       "$default",
		RawPath:        req.Path,
		RawQueryString: req.RawQuery,
		Headers:        make(map[string]string, len(req.Header)),
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "$default",
			AccountID:    "anonymous",
			Stage:        "$default",
			RequestID:    req.ID,
			APIID:        "hearth",
			DomainName:   req.Host,
			DomainPrefix: strings.SplitN(req.Host, ".", 2)[0],
			Time:         now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    req.Method,
				Path:      req.Path,
				Protocol:  "HTTP/1.1",
				SourceIP:  hostOnly(req.RemoteAddr),
				UserAgent: req.Header.Get("User-Agent"),
			},
		},
	}
	if ev.RawPath == "" {
		ev.RawPath, ev.RequestContext.HTTP.Path = "/", "/"
	}
	for k, vs := range req.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						ev.Cookies = append(ev.Cookies, c)
					}
				}
			}
			continue
		}
		ev.Headers[lk] = strings.Join(vs, ",")
	}
	if req.Host != "" {
		ev.Headers["host"] = req.Host
	}
	if req.RawQuery != "" {
		q, _ := url.ParseQuery(req.RawQuery)
		ev.QueryStringParameters = make(map[string]string, len(q))
		for k, vs := range q {
			ev.QueryStringParameters[k] = strings.Join(vs, ",")
		}
	}
	if len(req.Body) > 0 {
		if utf8.Valid(req.Body) && isTextual(req.Header.Get("Content-Type")) {
			ev.Body = string(req.Body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(req.Body)
			ev.IsBase64Encoded = true
		}
	}
	return json.Marshal(&ev)
}

func isTextual(ct string) bool {
	if ct == "" {
		return true
	}
	ct = strings.ToLower(ct)
	for _, p := range []string{"text/", "application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded", "+json", "+xml"} {
		if strings.Contains(ct, p) {
			return true
		}
	}
	return false
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// functionURLResponse maps a handler's result to HTTP: an object with
// statusCode is an API Gateway v2 response; anything else is a 200 JSON body.
func functionURLResponse(payload []byte) (*driver.Response, error) {
	var r struct {
		StatusCode        *int                `json:"statusCode"`
		Headers           map[string]string   `json:"headers"`
		MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
		Body              string              `json:"body"`
		IsBase64Encoded   bool                `json:"isBase64Encoded"`
		Cookies           []string            `json:"cookies"`
	}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &r) != nil || r.StatusCode == nil {
		return &driver.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: payload}, nil
	}
	if *r.StatusCode < 100 || *r.StatusCode > 999 {
		return nil, driver.Errorf(driver.ErrContract, "invalid statusCode %d", *r.StatusCode)
	}
	h := make(http.Header, len(r.Headers)+len(r.MultiValueHeaders)+1)
	for k, vs := range r.MultiValueHeaders {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	for k, v := range r.Headers {
		h.Set(k, v)
	}
	for _, c := range r.Cookies {
		h.Add("Set-Cookie", c)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	body := []byte(r.Body)
	if r.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(r.Body)
		if err != nil {
			return nil, driver.Errorf(driver.ErrContract, "body is not valid base64: %v", err)
		}
		body = b
	}
	return &driver.Response{Status: *r.StatusCode, Header: h, Body: body}, nil
}
