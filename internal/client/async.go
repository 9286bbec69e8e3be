package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

// Invocation returns the status of the asynchronous invocation id
// (GET /v1/invocations/{id}).
func (c *Client) Invocation(ctx context.Context, id string) (api.InvocationStatus, error) {
	var st api.InvocationStatus
	err := c.doJSON(ctx, http.MethodGet, "/v1/invocations/"+url.PathEscape(id), nil, nil, nil, &st)
	return st, err
}

// WaitInvocation polls the status of id every interval until it is final
// (succeeded or failed) or ctx is done.
func (c *Client) WaitInvocation(ctx context.Context, id string, interval time.Duration) (api.InvocationStatus, error) {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	for {
		st, err := c.Invocation(ctx, id)
		if err != nil || st.Final() {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// DeadLetters lists the dead-letter queue (GET /v1/dlq), oldest first: of
// one function, or of all if function is empty; limit 0 leaves the number to
// the server.
func (c *Client) DeadLetters(ctx context.Context, function string, limit int) ([]api.DeadLetter, error) {
	q := url.Values{}
	if function != "" {
		q.Set("function", function)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var l api.DeadLetterList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/dlq", q, nil, nil, &l); err != nil {
		return nil, err
	}
	return l.DeadLetters, nil
}

// Replay queues a dead-lettered invocation again under the same id
// (POST /v1/dlq/{id}/replay) and returns its new status.
func (c *Client) Replay(ctx context.Context, id string) (api.InvocationStatus, error) {
	var st api.InvocationStatus
	err := c.doJSON(ctx, http.MethodPost, "/v1/dlq/"+url.PathEscape(id)+"/replay", nil, nil, nil, &st)
	return st, err
}
