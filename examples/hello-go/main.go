// Command hello is Hearth's example Go function for the wasm tier (wagi
// contract). GET answers a greeting; POST echoes the request body.
//
// Build as a command (fresh instance per request):
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello.wasm .
//
// or as a reactor, which Hearth snapshots after initialisation and restores
// per request (much faster):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm .
package main

import (
	"io"
	"net/http"
	"os"

	"github.com/hearthdev/hearth/sdk/wagi"
)

func hello(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Write(body)
	default:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Hello from Hearth!\n")
		if g := os.Getenv("GREETING"); g != "" {
			io.WriteString(w, g+"\n")
		}
	}
}

var handler = http.HandlerFunc(hello)

func init() { wagi.Handle(handler) } // reactor mode: main is not run

func main() { wagi.Serve(handler) } // command mode
