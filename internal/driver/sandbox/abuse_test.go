//go:build linux

package sandbox

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/driver"
)

// TestEscapeAttempts runs escape and abuse attempts inside one sandbox and
// checks each fails, while another instance keeps serving; with a user
// namespace per function (the default, where the kernel allows it) and
// without.
func TestEscapeAttempts(t *testing.T) {
	t.Run("default", func(t *testing.T) { escapeAttempts(t, newTestDriver(t, Config{PidsMax: 64})) })
	t.Run("no-userns", func(t *testing.T) { escapeAttempts(t, newTestDriver(t, Config{PidsMax: 64, refuseUserNS: true})) })
}

func escapeAttempts(t *testing.T, d *Driver) {
	bystander := startT(t, d, fnSpec("hello"))
	inst := startT(t, d, fnSpec("abuse"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hostIP := nonLoopbackIP()
	// setuid(0): no uid 0 exists in the function's user namespace; without
	// one, the function lacks CAP_SETUID.
	noRoot := "operation not permitted"
	if d.userNS {
		noRoot = "invalid argument"
	}

	for _, c := range []struct {
		name, path, arg string
		want            string // prefix of the answer: "err ..." or "ok ..."
		contains        string
	}{
		{"read /etc/shadow", "/read", "/etc/shadow", "err", "no such file"},
		{"read host repo", "/read", repoRoot() + "/go.mod", "err", "no such file"},
		{"read host root home", "/ls", "/root", "err", "no such file"},
		{"read host cgroups", "/ls", "/sys/fs/cgroup", "err", "no such file"},
		{"write /usr", "/write", "/usr/evil", "err", "read-only file system"},
		{"write /var/task", "/write", "/var/task/evil", "err", "read-only file system"},
		{"write /", "/write", "/evil", "err", "read-only file system"},
		{"write /etc", "/write", "/etc/passwd", "err", ""},
		{"write /tmp", "/write", "/tmp/fine", "ok", ""},
		{"only loopback", "/ifaces", "", "ok lo", ""},
		{"dial host port", "/dial", ln.Addr().String(), "err", "refused"},
		{"dial host address", "/dial", net.JoinHostPort(hostIP, "22"), "err", ""},
		{"mount", "/mount", "", "err", "operation not permitted"},
		{"ptrace", "/ptrace", "", "err", "operation not permitted"},
		{"unshare user namespace", "/unshare", "", "err", "operation not permitted"},
		{"become root", "/setuid", "", "err", noRoot},
		{"fill /tmp", "/fill", "", "err", "no space left on device"},
		{"fork bomb", "/forkbomb", "", "err", "resource temporarily unavailable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := call(t, inst, http.MethodGet, c.path, "arg="+c.arg, "")
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			got := string(resp.Body)
			if !strings.HasPrefix(got, c.want) || !strings.Contains(got, c.contains) {
				t.Errorf("got %q, want %q… containing %q", got, c.want, c.contains)
			}
		})
	}

	t.Run("host processes invisible", func(t *testing.T) {
		resp, err := call(t, inst, http.MethodGet, "/ls", "arg=/proc", "")
		if err != nil {
			t.Fatal(err)
		}
		var pids []string
		for _, f := range strings.Fields(strings.TrimPrefix(string(resp.Body), "ok ")) {
			if f[0] >= '0' && f[0] <= '9' {
				pids = append(pids, f)
			}
		}
		if len(pids) > 3 {
			t.Errorf("sandbox sees %d processes: %v", len(pids), pids)
		}
	})
	t.Run("unprivileged", func(t *testing.T) {
		resp, err := call(t, inst, http.MethodGet, "/status", "", "")
		if err != nil {
			t.Fatal(err)
		}
		s := string(resp.Body)
		for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000000",
			"CapBnd:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(s, want) {
				t.Errorf("/proc/self/status lacks %q:\n%s", want, s)
			}
		}
	})
	if resp, err := call(t, bystander, http.MethodGet, "/", "", ""); err != nil || string(resp.Body) != "hello" {
		t.Errorf("bystander: %v %q", err, respBody(resp))
	}
}

func nonLoopbackIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return "10.255.255.1"
}

// TestMemoryHog: the memory limit kills the sandbox with ErrMemoryLimit and
// the instance comes back.
func TestMemoryHog(t *testing.T) {
	d := newTestDriver(t, Config{})
	spec := fnSpec("oom")
	spec.MemoryBytes = 32 << 20
	inst := startT(t, d, spec)
	_, err := call(t, inst, http.MethodGet, "/", "", "")
	if !errors.Is(err, driver.ErrMemoryLimit) || !strings.Contains(err.Error(), "memory limit of 32 MiB") {
		t.Fatalf("err = %v, want ErrMemoryLimit naming 32 MiB", err)
	}
	if inst.(driver.HealthChecker).Healthy() {
		t.Error("Healthy after the memory limit killed the sandbox")
	}
}

// TestTimeoutKillsEverything: a function that ignores SIGTERM and spins is
// killed at the timeout with all its processes; the next invocation gets a
// fresh sandbox.
func TestTimeoutKillsEverything(t *testing.T) {
	d := newTestDriver(t, Config{})
	spec := fnSpec("ignore-term")
	spec.Timeout = 300 * time.Millisecond
	inst := startT(t, d, spec).(*Instance)
	inst.mu.Lock()
	first := inst.sb
	inst.mu.Unlock()
	start := time.Now()
	_, err := call(t, inst, http.MethodGet, "/", "", "")
	if !errors.Is(err, driver.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > spec.Timeout+500*time.Millisecond {
		t.Errorf("timed out after %v", el)
	}
	select {
	case <-first.done:
	case <-time.After(5 * time.Second):
		t.Fatal("sandbox still alive 5s after the timeout")
	}
	if inst.Healthy() {
		t.Error("Healthy after a timeout kill")
	}
	if n := childProcesses(); n != 0 {
		t.Errorf("%d sandbox processes left after the kill", n)
	}
	// The instance itself answers again, from a new sandbox (cold).
	spec2 := fnSpec("hello")
	inst2 := startT(t, d, spec2).(*Instance)
	inst2.mu.Lock()
	inst2.sb.kill("test")
	inst2.mu.Unlock()
	resp, err := call(t, inst2, http.MethodGet, "/", "", "")
	if err != nil || string(resp.Body) != "hello" || !resp.Cold {
		t.Errorf("after a kill: err=%v body=%q cold=%v", err, respBody(resp), resp != nil && resp.Cold)
	}
}

// TestStopReleasesEverything: no process, cgroup or mount survives Stop.
func TestStopReleasesEverything(t *testing.T) {
	d := newTestDriver(t, Config{})
	var insts []driver.Instance
	for range 5 {
		inst, err := d.Start(context.Background(), fnSpec("hello"))
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst)
	}
	if n := len(d.cg.children()); n == 0 {
		t.Fatal("no cgroups while instances run")
	}
	for _, in := range insts {
		if err := in.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitNoLeaks(d, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestPrepareValidates(t *testing.T) {
	d := newTestDriver(t, Config{})
	for _, c := range []struct {
		name string
		mod  func(*driver.Spec)
	}{
		{"missing", func(s *driver.Spec) { s.Command = []string{"./nope"} }},
		{"directory", func(s *driver.Spec) { s.Command = []string{"."} }},
		{"escape", func(s *driver.Spec) { s.Command = []string{"../fn/fn"} }},
		{"outside", func(s *driver.Spec) { s.Command = []string{"/root/x"} }},
		{"not installed", func(s *driver.Spec) { s.Command = []string{"no-such-interpreter"} }},
		{"protocol", func(s *driver.Spec) { s.Protocol = "wagi" }},
	} {
		spec := fnSpec("hello")
		c.mod(&spec)
		if err := d.Prepare(context.Background(), spec); !errors.Is(err, driver.ErrInvalidArtifact) {
			t.Errorf("%s: err = %v, want ErrInvalidArtifact", c.name, err)
		}
	}
	spec := fnSpec("hello")
	spec.AllowNet = true
	if _, err := d.Start(context.Background(), spec); !errors.Is(err, ErrNetworkUnsupported) {
		t.Errorf("AllowNet: err = %v", err)
	}
	if err := d.Prepare(context.Background(), fnSpec("hello")); err != nil {
		t.Errorf("valid spec: %v", err)
	}
}
