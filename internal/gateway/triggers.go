package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
	"github.com/hearthdev/hearth/internal/trigger"
)

// Triggers is the trigger manager as the gateway uses it
// (*trigger.Manager): trigger status, the event bus, buckets, the http
// trigger routes, and what follows a synchronous invocation (http trigger
// counters, X-Hearth-Emit).
type Triggers interface {
	List(function string) []api.TriggerStatus
	Publish(ctx context.Context, topic string, e *events.Event) (api.EventAccepted, error)
	Serve(w http.ResponseWriter, r *http.Request, invoke trigger.InvokeFunc) bool
	Buckets() *trigger.Buckets
	AfterSync(ctx context.Context, fn string, req *driver.Request, resp *driver.Response, err error)
}

var _ Triggers = (*trigger.Manager)(nil)

// emitTimeout bounds publishing the event a synchronous invocation's
// response asks for.
const emitTimeout = 10 * time.Second

// afterInvoke hands a finished synchronous invocation to the trigger
// manager, which counts http trigger firings and publishes the event of an
// X-Hearth-Emit response header (rewriting the response's headers). The
// event is published even if the caller went away: the function did its
// work.
func (g *Gateway) afterInvoke(ctx context.Context, name string, req *driver.Request, resp *driver.Response, err error) {
	if g.cfg.Triggers == nil {
		return
	}
	if req.Header.Get(trigger.HeaderTrigger) == "" && (resp == nil || resp.Header.Get(trigger.HeaderEmit) == "") {
		return // the common case: nothing to count or publish
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), emitTimeout)
	defer cancel()
	g.cfg.Triggers.AfterSync(ctx, name, req, resp, err)
}

// Limits of the trigger routes.
const (
	MaxEventBody  = 512 << 10 // data of one event
	MaxObjectSize = 1 << 30   // one object in a bucket
)

// Error codes of the trigger routes.
const (
	CodeMalformedEvent = api.CodeMalformedEvent // 400
	CodeUnknownTopic   = api.CodeUnknownTopic   // 404
	CodeBadKey         = "bad_object_key"       // 400
)

// mountTriggers adds the trigger, event and bucket routes; without a
// trigger manager they answer 501.
func (g *Gateway) mountTriggers() {
	if g.cfg.Triggers == nil {
		g.mountUnavailable("triggers, events and buckets are not available on this server",
			"/v1/triggers", "/v1/events/{topic}", "/v1/buckets", "/v1/buckets/{bucket}/objects", "/v1/buckets/{bucket}/objects/{key...}")
		return
	}
	g.mux.HandleFunc("GET /v1/triggers", g.auth(g.listTriggers))
	g.mux.HandleFunc("POST /v1/events/{topic}", g.auth(g.publishEvent))
	g.mux.HandleFunc("GET /v1/buckets", g.auth(g.listBuckets))
	g.mux.HandleFunc("GET /v1/buckets/{bucket}/objects", g.auth(g.listObjects))
	g.mux.HandleFunc("PUT /v1/buckets/{bucket}/objects/{key...}", g.auth(g.putObject))
	g.mux.HandleFunc("GET /v1/buckets/{bucket}/objects/{key...}", g.auth(g.getObject))
	g.mux.HandleFunc("DELETE /v1/buckets/{bucket}/objects/{key...}", g.auth(g.deleteObject))
}

// fallback serves what no other route matched: an http trigger's route, or
// 404.
func (g *Gateway) fallback(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Triggers != nil && g.cfg.Triggers.Serve(w, r, g.invokeRoute) {
		return
	}
	writeError(w, http.StatusNotFound, api.CodeNotFound, "no such route: "+r.URL.Path+"; functions are invoked on /fn/{name}, the API is under /v1")
}

// internalHeaders are set by Hearth on the requests of triggers and emitted
// events; a caller's own are dropped, so that it cannot pass a call off as a
// trigger's (its counters) or reset the loop guard of emitted events.
var internalHeaders = []string{trigger.HeaderTrigger, trigger.HeaderTriggerType, trigger.HeaderEventHops}

func dropInternalHeaders(h http.Header) {
	for _, k := range internalHeaders {
		h.Del(k)
	}
}

// invokeFn serves /fn/{name}/{path...}.
func (g *Gateway) invokeFn(w http.ResponseWriter, r *http.Request) {
	dropInternalHeaders(r.Header)
	g.invoke(w, r)
}

// invokeRoute invokes the function of an http trigger as /fn/{name} would,
// with PATH_INFO the whole request path, X-Hearth-Route the matched pattern
// and X-Hearth-Param-<Name> each of its wildcards.
func (g *Gateway) invokeRoute(w http.ResponseWriter, r *http.Request, rt trigger.Route) {
	g.auth(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.HasPrefix(k, "X-Hearth-Param-") {
				r.Header.Del(k)
			}
		}
		dropInternalHeaders(r.Header)
		r.Header.Set("X-Hearth-Route", rt.Pattern)
		r.Header.Set(trigger.HeaderTrigger, rt.Trigger)
		r.Header.Set(trigger.HeaderTriggerType, manifest.TriggerHTTP)
		for k, v := range rt.Params {
			r.Header.Set("X-Hearth-Param-"+k, v)
		}
		r.SetPathValue("name", rt.Function)
		r.SetPathValue("path", strings.TrimPrefix(r.URL.Path, "/"))
		g.invoke(w, r)
	})(w, r)
}

// listTriggers serves GET /v1/triggers[?function=NAME].
func (g *Gateway) listTriggers(w http.ResponseWriter, r *http.Request) {
	fn := r.URL.Query().Get("function")
	if fn != "" {
		if _, ok := g.cfg.Functions.Lookup(fn); !ok {
			writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("function %q not found", fn))
			return
		}
	}
	writeJSON(w, http.StatusOK, api.TriggerList{Triggers: g.cfg.Triggers.List(fn)})
}

// publishEvent serves POST /v1/events/{topic}: a CloudEvent in structured
// or binary mode, or plain data that becomes the data of a new event
// (source /v1/events, type the topic). 202 once the event is stored.
func (g *Gateway) publishEvent(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := manifest.CheckTopic(topic, false); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "topic "+err.Error())
		return
	}
	body, err := readBody(w, r, MaxEventBody)
	if err != nil {
		writeBodyError(w, err, MaxEventBody)
		return
	}
	e, err := events.FromHTTP(r.Header, body, "/v1/events", topic)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeMalformedEvent, err.Error())
		return
	}
	acc, err := g.cfg.Triggers.Publish(r.Context(), topic, e)
	switch {
	case errors.Is(err, events.ErrUnknownTopic):
		writeError(w, http.StatusNotFound, CodeUnknownTopic, err.Error())
	case errors.Is(err, events.ErrMalformed):
		writeError(w, http.StatusBadRequest, CodeMalformedEvent, err.Error())
	case err != nil:
		g.cfg.Logger.Error("publishing an event", "topic", topic, "err", err)
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	default:
		writeJSON(w, http.StatusAccepted, acc)
	}
}

func (g *Gateway) bucketError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, trigger.ErrNoBucket), errors.Is(err, trigger.ErrNoObject):
		writeError(w, http.StatusNotFound, api.CodeNotFound, err.Error())
	case errors.Is(err, trigger.ErrBadBucket):
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
	case errors.Is(err, trigger.ErrBadKey):
		writeError(w, http.StatusBadRequest, CodeBadKey, err.Error())
	default:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("objects are limited to %d MiB", MaxObjectSize>>20))
			return
		}
		g.cfg.Logger.Error("bucket", "err", err)
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

func (g *Gateway) listBuckets(w http.ResponseWriter, r *http.Request) {
	names, err := g.cfg.Triggers.Buckets().Names(r.Context())
	if err != nil {
		g.bucketError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.BucketList{Buckets: names})
}

func (g *Gateway) listObjects(w http.ResponseWriter, r *http.Request) {
	objs, err := g.cfg.Triggers.Buckets().List(r.Context(), r.PathValue("bucket"), r.URL.Query().Get("prefix"))
	if err != nil {
		g.bucketError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ObjectList{Objects: objs})
}

// putObject serves PUT /v1/buckets/{bucket}/objects/{key...}: 201 with the
// object's size and digest. The bucket is created by its first object.
func (g *Gateway) putObject(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxObjectSize {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("objects are limited to %d MiB", MaxObjectSize>>20))
		return
	}
	body := http.MaxBytesReader(w, r.Body, MaxObjectSize)
	obj, err := g.cfg.Triggers.Buckets().Put(r.Context(), r.PathValue("bucket"), r.PathValue("key"), r.Header.Get("Content-Type"), body)
	if err != nil {
		g.bucketError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, obj)
}

func (g *Gateway) getObject(w http.ResponseWriter, r *http.Request) {
	rc, obj, err := g.cfg.Triggers.Buckets().Get(r.Context(), r.PathValue("bucket"), r.PathValue("key"))
	if err != nil {
		g.bucketError(w, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	ct := obj.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.FormatUint(obj.Size, 10))
	h.Set("ETag", strconv.Quote(obj.Digest))
	h.Set("X-Hearth-Digest", obj.Digest)
	h.Set("Last-Modified", obj.ModTime.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.Copy(w, rc)
	}
}

func (g *Gateway) deleteObject(w http.ResponseWriter, r *http.Request) {
	if err := g.cfg.Triggers.Buckets().Delete(r.Context(), r.PathValue("bucket"), r.PathValue("key")); err != nil {
		g.bucketError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
