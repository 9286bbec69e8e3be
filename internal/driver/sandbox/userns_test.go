//go:build linux

package sandbox

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// hostIDs returns the real, effective, saved and file-system uids of pid as
// the host sees them (the Uid: line of /proc/PID/status).
func hostIDs(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no Uid: line for %d", pid)
	return ""
}

// functionPid returns the host pid of the function of inst (the process
// of its sandbox that is not the init).
func functionPid(t *testing.T, inst *Instance) (fn, init int) {
	t.Helper()
	inst.mu.Lock()
	sb := inst.sb
	inst.mu.Unlock()
	init = sb.cmd.Process.Pid
	for _, p := range sb.cg.procs() {
		if p != init {
			return p, init
		}
	}
	t.Fatal("no function process in the sandbox")
	return 0, 0
}

// TestUserNamespace: with Config.UserNS, the function runs as the mapped
// unprivileged host uid (never host root), the init as the mapped root,
// both in a user namespace of their own; inside, nothing gives the function
// more than before. The state directory may sit below a directory only root
// can search (a data directory under /root).
func TestUserNamespace(t *testing.T) {
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d := newTestDriver(t, Config{UserNS: true, StateDir: filepath.Join(private, "state"), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !d.userNS {
		t.Skipf("the kernel refused user namespaces: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "user namespaces on") {
		t.Errorf("no log line says user namespaces are on: %q", logs.String())
	}
	inst := startT(t, d, fnSpec("abuse")).(*Instance)
	fn, init := functionPid(t, inst)
	base := int(defaultUserNSBase)
	if got, want := hostIDs(t, fn), strings.Repeat(fmt.Sprint(base+65534)+" ", 4); got+" " != want {
		t.Errorf("the function's host uids are %q, want %q", got, want)
	}
	if got, want := hostIDs(t, init), strings.Repeat(fmt.Sprint(base)+" ", 4); got+" " != want {
		t.Errorf("the init's host uids are %q, want %q (the namespace's root, not host root)", got, want)
	}
	hostNS, _ := os.Readlink("/proc/self/ns/user")
	for _, pid := range []int{fn, init} {
		if ns, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/user"); ns == hostNS || ns == "" {
			t.Errorf("pid %d is in the host's user namespace (%s)", pid, ns)
		}
	}

	for _, c := range []struct{ path, arg, want string }{
		{"/cat", "/proc/self/uid_map", fmt.Sprintf("ok          0 %10d      65536", base)},
		{"/status", "", "ok Uid:\t65534\t65534\t65534\t65534"},
		{"/status", "", "CapEff:\t0000000000000000"},
		{"/setuid", "", "err operation not permitted"},
		{"/unshare", "", "err operation not permitted"},
		{"/write", "/tmp/mine", "ok"},
		{"/read", "/dev/null", "ok 0 bytes"},
	} {
		resp, err := call(t, inst, http.MethodGet, c.path, "arg="+c.arg, "")
		if err != nil || !strings.Contains(string(resp.Body), c.want) {
			t.Errorf("%s %s: %v %q, want %q", c.path, c.arg, err, respBody(resp), c.want)
		}
	}
	// What the function writes belongs to its mapped host uid.
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(fn)+"/root/tmp/mine", &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uint32(base+65534) {
		t.Errorf("a file the function wrote is owned by host uid %d, want %d", st.Uid, base+65534)
	}

	// A function on its own root file system, too.
	dir := t.TempDir()
	writeImage(t, dir, "image.tar.gz", testImage(t)...)
	img := startT(t, d, imageSpec(dir))
	if resp, err := call(t, img, http.MethodGet, "/cat", "arg=/etc/os-release", ""); err != nil || string(resp.Body) != "ok "+imageOSRelease {
		t.Errorf("image in a user namespace: %v %q", err, respBody(resp))
	}
}

// TestUserNamespaceFallback: when the kernel refuses user namespaces, the
// driver says so in its log and runs sandboxes without them.
func TestUserNamespaceFallback(t *testing.T) {
	var logs bytes.Buffer
	d := newTestDriver(t, Config{UserNS: true, refuseUserNS: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if d.userNS || !strings.Contains(logs.String(), "user namespaces unavailable") {
		t.Fatalf("userNS = %v, log %q", d.userNS, logs.String())
	}
	inst := startT(t, d, fnSpec("abuse")).(*Instance)
	fn, _ := functionPid(t, inst)
	if got := hostIDs(t, fn); got != "65534 65534 65534 65534" {
		t.Errorf("without a user namespace the function runs as host uids %q, want nobody", got)
	}
}
