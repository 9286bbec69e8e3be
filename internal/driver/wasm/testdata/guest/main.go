// Command guest is the wasm driver's test guest. It picks its behaviour from
// the BEHAVIOUR environment variable (see driver/conformance) and builds both
// as a command (GOOS=wasip1 GOARCH=wasm) and as a reactor (-buildmode=c-shared).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/hearthdev/hearth/sdk/wagi"
)

var (
	counter int          // "counter": proves state does not leak between requests
	hoard   [][]byte     // "oom", "grow"
	sink    = new(int64) // defeats dead-code elimination of the loop
)

func serve(w http.ResponseWriter, r *http.Request) {
	switch b := os.Getenv("BEHAVIOUR"); b {
	case "hello":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello")
	case "echo":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Echo-Method", r.Method)
		w.Header().Set("X-Echo-Path", r.URL.Path)
		w.Header().Set("X-Echo-Query", r.URL.RawQuery)
		w.Header().Set("X-Echo-Test", r.Header.Get("X-Test"))
		w.Write(body)
	case "emit":
		// Answers with its request body and asks Hearth to publish it as
		// an event on the topic in ?topic= (X-Hearth-Emit).
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Hearth-Emit", r.URL.Query().Get("topic"))
		w.Write(body)
	case "loop":
		for {
			*sink++
		}
	case "oom":
		for {
			chunk := make([]byte, 1<<20)
			for i := range chunk {
				chunk[i] = byte(i)
			}
			hoard = append(hoard, chunk)
		}
	case "crash":
		fmt.Fprintln(os.Stderr, "about to crash")
		panic("boom")
	case "env":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, os.Getenv("GREETING"))
	case "stderr":
		fmt.Fprintln(os.Stderr, "a line for the logs")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	case "counter":
		counter++
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, strconv.Itoa(counter))
	case "grow":
		// Grows linear memory well beyond the post-init snapshot.
		if r.URL.Query().Get("crash") != "" {
			panic("boom after growing")
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("mib"))
		for range n {
			hoard = append(hoard, make([]byte, 1<<20))
		}
		counter++
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d %d", counter, len(hoard))
	case "file":
		b, err := os.ReadFile(r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(b)
	case "status":
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusTeapot)
	default:
		http.Error(w, "unknown BEHAVIOUR "+strconv.Quote(b), http.StatusNotImplemented)
	}
}

var handler = http.HandlerFunc(serve)

func init() { wagi.Handle(handler) }

func main() { wagi.Serve(handler) }
