//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"
)

// User namespaces. A sandbox's init is root in the host's user namespace,
// which owns the sandbox's mount, PID, network, IPC and UTS namespaces: it
// builds the root with its real privileges and runs no code but its own.
// The function gets a user namespace of its own whose only ids are its user
// and group (Config.UID and GID, nobody), mapped to a host uid and gid no
// other live sandbox of the driver has (hostIDs, from Config.UserNSBase
// on), and owned by that host uid. So:
//
//   - the function is never host root, nor the host's nobody, and holds no
//     capability in any namespace: its user namespace owns no other, it has
//     an empty bounding set, no_new_privs, and a seccomp filter that
//     refuses further namespaces; there is no uid 0 to setuid to;
//   - what it creates (files in /tmp, processes) belongs to its host uid,
//     and per-user kernel limits (inotify instances, pipe buffers, message
//     queues, pending signals, RLIMIT_NPROC) count each sandbox apart,
//     instead of all functions together with the host's daemons running as
//     nobody, and not against root's either, as they would if root owned
//     the namespace;
//   - files of other owners, in /var/task, the root and /proc, show as
//     nobody (the kernel's overflow id, which is also the function's own:
//     a program comparing owners may take them for its own) but access is
//     checked against their real owners: the function has the access of
//     "others", as it had as the host's nobody.
//
// The init makes the namespace while it builds the sandbox (so a pooled
// sandbox has it ready) and starts the function into it with a vfork and a
// setns (sbinit/fork_linux.go): nothing on a start forks a copy of a
// process. (Making the driver clone the init with CLONE_NEWUSER, as
// syscall.ForkExec allows, forks the whole Hearth process for every
// sandbox: 3 ms or more, growing with its memory.)
//
// New probes the kernel once (a sandbox whose init makes the namespace and
// takes a child through a function's start up to the exec). Where it
// refuses (no CONFIG_USER_NS, user.max_user_namespaces = 0, a seccomp
// policy around Hearth), New logs it and functions run with Config.UID and
// GID as host ids, as before.

// hostIDs hands out the host ids of functions' user namespaces, one per
// live sandbox (its uid and gid are the same number). It starts at a random
// point of its range so that two drivers on one host (two Hearth processes)
// seldom hand out the same id at once; if they do, the two functions only
// share per-user limits, as all functions do without user namespaces.
type hostIDs struct {
	base, size uint32

	mu   sync.Mutex
	next uint32 // offset of the next id to try
	used map[uint32]struct{}
}

func newHostIDs(base, size uint32) *hostIDs {
	return &hostIDs{base: base, size: size, next: rand.Uint32N(size), used: map[uint32]struct{}{}}
}

// get returns an unused id.
func (h *hostIDs) get() (uint32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.used) >= int(h.size) {
		return 0, fmt.Errorf("sandbox: all %d host ids for user namespaces are in use", h.size)
	}
	for {
		id := h.base + h.next
		h.next = (h.next + 1) % h.size
		if _, ok := h.used[id]; !ok {
			h.used[id] = struct{}{}
			return id, nil
		}
	}
}

// put returns id, whose sandbox has ended (all its processes with it).
func (h *hostIDs) put(id uint32) {
	h.mu.Lock()
	delete(h.used, id)
	h.mu.Unlock()
}

// inUse reports how many ids are handed out.
func (h *hostIDs) inUse() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.used)
}

// probeUserNS starts one empty sandbox with a user namespace, whose init
// starts a process in it up to the exec. It turns user namespaces on if
// that worked, else reports why not.
func (d *Driver) probeUserNS() error {
	if d.cfg.refuseUserNS {
		return errors.New("refused for the test")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("user.max_user_namespaces is 0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	root := d.rootCfg
	root.Probe = true
	d.userNS = true
	sb, err := d.spawn(ctx, 0, root, d.rootDir, "")
	if err != nil {
		d.userNS = false
		return err
	}
	sb.destroy()
	return nil
}
