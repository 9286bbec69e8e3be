package main

// End-to-end tests: they build the real hearth binary, run `hearth up` as a
// child process on a temporary data directory, and drive it through the CLI
// and raw HTTP, including SIGTERM and kill -9 restarts.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

var (
	hearthBin string // built once in TestMain
	guestWasm string // the wasm driver's test guest (command mode)
	repoRoot  string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "hearth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	wd, _ := os.Getwd()
	repoRoot = filepath.Join(wd, "..", "..")
	hearthBin = filepath.Join(tmp, "hearth")
	if out, err := exec.Command("go", "build", "-o", hearthBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hearth: %v\n%s", err, out)
		return 1
	}
	guestWasm = filepath.Join(tmp, "guest.wasm")
	cmd := exec.Command("go", "build", "-o", guestWasm, "./internal/driver/wasm/testdata/guest")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building guest: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// node is a running `hearth up` child process.
type node struct {
	t      *testing.T
	data   string
	cmd    *exec.Cmd
	addr   string
	key    string
	stderr *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var addrRe = regexp.MustCompile(`addr=http://(\S+)`)

func startNode(t *testing.T, data string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, data: data, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	n.cmd = exec.Command(hearthBin, append([]string{"up", "--listen", "127.0.0.1:0", "--data", data}, extra...)...)
	pr, pw := io.Pipe()
	n.cmd.Stderr = io.MultiWriter(n.stderr, pw)
	n.cmd.Stdout = n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait(); pw.Close() }()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case n.addr = <-found:
	case err := <-n.exited:
		t.Fatalf("hearth up exited: %v\n%s", err, n.stderr.String())
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		t.Fatalf("hearth up did not start in 30s\n%s", n.stderr.String())
	}
	key, err := os.ReadFile(filepath.Join(data, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	n.key = strings.TrimSpace(string(key))
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			// Gracefully, so that the node removes its sandboxes' cgroups.
			n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.exited:
			case <-time.After(30 * time.Second):
				n.cmd.Process.Kill()
				<-n.exited
			}
		}
	})
	return n
}

// stop sends sig and waits for exit; SIGTERM must exit 0.
func (n *node) stop(sig syscall.Signal) {
	n.t.Helper()
	n.cmd.Process.Signal(sig)
	select {
	case err := <-n.exited:
		if sig == syscall.SIGTERM && err != nil {
			n.t.Fatalf("hearth up exited with %v after SIGTERM\n%s", err, n.stderr.String())
		}
	case <-time.After(40 * time.Second):
		n.t.Fatalf("hearth up did not exit after %v", sig)
	}
}

// cli runs the hearth CLI against the node.
func (n *node) cli(args ...string) (string, error) {
	cmd := exec.Command(hearthBin, append([]string{"--url", "http://" + n.addr, "--key", n.key}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (n *node) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.addr+path, body)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.key)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// guestDir writes a function directory for the test guest.
func guestDir(t *testing.T, name, behaviour string, extra string) string {
	t.Helper()
	dir := t.TempDir()
	wasm, err := os.ReadFile(guestWasm)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "guest.wasm"), wasm, 0o644)
	man := fmt.Sprintf("name: %s\nisolation: wasm\nmodule: guest.wasm\nenv: {BEHAVIOUR: %s, GREETING: hi}\n%s", name, behaviour, extra)
	os.WriteFile(filepath.Join(dir, "hearth.yaml"), []byte(man), 0o644)
	return dir
}

func errCode(t *testing.T, body []byte) api.ErrorDetail {
	t.Helper()
	var e api.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not a JSON error body: %q", body)
	}
	return e.Error
}

func TestDeployInvokeVersionsRemove(t *testing.T) {
	n := startNode(t, t.TempDir())

	out, err := n.cli("deploy", guestDir(t, "greeter", "env", ""))
	if err != nil || !strings.Contains(out, "version 1") {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	out, err = n.cli("invoke", "greeter")
	if err != nil || out != "hi" {
		t.Fatalf("invoke via CLI = %q, %v", out, err)
	}
	resp, body := n.do("GET", "/fn/greeter", nil)
	if resp.StatusCode != 200 || string(body) != "hi" {
		t.Fatalf("GET /fn/greeter = %d %q", resp.StatusCode, body)
	}
	for _, h := range []string{"X-Hearth-Invocation-Id", "X-Hearth-Cold-Start", "X-Hearth-Duration-Ms"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("response lacks %s", h)
		}
	}

	// Version 2 changes behaviour: it echoes.
	out, err = n.cli("deploy", guestDir(t, "greeter", "echo", ""))
	if err != nil || !strings.Contains(out, "version 2") {
		t.Fatalf("second deploy: %v\n%s", err, out)
	}
	resp, body = n.do("POST", "/fn/greeter/a/b?x=1", strings.NewReader("payload"), "X-Test", "passed")
	if resp.StatusCode != 200 || string(body) != "payload" || resp.Header.Get("X-Echo-Path") != "/a/b" || resp.Header.Get("X-Echo-Query") != "x=1" || resp.Header.Get("X-Echo-Test") != "passed" {
		t.Fatalf("v2: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	out, err = n.cli("ls", "-o", "json")
	var list api.FunctionList
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Functions) != 1 || list.Functions[0].Latest != 2 || len(list.Functions[0].Versions) != 2 {
		t.Fatalf("ls: %v\n%s", err, out)
	}

	resp, body = n.do("GET", "/metrics", nil, "Authorization", "")
	for _, m := range []string{"hearth_invocations_total{function=\"greeter\",status=\"200\"}", "hearth_invocation_duration_seconds_bucket", "hearth_cold_starts_total", "hearth_instances{", "hearth_queue_depth{"} {
		if resp.StatusCode != 200 || !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	out, err = n.cli("rm", "greeter")
	if err != nil {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	resp, body = n.do("GET", "/fn/greeter", nil)
	if resp.StatusCode != 404 || errCode(t, body).Code != api.CodeNotFound {
		t.Fatalf("after rm: %d %s", resp.StatusCode, body)
	}
	// Its artifacts are gone from the store and from disk.
	ents, _ := os.ReadDir(filepath.Join(n.data, "functions"))
	if len(ents) != 0 {
		t.Fatalf("function files left after rm: %v", ents)
	}
	resp, body = n.do("GET", "/v1/functions/greeter", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("describe after rm: %d %s", resp.StatusCode, body)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			data := t.TempDir()
			n := startNode(t, data)
			if out, err := n.cli("deploy", guestDir(t, "keeper", "stderr", "")); err != nil {
				t.Fatalf("deploy: %v\n%s", err, out)
			}
			if out, err := n.cli("deploy", guestDir(t, "keeper", "stderr", "memory: 96Mi\n")); err != nil {
				t.Fatalf("deploy 2: %v\n%s", err, out)
			}
			for range 3 {
				if resp, body := n.do("GET", "/fn/keeper", nil); resp.StatusCode != 200 {
					t.Fatalf("invoke: %d %s", resp.StatusCode, body)
				}
			}
			// Records are published asynchronously; give them a moment
			// to be acknowledged before a kill -9 (a real crash loses at
			// most the records in flight).
			waitUntil(t, "usage recorded", func() bool { return usageOf(n, "keeper").Invocations == 3 })
			n.stop(sig)

			n = startNode(t, data)
			f := api.Function{}
			resp, body := n.do("GET", "/v1/functions/keeper", nil)
			if resp.StatusCode != 200 || json.Unmarshal(body, &f) != nil || f.Latest != 2 || len(f.Versions) != 2 {
				t.Fatalf("function after restart: %d %s", resp.StatusCode, body)
			}
			if resp, body := n.do("GET", "/fn/keeper", nil); resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("first invocation after restart: %d %s", resp.StatusCode, body)
			}
			out, err := n.cli("logs", "keeper")
			if err != nil || strings.Count(out, "a line for the logs") < 3 {
				t.Fatalf("logs after restart: %v\n%s", err, out)
			}
			waitUntil(t, "usage after restart", func() bool { return usageOf(n, "keeper").Invocations == 4 })
			u := usageOf(n, "keeper")
			if u.GBSeconds <= 0 || u.BilledMs < 4 {
				t.Fatalf("usage: %+v", u)
			}
		})
	}
}

func usageOf(n *node, fn string) api.FunctionUsage {
	_, body := n.do("GET", "/v1/usage", nil)
	var u api.Usage
	json.Unmarshal(body, &u)
	for _, f := range u.Functions {
		if f.Function == fn {
			return f
		}
	}
	return api.FunctionUsage{}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMisbehavingGuests(t *testing.T) {
	n := startNode(t, t.TempDir())
	for _, g := range []struct{ name, behaviour, extra string }{
		{"looper", "loop", "timeout: 500ms\n"},
		{"hog", "oom", "memory: 32Mi\n"},
		{"crasher", "crash", ""},
		{"hello", "hello", "scale: {min: 0, max: 4}\n"},
	} {
		if out, err := n.cli("deploy", guestDir(t, g.name, g.behaviour, g.extra)); err != nil {
			t.Fatalf("deploy %s: %v\n%s", g.name, err, out)
		}
	}

	// The looping guest is stopped at its timeout while others are served.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		resp, body := n.do("GET", "/fn/looper", nil)
		if resp.StatusCode != 504 || errCode(t, body).Code != api.CodeTimeout {
			t.Errorf("looper: %d %s", resp.StatusCode, body)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("looper answered after %v; timeout is 500ms", el)
		}
	}()
	if resp, body := n.do("GET", "/fn/hello", nil); resp.StatusCode != 200 || string(body) != "hello" {
		t.Errorf("hello while a guest loops: %d %s", resp.StatusCode, body)
	}
	wg.Wait()

	resp, body := n.do("GET", "/fn/hog", nil)
	if e := errCode(t, body); resp.StatusCode != 502 || e.Code != api.CodeMemoryLimit || !strings.Contains(e.Message, "memory limit") {
		t.Fatalf("hog: %d %s", resp.StatusCode, body)
	}

	resp, body = n.do("GET", "/fn/crasher", nil)
	if resp.StatusCode != 502 || errCode(t, body).Code != api.CodeCrashed {
		t.Fatalf("crasher: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Hearth-Invocation-Id")
	waitUntil(t, "crash in logs", func() bool {
		out, _ := n.cli("logs", "crasher")
		return strings.Contains(out, "boom") && strings.Contains(out, id[:8])
	})

	// 100 concurrent invocations: each succeeds or gets 429, none hangs.
	var ok, busy, other int
	var mu sync.Mutex
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := n.do("GET", "/fn/hello", nil)
			mu.Lock()
			defer mu.Unlock()
			switch resp.StatusCode {
			case 200:
				ok++
			case 429:
				busy++
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
			default:
				other++
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("concurrent invocations hung")
	}
	if other != 0 || ok == 0 {
		t.Fatalf("100 concurrent: %d ok, %d 429, %d other", ok, busy, other)
	}
	t.Logf("100 concurrent: %d ok, %d 429", ok, busy)
}

// tarGz builds an archive from name → content (a trailing "/" makes a dir).
func tarGz(t *testing.T, files map[string]string, mutate func(*tar.Header)) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}
		if mutate != nil {
			mutate(h)
		}
		tw.WriteHeader(h)
		tw.Write([]byte(content))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestBadInput(t *testing.T) {
	n := startNode(t, t.TempDir())
	wasm, _ := os.ReadFile(guestWasm)
	good := "name: bad\nisolation: wasm\nmodule: guest.wasm\n"
	cases := []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"unknown field", tarGz(t, map[string]string{"hearth.yaml": good + "colour: blue\n", "guest.wasm": string(wasm)}, nil), 400, "colour"},
		{"bad name", tarGz(t, map[string]string{"hearth.yaml": strings.Replace(good, "name: bad", "name: Bad_Name", 1), "guest.wasm": string(wasm)}, nil), 400, "name"},
		{"bad memory", tarGz(t, map[string]string{"hearth.yaml": good + "memory: lots\n", "guest.wasm": string(wasm)}, nil), 400, "memory"},
		{"not wasm", tarGz(t, map[string]string{"hearth.yaml": good, "guest.wasm": "#!/bin/sh\necho hi\n"}, nil), 400, "guest.wasm"},
		{"missing module", tarGz(t, map[string]string{"hearth.yaml": good}, nil), 400, "guest.wasm"},
		{"path traversal", tarGz(t, map[string]string{"hearth.yaml": good, "../../evil": "x"}, nil), 400, "evil"},
		{"absolute path", tarGz(t, map[string]string{"hearth.yaml": good, "/etc/evil": "x"}, nil), 400, "evil"},
		{"symlink", tarGz(t, map[string]string{"hearth.yaml": good, "guest.wasm": ""}, func(h *tar.Header) {
			if h.Name == "guest.wasm" {
				h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, "/etc/passwd", 0
			}
		}), 400, "symlink"},
		{"not gzip", []byte("this is not an archive"), 400, "gzip"},
		{"no manifest", tarGz(t, map[string]string{"guest.wasm": string(wasm)}, nil), 400, "hearth.yaml"},
		{"name mismatch", tarGz(t, map[string]string{"hearth.yaml": strings.Replace(good, "name: bad", "name: other", 1), "guest.wasm": string(wasm)}, nil), 400, "URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := n.do("PUT", "/v1/functions/bad", bytes.NewReader(c.body), "Content-Type", "application/gzip")
			e := errCode(t, body)
			if resp.StatusCode != c.status || !strings.Contains(strings.ToLower(e.Message), strings.ToLower(c.want)) {
				t.Fatalf("got %d %s, want %d mentioning %q", resp.StatusCode, body, c.status, c.want)
			}
		})
	}
	t.Run("oversize upload", func(t *testing.T) {
		big := bytes.Repeat([]byte{0}, 65<<20)
		resp, body := n.do("PUT", "/v1/functions/bad", bytes.NewReader(big))
		if resp.StatusCode != 413 || errCode(t, body).Code != api.CodeTooLarge {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
	})
	t.Run("oversize invocation body", func(t *testing.T) {
		if out, err := n.cli("deploy", guestDir(t, "echo", "echo", "")); err != nil {
			t.Fatalf("deploy: %v\n%s", err, out)
		}
		resp, body := n.do("POST", "/fn/echo", bytes.NewReader(make([]byte, 6<<20+1)))
		if resp.StatusCode != 413 || errCode(t, body).Code != api.CodeTooLarge {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
		resp, body = n.do("POST", "/fn/echo", bytes.NewReader(make([]byte, 6<<20)))
		if resp.StatusCode != 200 || len(body) != 6<<20 {
			t.Fatalf("6 MiB body: %d, %d bytes back", resp.StatusCode, len(body))
		}
	})
	// Nothing half-written: only the one good function exists, and no
	// staging directories are left behind.
	resp, body := n.do("GET", "/v1/functions", nil)
	var list api.FunctionList
	if json.Unmarshal(body, &list); resp.StatusCode != 200 || len(list.Functions) != 1 || list.Functions[0].Name != "echo" {
		t.Fatalf("functions after bad deploys: %s", body)
	}
	ents, _ := os.ReadDir(filepath.Join(n.data, "functions"))
	if len(ents) != 1 {
		t.Fatalf("function dirs after bad deploys: %v", ents)
	}
	resp, body = n.do("GET", "/fn/nope", nil)
	if resp.StatusCode != 404 || !strings.Contains(errCode(t, body).Message, "nope") {
		t.Fatalf("unknown function: %d %s", resp.StatusCode, body)
	}
}

func TestAuthRequired(t *testing.T) {
	n := startNode(t, t.TempDir())
	routes := [][2]string{
		{"GET", "/v1/functions"}, {"GET", "/v1/functions/x"}, {"PUT", "/v1/functions/x"},
		{"DELETE", "/v1/functions/x"}, {"GET", "/v1/functions/x/logs"}, {"GET", "/v1/usage"},
		{"GET", "/v1/anything"}, {"GET", "/fn/x"}, {"POST", "/fn/x/deep/path"}, {"POST", "/async/fn/x"},
	}
	for _, r := range routes {
		for _, auth := range []string{"", "Bearer wrong", "Basic abc"} {
			resp, body := n.do(r[0], r[1], nil, "Authorization", auth)
			if resp.StatusCode != 401 || errCode(t, body).Code != api.CodeUnauthorized {
				t.Errorf("%s %s with %q: %d %s", r[0], r[1], auth, resp.StatusCode, body)
			}
		}
	}
	resp, _ := n.do("GET", "/healthz", nil, "Authorization", "")
	if resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	if info, err := os.Stat(filepath.Join(n.data, "admin.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("admin.key mode: %v %v", info.Mode(), err)
	}
	_ = context.Background
}

// TestDemo runs `hearth up --demo` and pastes every curl line it prints
// into a shell: each must answer 200.
func TestDemo(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (apt-get install curl)")
	}
	n := startNode(t, t.TempDir(), "--demo")
	waitUntilFor(t, "demo curl lines", 3*time.Minute, func() bool {
		return strings.Contains(n.stderr.String(), "hearth logs hello")
	})
	var lines []string
	for _, l := range strings.Split(n.stderr.String(), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "curl ") {
			lines = append(lines, l)
		}
	}
	all := strings.Join(lines, "\n")
	if len(lines) < 3 || !strings.Contains(all, "/fn/hello'") || !strings.Contains(all, "/fn/echo-c/") {
		t.Fatalf("demo printed %d curl lines:\n%s", len(lines), n.stderr.String())
	}
	for _, l := range lines {
		out, err := exec.Command("sh", "-c", l+" -sS").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 200") {
			t.Errorf("%s\n→ %v\n%s", l, err, out)
		}
	}
}

func waitUntilFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node started with --async-workers 0 queues asynchronous invocations but
// runs none; the same data directory served with workers runs them.
func TestQueueOnlyNode(t *testing.T) {
	data := t.TempDir()
	n := startNode(t, data, "--async-workers", "0")
	if out, err := n.cli("deploy", guestDir(t, "later", "env", "")); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	resp, body := n.do("POST", "/async/fn/later", strings.NewReader("x"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Hearth-Invocation-Id")
	status := func(n *node) string {
		var st api.InvocationStatus
		resp, body := n.do("GET", "/v1/invocations/"+id, nil)
		if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("status: %d %s", resp.StatusCode, body)
		}
		return st.Status
	}
	// Long enough for a worker to have started it several times over.
	time.Sleep(500 * time.Millisecond)
	if s := status(n); s != api.StatusQueued {
		t.Fatalf("on a node without workers the invocation is %q, want %q", s, api.StatusQueued)
	}
	n.stop(syscall.SIGTERM)

	n = startNode(t, data)
	waitUntil(t, "the queued invocation ran", func() bool { return status(n) == api.StatusSucceeded })
}
