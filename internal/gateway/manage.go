package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/registry"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	b, _ := json.Marshal(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
	w.Write(append(b, '\n'))
}

// registryError answers an error from the registry.
func (g *Gateway) registryError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		writeError(w, http.StatusNotFound, api.CodeNotFound, err.Error()+"; GET /v1/functions lists deployed functions")
	case errors.Is(err, registry.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, trimSentinel(err, registry.ErrTooLarge))
	case errors.Is(err, registry.ErrInvalid):
		writeError(w, http.StatusBadRequest, api.CodeInvalidManifest, trimSentinel(err, registry.ErrInvalid))
	default:
		g.cfg.Logger.Error("registry", "err", err)
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

// trimSentinel drops the "sentinel: " prefix the registry wraps errors in,
// leaving the precise message.
func trimSentinel(err, sentinel error) string {
	msg := err.Error()
	prefix := sentinel.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}

func (g *Gateway) deploy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, err := readBody(w, r, g.cfg.MaxUpload)
	if err != nil {
		g.countDeploy("invalid")
		writeBodyError(w, err, g.cfg.MaxUpload)
		return
	}
	if len(body) == 0 {
		g.countDeploy("invalid")
		writeError(w, http.StatusBadRequest, api.CodeInvalidArtifact, "empty body: send the function directory as a gzip'd tar (hearth deploy DIR does this)")
		return
	}
	v, err := g.cfg.Functions.Deploy(r.Context(), name, body)
	if err != nil {
		if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrTooLarge) {
			g.countDeploy("invalid")
		} else {
			g.countDeploy("error")
		}
		g.registryError(w, err)
		return
	}
	g.countDeploy("ok")
	writeJSON(w, http.StatusCreated, v)
}

func (g *Gateway) countDeploy(result string) {
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.Deploys.WithLabelValues(result).Inc()
	}
}

func (g *Gateway) list(w http.ResponseWriter, r *http.Request) {
	fns, err := g.cfg.Functions.List(r.Context())
	if err != nil {
		g.registryError(w, err)
		return
	}
	if fns == nil {
		fns = []api.Function{}
	}
	writeJSON(w, http.StatusOK, api.FunctionList{Functions: fns})
}

func (g *Gateway) get(w http.ResponseWriter, r *http.Request) {
	f, err := g.cfg.Functions.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		g.registryError(w, err)
		return
	}
	st := g.cfg.Invoker.Status(f.Name)
	f.Status = &st
	if g.cfg.Triggers != nil {
		f.Triggers = g.cfg.Triggers.List(f.Name)
	}
	writeJSON(w, http.StatusOK, f)
}

func (g *Gateway) delete(w http.ResponseWriter, r *http.Request) {
	d, err := g.cfg.Functions.Delete(r.Context(), r.PathValue("name"))
	if err != nil {
		g.registryError(w, err)
		return
	}
	if g.cfg.Metrics != nil {
		g.cfg.Metrics.Forget(d.Name)
	}
	writeJSON(w, http.StatusOK, d)
}

func (g *Gateway) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := LogQuery{Function: name, Tail: 100}
	v := r.URL.Query()
	if s := v.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 100000 {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, "tail: want a number of lines between 0 and 100000")
			return
		}
		q.Tail = n
	}
	if s := v.Get("follow"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, "follow: want true or false")
			return
		}
		q.Follow = b
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, "since: want an RFC 3339 time such as 2026-01-02T15:04:05Z")
			return
		}
		q.Since = t
	}
	if _, ok := g.cfg.Functions.Lookup(name); !ok {
		// Logs outlive a removed function, so only complain when there is
		// nothing to show and nothing to follow.
		if _, err := g.cfg.Functions.Get(r.Context(), name); err != nil && q.Follow {
			g.registryError(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	err := g.cfg.Records.Logs(r.Context(), q, func(e api.LogEntry) error {
		if err := enc.Encode(e); err != nil {
			return err
		}
		if fl != nil && q.Follow {
			fl.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		g.cfg.Logger.Warn("streaming logs", "function", name, "err", err)
	}
}

func (g *Gateway) usage(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	to := time.Now().UTC()
	from := time.Unix(0, 0).UTC()
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name))
				return
			}
			*p.dst = t.UTC()
		}
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "from must be before to")
		return
	}
	fns, err := g.cfg.Records.Usage(r.Context(), from, to)
	if err != nil {
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
		return
	}
	if fns == nil {
		fns = []api.FunctionUsage{}
	}
	writeJSON(w, http.StatusOK, api.Usage{From: from, To: to, Functions: fns})
}
