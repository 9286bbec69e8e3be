package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/manifest"
)

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return nil
}

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testManifest(name string) manifest.Manifest {
	return manifest.Manifest{
		Name:        name,
		Isolation:   manifest.IsolationWasm,
		Protocol:    manifest.ProtocolWagi,
		Module:      "hello.wasm",
		Memory:      manifest.DefaultMemory,
		Timeout:     manifest.Duration(manifest.DefaultTimeout),
		Concurrency: 1,
		Scale:       manifest.Scale{Max: manifest.DefaultScaleMax},
		Env:         map[string]string{"GREETING": "hello"},
	}
}

func put(t testing.TB, s *Store, name, content string) api.Version {
	t.Helper()
	v, err := s.PutVersion(testCtx(t), testManifest(name), strings.NewReader(content))
	if err != nil {
		t.Fatalf("PutVersion(%s): %v", name, err)
	}
	return v
}

func objectNames(t testing.TB, s *Store) []string {
	t.Helper()
	objs, err := s.obj.List(testCtx(t))
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("List objects: %v", err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.Name)
	}
	slices.Sort(names)
	return names
}

func TestRegistry(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)

	if _, err := s.Function(ctx, "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Function before deploy: err = %v, want ErrNotFound", err)
	}
	fns, err := s.Functions(ctx)
	if err != nil || len(fns) != 0 {
		t.Fatalf("Functions on empty store = %v, %v", fns, err)
	}

	for i, content := range []string{"one", "two", "three"} {
		v := put(t, s, "hello", content)
		sum := sha256.Sum256([]byte(content))
		if v.Number != i+1 || v.Digest != hex.EncodeToString(sum[:]) || v.Size != int64(len(content)) || v.Function != "hello" {
			t.Fatalf("version %d = %+v", i+1, v)
		}
		if v.CreatedAt.IsZero() || v.CreatedAt.Location() != time.UTC {
			t.Fatalf("CreatedAt = %v, want UTC now", v.CreatedAt)
		}
	}
	put(t, s, "alpha", "a")

	fn, err := s.Function(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if fn.Name != "hello" || fn.Latest != 3 || len(fn.Versions) != 3 || fn.Status != nil {
		t.Fatalf("Function = %+v", fn)
	}
	for i, v := range fn.Versions {
		if v.Number != i+1 {
			t.Fatalf("versions out of order: %+v", fn.Versions)
		}
	}
	if got := fn.Versions[2].Manifest; got.Name != "hello" || got.Memory != manifest.DefaultMemory || got.Env["GREETING"] != "hello" {
		t.Fatalf("manifest did not round-trip: %+v", got)
	}
	if fn.CreatedAt.IsZero() || fn.UpdatedAt.Before(fn.CreatedAt) {
		t.Fatalf("timestamps: created %v updated %v", fn.CreatedAt, fn.UpdatedAt)
	}

	data, err := s.Artifact(ctx, "hello", 2)
	if err != nil || string(data) != "two" {
		t.Fatalf("Artifact(hello, 2) = %q, %v", data, err)
	}
	if _, err := s.Artifact(ctx, "hello", 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Artifact of missing version: err = %v", err)
	}

	fns, err = s.Functions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 2 || fns[0].Name != "alpha" || fns[1].Name != "hello" {
		t.Fatalf("Functions = %+v", fns)
	}

	n, err := s.DeleteFunction(ctx, "hello")
	if err != nil || n != 3 {
		t.Fatalf("DeleteFunction = %d, %v", n, err)
	}
	if _, err := s.Function(ctx, "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Function after delete: err = %v", err)
	}
	if _, err := s.DeleteFunction(ctx, "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteFunction: err = %v", err)
	}
	if got := objectNames(t, s); !slices.Equal(got, []string{"alpha/v1"}) {
		t.Fatalf("objects after delete = %v, want [alpha/v1]", got)
	}
	fns, _ = s.Functions(ctx)
	if len(fns) != 1 || fns[0].Name != "alpha" {
		t.Fatalf("Functions after delete = %+v", fns)
	}

	// A re-created function starts again at 1.
	if v := put(t, s, "hello", "again"); v.Number != 1 {
		t.Fatalf("re-created function got version %d", v.Number)
	}
}

func TestInvalidName(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)
	for _, name := range []string{"", "Hello", "a.b", "a*", "a>", strings.Repeat("a", 64)} {
		if _, err := s.PutVersion(ctx, testManifest(name), strings.NewReader("x")); !errors.Is(err, ErrInvalidName) {
			t.Errorf("PutVersion(%q): err = %v, want ErrInvalidName", name, err)
		}
	}
}

func TestConcurrentPutVersion(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)
	const n = 10
	var wg sync.WaitGroup
	versions := make([]api.Version, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			versions[i], errs[i] = s.PutVersion(ctx, testManifest("race"), strings.NewReader(fmt.Sprintf("content %d", i)))
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("PutVersion %d: %v", i, errs[i])
		}
		seen[versions[i].Number] = true
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct versions, want %d: %+v", len(seen), n, versions)
	}
	fn, err := s.Function(ctx, "race")
	if err != nil {
		t.Fatal(err)
	}
	if len(fn.Versions) != n || fn.Latest != n {
		t.Fatalf("function has %d versions, latest %d", len(fn.Versions), fn.Latest)
	}
	// Every version's artifact is its own content.
	for i, v := range versions {
		data, err := s.Artifact(ctx, "race", v.Number)
		if err != nil || string(data) != fmt.Sprintf("content %d", i) {
			t.Fatalf("Artifact(race, %d) = %q, %v", v.Number, data, err)
		}
	}
	if got := len(objectNames(t, s)); got != n {
		t.Fatalf("%d objects, want %d", got, n)
	}
}

func TestArtifactDigestMismatch(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)
	put(t, s, "hello", "original")
	if _, err := s.obj.PutBytes(ctx, ObjectName("hello", 1), []byte("tampered")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Artifact(ctx, "hello", 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Artifact of tampered object: err = %v, want ErrCorrupt", err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestPutVersionFailedUploadLeavesNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)
	if _, err := s.PutVersion(ctx, testManifest("hello"), &failingReader{n: 300 << 10}); err == nil {
		t.Fatal("PutVersion with failing reader succeeded")
	}
	if _, err := s.Function(ctx, "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Function after failed deploy: err = %v", err)
	}
	if got := objectNames(t, s); len(got) != 0 {
		t.Fatalf("objects after failed deploy: %v", got)
	}
	if keys, _ := s.kv.Keys(ctx); len(keys) != 0 {
		t.Fatalf("registry keys after failed deploy: %v", keys)
	}
	// The next deploy works and gets a fresh number.
	if v := put(t, s, "hello", "ok"); v.Number != 1 {
		t.Fatalf("version after failed first deploy = %d", v.Number)
	}
	if _, err := s.PutVersion(ctx, testManifest("hello"), &failingReader{n: 10}); err == nil {
		t.Fatal("PutVersion with failing reader succeeded")
	}
	if v := put(t, s, "hello", "ok"); v.Number != 3 {
		t.Fatalf("version after failed deploy = %d, want 3 (2 is burned)", v.Number)
	}
	if got := objectNames(t, s); !slices.Equal(got, []string{"hello/v1", "hello/v3"}) {
		t.Fatalf("objects = %v", got)
	}
}

func TestWatchFunctions(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx, cancel := context.WithCancel(testCtx(t))
	ch, err := s.WatchFunctions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "hello", "x")
	wait := func(want string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Fatalf("watch sent %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification for %s", want)
		}
	}
	wait("hello")
	if _, err := s.DeleteFunction(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	// Drain until the delete shows up (a deploy changes the record twice).
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case name := <-ch:
			if name != "hello" {
				t.Fatalf("watch sent %q", name)
			}
			if _, err := s.Function(ctx, "hello"); errors.Is(err, ErrNotFound) {
				seen = true
			}
		case <-deadline:
			t.Fatal("no notification for delete")
		}
	}
	cancel()
	for range ch {
	}
}

func logEntry(fn string, i int) api.LogEntry {
	return api.LogEntry{
		Time:         time.Now().UTC(),
		Function:     fn,
		Version:      1,
		InvocationID: fmt.Sprintf("inv-%d", i),
		Stream:       "stdout",
		Line:         fmt.Sprintf("line %d", i),
	}
}

func collectLogs(t *testing.T, s *Store, q LogQuery) []string {
	t.Helper()
	var lines []string
	err := s.Logs(testCtx(t), q, func(e api.LogEntry) error {
		if e.Function != q.Function {
			t.Errorf("entry of %s in logs of %s", e.Function, q.Function)
		}
		lines = append(lines, e.Line)
		return nil
	})
	if err != nil {
		t.Fatalf("Logs(%+v): %v", q, err)
	}
	return lines
}

func lineRange(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("line %d", i))
	}
	return out
}

func TestLogs(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)

	if got := collectLogs(t, s, LogQuery{Function: "hello"}); len(got) != 0 {
		t.Fatalf("logs of function without logs: %v", got)
	}

	// Interleave two functions so the tail search has gaps to skip.
	for i := range 250 {
		s.AppendLog(logEntry("hello", i))
		s.AppendLog(logEntry("other", i))
		if i%3 == 0 {
			s.AppendLog(logEntry("third", i))
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	if got := collectLogs(t, s, LogQuery{Function: "hello"}); !slices.Equal(got, lineRange(150, 250)) {
		t.Fatalf("default tail: got %d lines %v…", len(got), got[:min(3, len(got))])
	}
	for _, tail := range []int{1, 7, 249, 250} {
		if got := collectLogs(t, s, LogQuery{Function: "hello", Tail: tail}); !slices.Equal(got, lineRange(250-tail, 250)) {
			t.Fatalf("tail %d: got %d lines starting %v", tail, len(got), got[:min(3, len(got))])
		}
	}
	if got := collectLogs(t, s, LogQuery{Function: "other", Tail: 1000}); !slices.Equal(got, lineRange(0, 250)) {
		t.Fatalf("tail beyond count: got %d lines", len(got))
	}
	if got := collectLogs(t, s, LogQuery{Function: "hello", Tail: -1}); len(got) != 250 {
		t.Fatalf("tail -1: got %d lines", len(got))
	}
	if got := collectLogs(t, s, LogQuery{Function: "hello", Since: time.Now().Add(time.Hour)}); len(got) != 0 {
		t.Fatalf("since the future: got %d lines", len(got))
	}
	if got := collectLogs(t, s, LogQuery{Function: "hello", Since: time.Now().Add(-time.Hour)}); len(got) != 250 {
		t.Fatalf("since an hour ago: got %d lines", len(got))
	}

	// fn's error ends Logs and is returned.
	stopErr := errors.New("enough")
	n := 0
	err := s.Logs(ctx, LogQuery{Function: "hello"}, func(api.LogEntry) error {
		if n++; n == 3 {
			return stopErr
		}
		return nil
	})
	if !errors.Is(err, stopErr) || n != 3 {
		t.Fatalf("Logs with failing fn: n=%d err=%v", n, err)
	}
}

func TestLogsFollow(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)
	for i := range 5 {
		s.AppendLog(logEntry("hello", i))
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Logs(fctx, LogQuery{Function: "hello", Tail: 2, Follow: true}, func(e api.LogEntry) error {
			got <- e.Line
			return nil
		})
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case line := <-got:
			if line != want {
				t.Fatalf("follow got %q, want %q", line, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("follow: no %q", want)
		}
	}
	expect("line 3")
	expect("line 4")
	s.AppendLog(logEntry("other", 5))
	s.AppendLog(logEntry("hello", 6))
	expect("line 6")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Logs(follow) after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs(follow) did not return after cancel")
	}

	// Following a function without logs yet sees its first entry.
	fctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- s.Logs(fctx, LogQuery{Function: "fresh", Follow: true}, func(e api.LogEntry) error {
			got <- e.Line
			return errors.New("one is enough")
		})
	}()
	time.Sleep(50 * time.Millisecond) // let the consumer start; the entry must arrive either way
	s.AppendLog(logEntry("fresh", 9))
	expect("line 9")
	if err := <-done; err == nil || !strings.Contains(err.Error(), "one is enough") {
		t.Fatalf("Logs(follow) = %v, want fn's error", err)
	}
}

func invocation(fn string, start time.Time, billedMs int64, status int, errMsg string) api.Invocation {
	return api.Invocation{
		ID:         fmt.Sprintf("%s-%d", fn, start.UnixNano()),
		Function:   fn,
		Version:    1,
		Start:      start,
		DurationMs: float64(billedMs) - 0.5,
		BilledMs:   billedMs,
		MemoryMB:   128,
		GBSeconds:  0.125 * float64(billedMs) / 1000,
		Status:     status,
		Error:      errMsg,
	}
}

func TestUsage(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx := testCtx(t)

	if u, err := s.Usage(ctx, time.Time{}, time.Time{}); err != nil || len(u) != 0 {
		t.Fatalf("Usage of empty store = %v, %v", u, err)
	}

	t0 := time.Now().UTC().Truncate(time.Second)
	// Records are stored now, but their Start spreads over the past hour.
	for i := range 60 {
		start := t0.Add(-time.Hour + time.Duration(i)*time.Minute)
		s.RecordInvocation(invocation("hello", start, 10, 200, ""))
		if i%2 == 0 {
			s.RecordInvocation(invocation("world", start, 100, 502, "crashed"))
		}
	}
	s.RecordInvocation(invocation("hello", t0.Add(-time.Hour+30*time.Minute), 1, 500, ""))
	s.RecordInvocation(invocation("hello", t0.Add(-time.Hour+30*time.Minute), 1, 200, "timeout"))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	all, err := s.Usage(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.FunctionUsage{
		{Function: "hello", Invocations: 62, Errors: 2, BilledMs: 602, GBSeconds: 0.125 * 0.602},
		{Function: "world", Invocations: 30, Errors: 30, BilledMs: 3000, GBSeconds: 0.125 * 3},
	}
	checkUsage(t, "all", all, want)

	// [t0-1h+10m, t0-1h+20m): minutes 10..19 for hello, 10,12,..,18 for world.
	win, err := s.Usage(ctx, t0.Add(-50*time.Minute), t0.Add(-40*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	checkUsage(t, "window", win, []api.FunctionUsage{
		{Function: "hello", Invocations: 10, BilledMs: 100, GBSeconds: 0.125 * 0.1},
		{Function: "world", Invocations: 5, Errors: 5, BilledMs: 500, GBSeconds: 0.125 * 0.5},
	})

	// A window in the future, and one that ends before any record starts.
	if u, err := s.Usage(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour)); err != nil || len(u) != 0 {
		t.Fatalf("future window = %v, %v", u, err)
	}
	if u, err := s.Usage(ctx, t0.Add(-3*time.Hour), t0.Add(-2*time.Hour)); err != nil || len(u) != 0 {
		t.Fatalf("past window = %v, %v", u, err)
	}
}

func checkUsage(t *testing.T, name string, got, want []api.FunctionUsage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: usage = %+v, want %+v", name, got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Function != w.Function || g.Invocations != w.Invocations || g.Errors != w.Errors || g.BilledMs != w.BilledMs ||
			g.GBSeconds < w.GBSeconds-1e-9 || g.GBSeconds > w.GBSeconds+1e-9 {
			t.Fatalf("%s: usage[%d] = %+v, want %+v", name, i, g, w)
		}
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "hello", "v1")
	put(t, s, "hello", "v2")
	s.AppendLog(logEntry("hello", 1))
	s.RecordInvocation(invocation("hello", time.Now().UTC(), 5, 200, ""))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openStore(t, dir)
	checkPersisted(t, s, 2)
	if v := put(t, s, "hello", "v3"); v.Number != 3 {
		t.Fatalf("version after reopen = %d", v.Number)
	}
}

func checkPersisted(t *testing.T, s *Store, versions int) {
	t.Helper()
	ctx := testCtx(t)
	fn, err := s.Function(ctx, "hello")
	if err != nil {
		t.Fatalf("Function after restart: %v", err)
	}
	if fn.Latest != versions || len(fn.Versions) != versions {
		t.Fatalf("after restart: %+v", fn)
	}
	data, err := s.Artifact(ctx, "hello", versions)
	if err != nil || string(data) != fmt.Sprintf("v%d", versions) {
		t.Fatalf("Artifact after restart = %q, %v", data, err)
	}
	if lines := collectLogs(t, s, LogQuery{Function: "hello", Tail: 1}); len(lines) != 1 {
		t.Fatalf("logs after restart: %v", lines)
	}
	u, err := s.Usage(ctx, time.Time{}, time.Time{})
	i := slices.IndexFunc(u, func(f api.FunctionUsage) bool { return f.Function == "hello" })
	if err != nil || i < 0 || u[i].Invocations != 1 {
		t.Fatalf("usage after restart = %+v, %v", u, err)
	}
}

const helperEnv = "HEARTH_STORE_TEST_HELPER_DIR"

// TestHelperProcess is the child of TestCrashPersistence: it deploys, records,
// flushes, says "ready" and keeps writing logs until it is killed.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashPersistence")
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	for i := 1; i <= 2; i++ {
		if _, err := s.PutVersion(ctx, testManifest("hello"), strings.NewReader(fmt.Sprintf("v%d", i))); err != nil {
			fmt.Println("put:", err)
			os.Exit(1)
		}
	}
	s.RecordInvocation(invocation("hello", time.Now().UTC(), 5, 200, ""))
	s.AppendLog(logEntry("hello", 0))
	if err := s.Flush(ctx); err != nil {
		fmt.Println("flush:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for i := 1; ; i++ { // be busy writing when the kill comes
		s.AppendLog(logEntry("busy", i))
		s.RecordInvocation(invocation("busy", time.Now().UTC(), 1, 200, ""))
		if i%1000 == 0 {
			_ = s.Flush(ctx)
		}
	}
}

func TestCrashPersistence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var seen bytes.Buffer
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- nil
				_, _ = io.Copy(io.Discard, out)
				return
			}
			seen.WriteString(sc.Text() + "\n")
		}
		ready <- fmt.Errorf("child exited before ready: %s", seen.String())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("child not ready")
	}
	time.Sleep(100 * time.Millisecond)         // let it write a while
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s := openStore(t, dir)
	checkPersisted(t, s, 2)
	// The store is fully usable after recovery.
	if v := put(t, s, "hello", "v3"); v.Number != 3 {
		t.Fatalf("version after crash = %d", v.Number)
	}
}

func TestOpenRequiresDirOrURL(t *testing.T) {
	if _, err := Open(context.Background(), Options{}); err == nil {
		t.Fatal("Open without Dir or URL succeeded")
	}
}

func TestWatchAfterClose(t *testing.T) {
	s, err := Open(testCtx(t), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WatchFunctions(context.Background()); err == nil {
		t.Fatal("WatchFunctions after Close succeeded")
	}
}

// TestExternalURL runs the store against a separate NATS server reached over
// TCP, the way a node joins an external cluster.
func TestExternalURL(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	s, err := Open(testCtx(t), Options{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t)
	put(t, s, "hello", "v1")
	s.RecordInvocation(invocation("hello", time.Now().UTC(), 5, 200, ""))
	s.AppendLog(logEntry("hello", 1))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkPersisted(t, s, 1)
}
