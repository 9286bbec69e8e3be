//go:build linux

package sandbox

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procIDs returns the real, effective, saved and file-system ids of pid as
// the host sees them (the Uid: or Gid: line of /proc/PID/status).
func procIDs(t *testing.T, pid int, line string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, line+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s: line for %d", line, pid)
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

// userNSOwner returns the owner (the creator's effective uid) of pid's user
// namespace.
func userNSOwner(t *testing.T, pid int) uint32 {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var uid uint32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.NS_GET_OWNER_UID, uintptr(unsafe.Pointer(&uid))); e != 0 {
		t.Fatalf("NS_GET_OWNER_UID: %v", e)
	}
	return uid
}

// TestUserNamespace: by default each function runs in a user namespace of
// its own, as a host uid and gid no other sandbox has (never host root nor
// the host's nobody), which also owns the namespace; the init stays root in
// the host's user namespace. Inside, the function is nobody with nothing
// more than before. The state directory may sit below a directory only
// root can search (a data directory under /root).
func TestUserNamespace(t *testing.T) {
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d := newTestDriver(t, Config{StateDir: filepath.Join(private, "state"), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !d.userNS {
		t.Skipf("the kernel refused user namespaces: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "user namespaces on") {
		t.Errorf("no log line says user namespaces are on: %q", logs.String())
	}
	inst := startT(t, d, fnSpec("abuse")).(*Instance)
	other := startT(t, d, fnSpec("abuse")).(*Instance)
	fn, init := functionPid(t, inst)
	fn2, _ := functionPid(t, other)
	inst.mu.Lock()
	id := int(inst.sb.hostID)
	inst.mu.Unlock()
	if id < defaultUserNSBase || id >= defaultUserNSBase+userNSSize {
		t.Fatalf("host id %d is outside the range from UserNSBase", id)
	}
	want := strings.TrimSpace(strings.Repeat(strconv.Itoa(id)+" ", 4))
	for _, line := range []string{"Uid", "Gid"} {
		got := procIDs(t, fn, line)
		if got != want {
			t.Errorf("the function's host %ss are %q, want %q", line, got, want)
		}
		for _, bad := range []string{"0", "65534"} {
			if slices.Contains(strings.Fields(got), bad) {
				t.Errorf("the function runs with host %s %s", line, bad)
			}
		}
	}
	if got := procIDs(t, fn2, "Uid"); got == procIDs(t, fn, "Uid") {
		t.Errorf("two sandboxes' functions share host uid %s", got)
	}
	if got := procIDs(t, init, "Uid"); got != "0 0 0 0" {
		t.Errorf("the init's host uids are %q, want root's", got)
	}
	if owner := userNSOwner(t, fn); owner != uint32(id) {
		t.Errorf("the function's user namespace is owned by host uid %d, want its own %d (per-user limits are the owner's)", owner, id)
	}
	hostNS, _ := os.Readlink("/proc/self/ns/user")
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(fn) + "/ns/user"); ns == hostNS || ns == "" {
		t.Errorf("the function is in the host's user namespace (%s)", ns)
	}
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(init) + "/ns/user"); ns != hostNS {
		t.Errorf("the init is in user namespace %s, want the host's %s", ns, hostNS)
	}

	for _, c := range []struct{ path, arg, want string }{
		{"/cat", "/proc/self/uid_map", fmt.Sprintf("ok      65534 %10d          1\n", id)},
		{"/cat", "/proc/self/gid_map", fmt.Sprintf("ok      65534 %10d          1\n", id)},
		{"/cat", "/proc/self/setgroups", "ok deny\n"},
		{"/status", "", "ok Uid:\t65534\t65534\t65534\t65534"},
		{"/status", "", "CapPrm:\t0000000000000000"},
		{"/status", "", "CapEff:\t0000000000000000"},
		{"/status", "", "CapBnd:\t0000000000000000"},
		{"/status", "", "CapAmb:\t0000000000000000"},
		{"/status", "", "NoNewPrivs:\t1"},
		{"/setuid", "", "err invalid argument"}, // no uid 0 in its namespace
		{"/unshare", "", "err operation not permitted"},
		{"/write", "/tmp/mine", "ok"},
		{"/read", "/dev/null", "ok 0 bytes"},
		{"/read", "/var/task/fn", "ok "},
		{"/ls", "/proc/1", "ok "},
		{"/read", "/proc/1/environ", "err open /proc/1/environ: permission denied"}, // the init's
	} {
		resp, err := call(t, inst, http.MethodGet, c.path, "arg="+c.arg, "")
		if err != nil || !strings.HasPrefix(string(resp.Body), c.want) && !strings.Contains(string(resp.Body), "\n"+c.want) {
			t.Errorf("%s %s: %v %q, want %q", c.path, c.arg, err, respBody(resp), c.want)
		}
	}
	// What the function writes belongs to its host uid.
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(fn)+"/root/tmp/mine", &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != uint32(id) || st.Gid != uint32(id) {
		t.Errorf("a file the function wrote is owned by host %d:%d, want %d:%d", st.Uid, st.Gid, id, id)
	}

	// A function on its own root file system, too.
	dir := t.TempDir()
	writeImage(t, dir, "image.tar.gz", testImage(t)...)
	img := startT(t, d, imageSpec(dir))
	if resp, err := call(t, img, http.MethodGet, "/cat", "arg=/etc/os-release", ""); err != nil || string(resp.Body) != "ok "+imageOSRelease {
		t.Errorf("image in a user namespace: %v %q", err, respBody(resp))
	}
	if resp, err := call(t, img, http.MethodGet, "/cat", "arg=/proc/self/uid_map", ""); err != nil || !strings.HasPrefix(string(resp.Body), "ok      65534") {
		t.Errorf("image: uid_map %v %q", err, respBody(resp))
	}
}

// TestUserNamespaceFallback: when the kernel refuses user namespaces, the
// driver says so in its log and functions run as the host's nobody, still
// without capabilities.
func TestUserNamespaceFallback(t *testing.T) {
	var logs bytes.Buffer
	d := newTestDriver(t, Config{refuseUserNS: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if d.userNS || !strings.Contains(logs.String(), "user namespaces unavailable") {
		t.Fatalf("userNS = %v, log %q", d.userNS, logs.String())
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("%d log lines, want one: %q", n, logs.String())
	}
	inst := startT(t, d, fnSpec("abuse")).(*Instance)
	fn, _ := functionPid(t, inst)
	if got := procIDs(t, fn, "Uid"); got != "65534 65534 65534 65534" {
		t.Errorf("without a user namespace the function runs as host uids %q, want nobody", got)
	}
	hostNS, _ := os.Readlink("/proc/self/ns/user")
	if ns, _ := os.Readlink("/proc/" + strconv.Itoa(fn) + "/ns/user"); ns != hostNS {
		t.Errorf("the function is in user namespace %s, want the host's", ns)
	}
}

// TestUserNSConfigChecked: New refuses a range of host ids that may hold
// real users' or that overflows, and ids that are not ids.
func TestUserNSConfigChecked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{UserNSBase: 1000}, "UserNSBase"},
		{Config{UserNSBase: 1<<32 - 1000}, "UserNSBase"},
		{Config{UID: -1}, "UID and GID"},
		{Config{GID: 1 << 32}, "UID and GID"},
	} {
		c.cfg.StateDir = filepath.Join(bins.root, "state")
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want one naming %s", c.cfg, err, c.want)
		}
	}
}

// TestHostIDs: ids are handed out once until returned, all of the range.
func TestHostIDs(t *testing.T) {
	h := newHostIDs(100, 4)
	seen := map[uint32]bool{}
	for range 4 {
		id, err := h.get()
		if err != nil || seen[id] || id < 100 || id >= 104 {
			t.Fatalf("get: %d %v (seen %v)", id, err, seen)
		}
		seen[id] = true
	}
	if _, err := h.get(); err == nil {
		t.Fatal("a fifth id from a range of four")
	}
	h.put(102)
	if id, err := h.get(); err != nil || id != 102 {
		t.Fatalf("after put(102): %d %v", id, err)
	}
}
