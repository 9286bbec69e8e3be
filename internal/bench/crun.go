package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// crunRunner starts a program with `crun run` for the cold-start
// comparison.
//
// crun refuses hosts whose cgroup2 mount holds controllers next to cgroup v1
// ("cgroups in hybrid mode not supported"), as this one does. So crun runs
// from a shell in a private mount namespace without that mount: the shell
// reads commands on stdin and starts `crun run` in the background, as a Go
// program would exec it. Nothing changes on the host.
type crunRunner struct {
	crun   string
	bundle string
	sh     *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	n      int
}

// newCrunRunner prepares a bundle whose root filesystem holds only the
// static binary bin, read-only. The container keeps crun's default pid,
// ipc, uts and mount namespaces, but shares the host's network, so that its
// port can be polled like the plain process's (Hearth's sandboxes have a
// network namespace more).
func newCrunRunner(ctx context.Context, work, bin string) (*crunRunner, error) {
	crun, err := exec.LookPath("crun")
	if err != nil {
		return nil, err
	}
	bundle, err := os.MkdirTemp(work, "crun-")
	if err != nil {
		return nil, err
	}
	r := &crunRunner{crun: crun, bundle: bundle}
	if err := r.prepare(ctx, bin); err != nil {
		os.RemoveAll(bundle)
		return nil, err
	}
	r.sh = exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`umount /sys/fs/cgroup/unified 2>/dev/null; while read -r line; do eval "$line"; done`)
	r.sh.Dir = bundle
	if r.in, err = r.sh.StdinPipe(); err != nil {
		os.RemoveAll(bundle)
		return nil, err
	}
	stdout, err := r.sh.StdoutPipe()
	if err != nil {
		os.RemoveAll(bundle)
		return nil, err
	}
	r.out = bufio.NewReader(stdout)
	if err := r.sh.Start(); err != nil {
		os.RemoveAll(bundle)
		return nil, err
	}
	return r, nil
}

func (r *crunRunner) prepare(ctx context.Context, bin string) error {
	if err := os.MkdirAll(filepath.Join(r.bundle, "rootfs"), 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.bundle, "rootfs", "server"), data, 0o755); err != nil {
		return err
	}
	spec := exec.CommandContext(ctx, r.crun, "spec")
	spec.Dir = r.bundle
	if out, err := spec.CombinedOutput(); err != nil {
		return fmt.Errorf("crun spec: %w: %s", err, out)
	}
	return nil
}

// configure writes config.json for a run on port.
func (r *crunRunner) configure(port int) error {
	path := filepath.Join(r.bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	proc, _ := c["process"].(map[string]any)
	root, _ := c["root"].(map[string]any)
	linux, _ := c["linux"].(map[string]any)
	if proc == nil || root == nil || linux == nil {
		return errors.New("crun spec: unexpected config.json")
	}
	proc["terminal"] = false
	proc["args"] = []string{"/server"}
	proc["env"] = []string{"PATH=/", "PORT=" + strconv.Itoa(port)}
	root["readonly"] = true
	nss, _ := linux["namespaces"].([]any)
	var keep []any
	for _, ns := range nss {
		if m, _ := ns.(map[string]any); m["type"] != "network" {
			keep = append(keep, ns)
		}
	}
	linux["namespaces"] = keep
	out, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// start runs the container in the background and returns the time until
// the server answered on port.
func (r *crunRunner) start(ctx context.Context, port int) (time.Duration, error) {
	if err := r.configure(port); err != nil {
		return 0, err
	}
	r.n++
	id := fmt.Sprintf("hearth-bench-%d-%d", os.Getpid(), r.n)
	t0 := time.Now()
	if _, err := fmt.Fprintf(r.in, "%s run --bundle . %s </dev/null >/dev/null 2>crun.err &\n", r.crun, id); err != nil {
		return 0, err
	}
	err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", port))
	dt := time.Since(t0)
	// Remove the container, then wait for the shell to say so.
	fmt.Fprintf(r.in, "%s delete --force %s >/dev/null 2>&1; echo done\n", r.crun, id)
	if _, rerr := r.out.ReadString('\n'); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		msg, _ := os.ReadFile(filepath.Join(r.bundle, "crun.err"))
		return 0, fmt.Errorf("crun run: %w: %s", err, msg)
	}
	return dt, nil
}

func (r *crunRunner) close() {
	r.in.Close()
	r.sh.Wait()
	os.RemoveAll(r.bundle)
}
