package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/hearthdev/hearth/internal/api"
)

// Sentinel errors an *APIError matches with errors.Is.
var (
	// ErrNotFound matches an error response with code api.CodeNotFound.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized matches a 401 response: a missing or wrong API key.
	ErrUnauthorized = errors.New("unauthorized")
)

// APIError is an error response from the server.
type APIError struct {
	Status  int    // HTTP status
	Code    string // one of the api.Code* constants; empty if the body was not an api.ErrorBody
	Message string
}

// Error returns e.g. `HTTP 404 not_found: function "x" not found`.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Is reports whether e matches ErrNotFound or ErrUnauthorized.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == api.CodeNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	}
	return false
}

// ParseError builds the APIError for a response with the given status and
// body. A body that is an api.ErrorBody fills Code and Message; any other
// body becomes the Message (trimmed, at most 1 KiB), or the status text if
// the body is empty.
func ParseError(status int, body []byte) *APIError {
	e := &APIError{Status: status}
	var eb api.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 1024 {
		msg = msg[:1024] + "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	e.Message = msg
	return e
}

func errorFromResponse(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && len(body) == 0 {
		return &APIError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	}
	return ParseError(resp.StatusCode, body)
}

// UnreachableError means no HTTP response came back from the server at URL.
type UnreachableError struct {
	URL string
	Err error
}

// Error says which URL was tried and, when nothing listens there, how to
// start a server.
func (e *UnreachableError) Error() string {
	cause := e.Err
	var ue *url.Error
	if errors.As(cause, &ue) {
		cause = ue.Err // drop the repeated method and URL
	}
	if e.Refused() {
		return fmt.Sprintf("no Hearth server at %s (connection refused): start one with `hearth up`, or point --url or HEARTH_URL at a running server", e.URL)
	}
	var dnsErr *net.DNSError
	if errors.As(cause, &dnsErr) {
		return fmt.Sprintf("cannot reach the Hearth server at %s: %v; check --url or HEARTH_URL", e.URL, cause)
	}
	return fmt.Sprintf("cannot reach the Hearth server at %s: %v", e.URL, cause)
}

// Unwrap returns the transport error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Refused reports whether nothing was listening at the URL.
func (e *UnreachableError) Refused() bool {
	return errors.Is(e.Err, syscall.ECONNREFUSED)
}
