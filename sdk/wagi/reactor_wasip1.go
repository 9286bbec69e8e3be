//go:build wasip1

package wagi

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"unsafe"
)

// The "hearth" host module hands a reactor the current request's CGI
// variables, with the same calling convention as WASI environ_sizes_get and
// environ_get.

//go:wasmimport hearth env_sizes_get
func hearthEnvSizesGet(count, size unsafe.Pointer) uint32

//go:wasmimport hearth env_get
func hearthEnvGet(environ, buf unsafe.Pointer) uint32

// hearthHandle serves one request in reactor mode. Hearth calls it on an
// instance restored from the post-initialisation snapshot, with stdin, stdout
// and stderr pointed at the current request.
//
//go:wasmexport hearth_handle
func hearthHandle() {
	env, err := requestEnv()
	if err == nil {
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				os.Setenv(k, v)
			}
		}
		err = ServeCGI(registered, env, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wagi:", err)
		panic("wagi: " + err.Error())
	}
}

// hearthPrepare runs once, after initialisation and before Hearth takes the
// snapshot every request starts from. Collecting garbage here keeps the
// initialisation garbage out of the snapshot and puts the next collection far
// away: otherwise a snapshot taken just below the heap goal makes every
// request pay for a full collection.
//
//go:wasmexport hearth_prepare
func hearthPrepare() {
	// Serve one synthetic request through the SDK's own machinery (not the
	// user's handler, which may have side effects) so that lazy
	// initialisation on the request path — header canonicalisation tables,
	// URL parsing, buffered writers — is done once, in the snapshot, rather
	// than on every restored request.
	warm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		_ = r.URL.Query()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Warm", r.Header.Get("X-Warm"))
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "warm")
	})
	env := []string{
		"REQUEST_METHOD=POST", "PATH_INFO=/warm", "QUERY_STRING=a=1&b=2",
		"CONTENT_TYPE=text/plain", "CONTENT_LENGTH=4", "SERVER_PROTOCOL=HTTP/1.1",
		"SERVER_NAME=localhost", "SERVER_PORT=8080", "REMOTE_ADDR=127.0.0.1",
		"SCRIPT_NAME=/fn/warm", "REQUEST_URI=/fn/warm/warm?a=1&b=2",
		"HTTP_HOST=localhost:8080", "HTTP_USER_AGENT=hearth", "HTTP_ACCEPT=*/*", "HTTP_X_WARM=1",
	}
	_ = ServeCGI(warm, env, strings.NewReader("warm"), io.Discard)
	runtime.GC()
}

func requestEnv() ([]string, error) {
	var count, size uint32
	if errno := hearthEnvSizesGet(unsafe.Pointer(&count), unsafe.Pointer(&size)); errno != 0 {
		return nil, fmt.Errorf("hearth.env_sizes_get: errno %d", errno)
	}
	if count == 0 {
		return nil, nil
	}
	ptrs := make([]uint32, count)
	buf := make([]byte, size)
	if errno := hearthEnvGet(unsafe.Pointer(&ptrs[0]), unsafe.Pointer(&buf[0])); errno != 0 {
		return nil, fmt.Errorf("hearth.env_get: errno %d", errno)
	}
	env := make([]string, 0, count)
	for _, kv := range strings.Split(string(buf), "\x00") {
		if kv != "" {
			env = append(env, kv)
		}
	}
	return env, nil
}
