package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// loadgenEnv makes the hearth binary a load generator (see MaybeRunLoad).
const loadgenEnv = "HEARTH_BENCH_LOADGEN"

// MaybeRunLoad turns this process into an out-of-process load generator
// when the bench started it so: it reads a Load as JSON on stdin, runs it
// and writes the Result as JSON on stdout, then exits. Called first thing
// in main; it returns at once otherwise.
//
// With the load generator in its own process, the CPU time of the bench
// process during a measurement is the servers' alone (the node, or a
// baseline proxy), which is what the forwarding figures compare.
func MaybeRunLoad() {
	if os.Getenv(loadgenEnv) != "1" {
		return
	}
	var l Load
	if err := json.NewDecoder(os.Stdin).Decode(&l); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	l.Process = false
	r := l.Run(context.Background(), NewClient(l.Concurrency))
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

// runProcess runs l in a child load-generator process.
func (l Load) runProcess(ctx context.Context) Result {
	exe, err := os.Executable()
	fail := func(err error) Result {
		return Result{Requests: 1, Errors: 1, Status: map[int]int{}, Err: err.Error()}
	}
	if err != nil {
		return fail(err)
	}
	in, err := json.Marshal(l)
	if err != nil {
		return fail(err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), loadgenEnv+"=1")
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fail(fmt.Errorf("load generator: %w: %s", err, errb.Bytes()))
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return fail(fmt.Errorf("load generator output: %w", err))
	}
	return r
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
