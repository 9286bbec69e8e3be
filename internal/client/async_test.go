package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/client"
)

func TestAsync(t *testing.T) {
	polls := 0
	mux := http.NewServeMux()
	mux.HandleFunc("POST /async/fn/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") != "k" {
			t.Errorf("Idempotency-Key %q", r.Header.Get("Idempotency-Key"))
		}
		writeJSON(w, http.StatusAccepted, api.AsyncAccepted{ID: "id1"})
	})
	mux.HandleFunc("GET /v1/invocations/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "id1" {
			writeError(w, 404, api.CodeNotFound, "no such invocation")
			return
		}
		polls++
		st := api.InvocationStatus{ID: "id1", Status: api.StatusQueued}
		if polls >= 3 {
			st.Status = api.StatusSucceeded
		}
		writeJSON(w, 200, st)
	})
	mux.HandleFunc("GET /v1/dlq", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("function") != "f" || r.URL.Query().Get("limit") != "5" {
			t.Errorf("query %q", r.URL.RawQuery)
		}
		writeJSON(w, 200, api.DeadLetterList{DeadLetters: []api.DeadLetter{{ID: "id2", Function: "f", Attempts: 3}}})
	})
	mux.HandleFunc("POST /v1/dlq/{id}/replay", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusAccepted, api.InvocationStatus{ID: r.PathValue("id"), Status: api.StatusQueued, Replays: 1})
	})
	c := newServer(t, mux)
	ctx := context.Background()

	id, err := c.InvokeAsync(ctx, "f", "", nil, http.Header{"Idempotency-Key": {"k"}})
	if err != nil || id != "id1" {
		t.Fatalf("InvokeAsync = %q, %v", id, err)
	}
	st, err := c.WaitInvocation(ctx, id, time.Millisecond)
	if err != nil || st.Status != api.StatusSucceeded || polls != 3 {
		t.Errorf("WaitInvocation = %+v, %v after %d polls", st, err, polls)
	}
	if _, err := c.Invocation(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	dls, err := c.DeadLetters(ctx, "f", 5)
	if err != nil || len(dls) != 1 || dls[0].Attempts != 3 {
		t.Errorf("DeadLetters = %+v, %v", dls, err)
	}
	st, err = c.Replay(ctx, "id2")
	if err != nil || st.Replays != 1 || st.ID != "id2" {
		t.Errorf("Replay = %+v, %v", st, err)
	}
}
