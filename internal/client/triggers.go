package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hearthdev/hearth/internal/api"
)

// Triggers lists the triggers of function, or of every function if it is
// empty (GET /v1/triggers).
func (c *Client) Triggers(ctx context.Context, function string) ([]api.TriggerStatus, error) {
	q := url.Values{}
	if function != "" {
		q.Set("function", function)
	}
	var l api.TriggerList
	if err := c.doJSON(ctx, http.MethodGet, "/v1/triggers", q, nil, nil, &l); err != nil {
		return nil, err
	}
	return l.Triggers, nil
}

// PublishEvent publishes on the event bus (POST /v1/events/{topic}). The
// body is a CloudEvent if header says so (Content-Type
// application/cloudevents+json, or ce-* headers), else the data of a new
// event.
func (c *Client) PublishEvent(ctx context.Context, topic string, body io.Reader, header http.Header) (api.EventAccepted, error) {
	var acc api.EventAccepted
	err := c.doJSON(ctx, http.MethodPost, "/v1/events/"+url.PathEscape(topic), nil, header, body, &acc)
	return acc, err
}

// objectPath escapes each segment of key.
func objectPath(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/buckets/" + url.PathEscape(bucket) + "/objects/" + strings.Join(segs, "/")
}

// Buckets lists the buckets (GET /v1/buckets).
func (c *Client) Buckets(ctx context.Context) ([]string, error) {
	var l api.BucketList
	err := c.doJSON(ctx, http.MethodGet, "/v1/buckets", nil, nil, nil, &l)
	return l.Buckets, err
}

// Objects lists a bucket's objects whose key starts with prefix.
func (c *Client) Objects(ctx context.Context, bucket, prefix string) ([]api.Object, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	var l api.ObjectList
	err := c.doJSON(ctx, http.MethodGet, "/v1/buckets/"+url.PathEscape(bucket)+"/objects", q, nil, nil, &l)
	return l.Objects, err
}

// PutObject stores an object (PUT /v1/buckets/{bucket}/objects/{key}),
// creating the bucket on its first object.
func (c *Client) PutObject(ctx context.Context, bucket, key, contentType string, body io.Reader) (api.Object, error) {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	var o api.Object
	err := c.doJSON(ctx, http.MethodPut, objectPath(bucket, key), nil, h, body, &o)
	return o, err
}

// GetObject opens an object; the caller closes the reader.
func (c *Client) GetObject(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, objectPath(bucket, key), nil, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer drain(resp.Body)
		return nil, errorFromResponse(resp)
	}
	return resp.Body, nil
}

// DeleteObject removes an object.
func (c *Client) DeleteObject(ctx context.Context, bucket, key string) error {
	resp, err := c.send(ctx, http.MethodDelete, objectPath(bucket, key), nil, nil, nil)
	if err != nil {
		return err
	}
	defer drain(resp.Body)
	if resp.StatusCode/100 != 2 {
		return errorFromResponse(resp)
	}
	return nil
}
