package trigger

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Route is an http trigger matched by a request.
type Route struct {
	Function string
	Trigger  string
	Pattern  string
	// Params are the pattern's wildcards and their values.
	Params map[string]string
}

// InvokeFunc serves a request matched by an http trigger.
type InvokeFunc func(w http.ResponseWriter, r *http.Request, route Route)

// routeTable is an immutable ServeMux of the http triggers.
type routeTable struct {
	mux *http.ServeMux
	n   int
}

var emptyRoutes = &routeTable{mux: http.NewServeMux()}

type routeKey struct{}

// routeHandler is registered for one pattern of one http trigger.
type routeHandler struct {
	fn, trigger, pattern string
	params               []string
}

func (h *routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	invoke, _ := r.Context().Value(routeKey{}).(InvokeFunc)
	if invoke == nil {
		http.NotFound(w, r)
		return
	}
	rt := Route{Function: h.fn, Trigger: h.trigger, Pattern: h.pattern}
	if len(h.params) > 0 {
		rt.Params = make(map[string]string, len(h.params))
		for _, p := range h.params {
			rt.Params[p] = r.PathValue(p)
		}
	}
	invoke(w, r, rt)
}

var wildcardRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}`)

// Serve serves r if an http trigger's route matches it, calling invoke,
// and reports whether one did.
func (m *Manager) Serve(w http.ResponseWriter, r *http.Request, invoke InvokeFunc) bool {
	rt := m.routes.Load()
	if rt.n == 0 {
		return false
	}
	if _, pattern := rt.mux.Handler(r); pattern == "" {
		return false
	}
	rt.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, invoke)))
	return true
}

// rebuildRoutesLocked rebuilds the route table from the http triggers,
// in function and trigger name order; a pattern that conflicts with one
// registered before puts its trigger in the error state.
func (m *Manager) rebuildRoutesLocked() {
	var rs []*runner
	for _, f := range m.fns {
		for _, r := range f.runners {
			if r.t.Type == manifest.TriggerHTTP {
				rs = append(rs, r)
			}
		}
	}
	slices.SortFunc(rs, func(a, b *runner) int {
		if c := strings.Compare(a.fn, b.fn); c != 0 {
			return c
		}
		return strings.Compare(a.t.Name, b.t.Name)
	})
	mux := http.NewServeMux()
	n := 0
	owner := map[string]string{}
	for _, r := range rs {
		var params []string
		for _, sm := range wildcardRE.FindAllStringSubmatch(r.t.Path, -1) {
			params = append(params, sm[1])
		}
		methods := r.t.Methods
		if len(methods) == 0 {
			methods = []string{""}
		}
		var conflict error
		for _, meth := range methods {
			pattern := strings.TrimSpace(meth + " " + r.t.Path)
			if err := register(mux, pattern, &routeHandler{fn: r.fn, trigger: r.t.Name, pattern: pattern, params: params}); err != nil {
				conflict = fmt.Errorf("route %s conflicts with another http trigger (%s): %v", pattern, ownerOf(owner, r.t.Path), err)
				break
			}
			owner[r.t.Path] = r.fn + "/" + r.t.Name
			n++
		}
		if conflict != nil {
			r.setState(api.TriggerError, conflict.Error())
		} else {
			r.setState(api.TriggerRunning, "")
		}
	}
	m.routes.Store(&routeTable{mux: mux, n: n})
}

func ownerOf(owner map[string]string, path string) string {
	if o, ok := owner[path]; ok {
		return o
	}
	return "an overlapping pattern"
}

func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}
