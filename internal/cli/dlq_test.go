package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

// fakeAsyncAPI serves the asynchronous invocation routes.
func fakeAsyncAPI(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /async/fn/{name}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "resize" {
			notFound(w, r.PathValue("name"))
			return
		}
		body, _ := io.ReadAll(r.Body)
		id := "a1" + r.Header.Get("Idempotency-Key") + "-" + r.PathValue("path") + "-" + string(body)
		reply(w, http.StatusAccepted, api.AsyncAccepted{ID: id})
	})
	mux.HandleFunc("GET /v1/invocations/{id}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("id") {
		case "ok1":
			reply(w, 200, api.InvocationStatus{
				ID: "ok1", Function: "resize", Status: api.StatusSucceeded, Attempts: 2,
				EnqueuedAt: now.Add(-10 * time.Second), StartedAt: now.Add(-5 * time.Second), FinishedAt: now.Add(-5 * time.Second),
				Response: &api.StoredResponse{Status: 200, Body: []byte("done")},
			})
		case "bad1":
			reply(w, 200, api.InvocationStatus{ID: "bad1", Function: "resize", Status: api.StatusFailed, Attempts: 3, Error: "function crashed"})
		default:
			replyError(w, 404, api.CodeNotFound, "no such invocation")
		}
	})
	mux.HandleFunc("GET /v1/dlq", func(w http.ResponseWriter, r *http.Request) {
		dls := []api.DeadLetter{
			{ID: "bad1", Function: "resize", Reason: api.ReasonExhausted, Attempts: 3, Error: "function crashed:\n  trap", FailedAt: now.Add(-2 * time.Minute)},
			{ID: "old2", Function: "mail", Reason: api.ReasonExpired, FailedAt: now.Add(-time.Minute)},
		}
		if f := r.URL.Query().Get("function"); f != "" {
			dls = dls[:0]
			if f == "resize" {
				dls = append(dls, api.DeadLetter{ID: "bad1", Function: "resize", Reason: api.ReasonExhausted, Attempts: 3, FailedAt: now})
			}
		}
		reply(w, 200, api.DeadLetterList{DeadLetters: dls})
	})
	mux.HandleFunc("POST /v1/dlq/{id}/replay", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "bad1" {
			replyError(w, 404, api.CodeNotFound, "not in the dead-letter queue")
			return
		}
		reply(w, http.StatusAccepted, api.InvocationStatus{ID: "bad1", Status: api.StatusQueued, Replays: 1})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			replyError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong API key")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAsyncCommands(t *testing.T) {
	srv := fakeAsyncAPI(t)
	tests := []struct {
		name    string
		args    []string
		want    string
		wantSub []string
		wantErr string
	}{
		{name: "invoke async", args: []string{"invoke", "resize", "/big", "--async", "-d", "x", "--idempotency-key", "k"}, want: "a1k-big-x\n"},
		{name: "invoke async json", args: []string{"invoke", "resize", "/p", "--async", "-o", "json"}, want: "{\n  \"id\": \"a1-p-\"\n}\n"},
		{name: "invoke async GET", args: []string{"invoke", "resize", "--async", "-X", "GET"}, wantErr: "--async invocations are POST requests"},
		{name: "key without async", args: []string{"invoke", "resize", "--idempotency-key", "k"}, wantErr: "--idempotency-key needs --async"},
		{name: "invoke async unknown", args: []string{"invoke", "nope", "/x", "--async"}, wantErr: `function "nope" not found`},
		{
			name: "invocation",
			args: []string{"invocation", "ok1"},
			want: "" +
				"ID:        ok1\n" +
				"Function:  resize\n" +
				"Status:    succeeded\n" +
				"Attempts:  2\n" +
				"Enqueued:  2026-11-27T05:59:50Z (10s ago)\n" +
				"Started:   2026-11-27T05:59:55Z (5s ago)\n" +
				"Finished:  2026-11-27T05:59:55Z (5s ago)\n" +
				"Error:     -\n" +
				"Response:  HTTP 200, 4 B\n" +
				"\ndone\n",
		},
		{name: "invocation wait failed", args: []string{"invocation", "bad1", "--wait"}, wantErr: "invocation bad1 failed after 3 attempts: function crashed"},
		{name: "invocation json", args: []string{"invocation", "ok1", "-o", "json"}, wantSub: []string{`"status": "succeeded"`, `"attempts": 2`}},
		{name: "invocation unknown", args: []string{"invocation", "zz"}, wantErr: `no asynchronous invocation "zz"`},
		{
			name: "dlq ls",
			args: []string{"dlq", "ls"},
			want: "" +
				"ID    FUNCTION  REASON              ATTEMPTS  FAILED  ERROR\n" +
				"bad1  resize    attempts_exhausted  3         2m ago  function crashed: trap\n" +
				"old2  mail      max_age_exceeded    0         1m ago  -\n",
		},
		{name: "dlq ls function", args: []string{"dlq", "ls", "--function", "mail"}, want: "The dead-letter queue is empty.\n"},
		{name: "dlq ls json", args: []string{"dlq", "ls", "--function", "resize", "-o", "json"}, wantSub: []string{`"dead_letters": [`, `"id": "bad1"`}},
		{name: "dlq replay", args: []string{"dlq", "replay", "bad1"}, wantSub: []string{"bad1 queued again (replay 1)"}},
		{name: "dlq replay unknown", args: []string{"dlq", "replay", "bad1", "zz"}, wantErr: "zz is not in the dead-letter queue"},
		{name: "dlq replay nothing", args: []string{"dlq", "replay"}, wantErr: "needs at least one invocation ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.vars[EnvURL] = srv.URL
			h.vars[EnvKey] = testKey
			out, _, err := h.run(tt.args...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr != "" {
				return
			}
			for _, s := range tt.wantSub {
				if !strings.Contains(out, s) {
					t.Errorf("stdout = %q, want it to contain %q", out, s)
				}
			}
			if tt.wantSub == nil && out != tt.want {
				t.Errorf("stdout =\n%s\nwant\n%s", out, tt.want)
			}
		})
	}
}
