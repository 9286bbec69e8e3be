// Command server is Hearth's example Go function for the sandbox tier
// (http contract): an ordinary net/http program that listens on $PORT.
// GET answers a greeting; POST echoes the request body.
//
// Build a static binary next to hearth.yaml, then deploy the directory:
//
//	CGO_ENABLED=0 go build -o server . && hearth deploy .
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
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
			return
		}
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s, %s! (path %s)\n", greeting(), name, r.URL.Path)
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

func greeting() string {
	if g := os.Getenv("GREETING"); g != "" {
		return g
	}
	return "Hello"
}
