package async

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
)

const crashN = 1000

// TestCrashRestart queues 1,000 invocations, kills the process with SIGKILL
// while they run, restarts it on the same data directory and checks that
// none is lost, that a function deduplicating by invocation id observes each
// exactly once, and that nothing that had finished before the kill runs
// again. The process that is killed is this test binary, re-executed to run
// TestCrashChild.
func TestCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a child process; skipped with -short")
	}
	dir := t.TempDir()
	child := func(phase int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.timeout=5m")
		cmd.Env = append(os.Environ(), "HEARTH_ASYNC_CHILD="+dir, "HEARTH_ASYNC_PHASE="+strconv.Itoa(phase))
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("output-%d", phase)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { out.Close() })
		cmd.Stdout, cmd.Stderr = out, out
		return cmd
	}
	output := func(phase int) string {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("output-%d", phase)))
		return string(b)
	}

	// Phase 1: enqueue and run until about a third has finished, then kill -9.
	cmd := child(1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(readIDs(t, dir, "done-1")) < crashN/3 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("phase 1 made no progress; output:\n%s", output(1))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	enq1 := readIDs(t, dir, "enq-1")
	done1 := readIDs(t, dir, "done-1")
	runs1 := readIDs(t, dir, "runs-1")
	t.Logf("at the kill: %d enqueued, %d started, %d finished", len(enq1), len(runs1), len(done1))

	// Phase 2: restart on the same directory; re-enqueue all keys (the
	// ones already queued must dedupe) and wait for all to succeed.
	cmd = child(2)
	if err := cmd.Run(); err != nil {
		t.Fatalf("phase 2: %v; output:\n%s", err, output(2))
	}
	enq2 := readIDs(t, dir, "enq-2")
	runs2 := readIDs(t, dir, "runs-2")
	final := readIDs(t, dir, "succeeded-2")

	if len(enq2) != crashN || len(final) != crashN {
		t.Fatalf("phase 2 enqueued %d and saw %d succeed, want %d", len(enq2), len(final), crashN)
	}
	for id := range enq1 {
		if !enq2[id] {
			t.Errorf("id %s of phase 1 came back different for the same idempotency key", id)
		}
	}
	observed := map[string]bool{} // what a function deduplicating by id sees
	for id := range runs1 {
		observed[id] = true
	}
	again := 0
	for id := range runs2 {
		if done1[id] {
			t.Errorf("invocation %s finished before the kill but ran again", id)
		}
		if observed[id] {
			again++ // was running at the kill: redelivered with the same id
		}
		observed[id] = true
	}
	for id := range enq2 {
		if !observed[id] {
			t.Errorf("invocation %s never ran", id)
		}
		if !final[id] {
			t.Errorf("invocation %s did not succeed", id)
		}
	}
	if len(observed) != crashN {
		t.Errorf("the function observed %d distinct ids, want %d", len(observed), crashN)
	}
	t.Logf("after restart: %d ran, %d of them redelivered after being cut off by the kill", len(runs2), again)
}

// readIDs reads a file of one id per line as a set.
func readIDs(t *testing.T, dir, name string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		if os.IsNotExist(err) {
			return ids
		}
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); len(line) == 24 { // a torn last line is ignored
			ids[line] = true
		}
	}
	return ids
}

// idLog appends ids to a file, one write per line, so a line is whole when
// the process is killed (the page cache survives the process).
type idLog struct {
	mu sync.Mutex
	f  *os.File
}

func openIDLog(t *testing.T, path string) *idLog {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return &idLog{f: f}
}

func (l *idLog) add(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteString(id + "\n"); err != nil {
		panic(err)
	}
}

// TestCrashChild is the process TestCrashRestart kills and restarts.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("HEARTH_ASYNC_CHILD")
	if dir == "" {
		t.Skip("run by TestCrashRestart")
	}
	phase := os.Getenv("HEARTH_ASYNC_PHASE")
	st := openStore(t, filepath.Join(dir, "data"))
	defer st.Close()
	runs := openIDLog(t, filepath.Join(dir, "runs-"+phase))
	done := openIDLog(t, filepath.Join(dir, "done-"+phase))
	enq := openIDLog(t, filepath.Join(dir, "enq-"+phase))

	q, err := New(context.Background(), Config{
		JS: st.JetStream(),
		Invoke: func(ctx context.Context, fn string, req *driver.Request) (*driver.Response, error) {
			runs.add(req.ID)
			time.Sleep(3 * time.Millisecond)
			return &driver.Response{Status: http.StatusOK, Body: []byte(req.ID)}, nil
		},
		Policy:           newFakeFuncs().policyAll,
		Workers:          8,
		AckWait:          2 * time.Second,
		testHookFinished: done.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	q.Start()
	ids := make([]string, 0, crashN)
	for i := range crashN {
		a, err := q.Enqueue(context.Background(), Request{Function: "work", Method: "POST", IdempotencyKey: fmt.Sprint("key-", i), Body: []byte(strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		enq.add(a.ID)
		ids = append(ids, a.ID)
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let the kill land during enqueueing too
		}
	}
	if phase == "1" {
		select {} // until killed
	}
	succeeded := openIDLog(t, filepath.Join(dir, "succeeded-"+phase))
	waitFor(t, 2*time.Minute, "all invocations to succeed", func() bool {
		for len(ids) > 0 {
			s, err := q.Status(context.Background(), ids[0])
			if err != nil || s.Status != api.StatusSucceeded {
				return false
			}
			succeeded.add(ids[0])
			ids = ids[1:]
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
