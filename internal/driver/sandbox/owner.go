//go:build linux

package sandbox

import (
	"os"
	"strconv"
	"strings"
	"sync"
)

// The names of what a driver leaves on the host while it runs (temporary
// trees, templates, cgroups) start with its process's owner token, so that
// a later process can tell which are left over from a dead one.

// ownerToken is "<pid>.<start time>" of this process: the start time (in
// clock ticks since boot, /proc/self/stat) tells a process from a later
// one with the same pid — in a container Hearth often gets the same pid
// after every restart.
var ownerToken = sync.OnceValue(func() string {
	pid := strconv.Itoa(os.Getpid())
	return pid + "." + procStart(pid)
})

// procStart returns the start time of process pid, or "" if there is none.
func procStart(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	// Field 22; the command (field 2) is in parentheses and may hold
	// spaces, so count from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// staleOwner reports whether token, the owner token in a name, belongs to
// no live process: the pid is gone, or now names a later process.
func staleOwner(token string) bool {
	pid, start, ok := strings.Cut(token, ".")
	if pid == "" {
		return true
	}
	if !ok {
		// A bare pid, as earlier versions named things: stale once the
		// process is gone.
		_, err := os.Stat("/proc/" + pid)
		return err != nil
	}
	return procStart(pid) != start
}
