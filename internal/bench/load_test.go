package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeRunLoad() // the Process loads below re-execute this test binary
	os.Exit(m.Run())
}

func TestLeanLoad(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" || r.ContentLength != 3 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	for _, process := range []bool{false, true} {
		mu.Lock()
		got = nil
		mu.Unlock()
		l := Load{URL: srv.URL + "/a/b?c=d", Method: "POST", Body: []byte("xyz"), Header: http.Header{"Authorization": {"Bearer k"}},
			Concurrency: 1, Duration: 200 * time.Millisecond, Lean: true, Process: process}
		r := l.Run(context.Background(), nil)
		if r.Err != "" || r.Errors != 0 || r.Status[http.StatusAccepted] == 0 || r.Status[http.StatusAccepted] != r.Requests {
			t.Fatalf("process=%v: %+v", process, r)
		}
		if process {
			if r.CPU <= 0 {
				t.Errorf("no CPU time measured: %+v", r)
			}
			continue
		}
		mu.Lock()
		// The request cut off by the end of the run reaches the server
		// uncounted.
		if got[0] != "POST /a/b?c=d" || len(got) < r.Requests || len(got) > r.Requests+1 {
			t.Errorf("server saw %d requests, first %q; client counted %d", len(got), got[0], r.Requests)
		}
		mu.Unlock()
	}
}

func TestLeanLoadRejectsChunked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a"))
		w.(http.Flusher).Flush() // no Content-Length: chunked
		w.Write([]byte("b"))
	}))
	defer srv.Close()
	r := Load{URL: srv.URL, Duration: 100 * time.Millisecond, Lean: true}.Run(context.Background(), nil)
	if r.Errors == 0 || r.Errors != r.Requests {
		t.Fatalf("chunked answers counted as successes: %+v", r)
	}
}
