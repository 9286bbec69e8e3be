//go:build linux

package sandbox

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/driver/sandbox/sbinit"
)

// deniedSyscalls fail with EPERM inside a sandbox: Docker's default profile
// expressed as a deny list (the function runs unprivileged with no
// capabilities, so most of these would fail anyway; the filter is a second
// wall that also shrinks the kernel surface the function can reach).
var deniedSyscalls = []string{
	// Mounts and root changes.
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	// Namespaces.
	"setns", "unshare",
	// Debugging other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	// Kernel modules, kexec, reboot, swap, accounting, quotas.
	"init_module", "finit_module", "delete_module", "create_module",
	"get_kernel_syms", "query_module", "kexec_load", "kexec_file_load",
	"reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
	// BPF, perf, keyrings, userfaultfd, io_uring.
	"bpf", "perf_event_open", "add_key", "request_key", "keyctl",
	"userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
	// Clocks, host names, syslog, I/O ports.
	"clock_adjtime", "clock_settime", "settimeofday", "adjtimex",
	"sethostname", "setdomainname", "syslog", "iopl", "ioperm",
	// File handles (the "shocker" escape), old or obscure interfaces.
	"open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "uselib",
	"ustat", "sysfs", "_sysctl", "vhangup", "nfsservctl", "personality",
	"fanotify_init",
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// sandboxFilter returns the seccomp filter installed before the function
// starts. It sets no_new_privs and applies to all threads of the caller.
func sandboxFilter() (seccomp.Filter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Filter{}, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	var names []string
	for _, n := range deniedSyscalls {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	groups := []seccomp.SyscallGroup{{Action: seccomp.ActionErrno, Names: names}}
	// clone: allow threads and processes, refuse new namespaces. clone3 passes
	// its flags in memory a filter cannot read: answer ENOSYS, which makes libc
	// and Go fall back to clone.
	if _, ok := info.SyscallNames["clone"]; ok {
		groups = append(groups, seccomp.SyscallGroup{
			Action: seccomp.ActionErrno,
			NamesWithCondtions: []seccomp.NameWithConditions{{
				Name:       "clone",
				Conditions: []seccomp.Condition{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}},
			}},
		})
	}
	if _, ok := info.SyscallNames["clone3"]; ok {
		groups = append(groups, seccomp.SyscallGroup{
			Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS),
			Names:  []string{"clone3"},
		})
	}
	return seccomp.Filter{
		NoNewPrivs: true,
		Flag:       seccomp.FilterFlagTSync,
		Policy:     seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups},
	}, nil
}

// assembleFilter compiles the sandbox's seccomp policy once, in the driver;
// the init only loads the program.
func assembleFilter() ([]sbinit.SockFilter, error) {
	f, err := sandboxFilter()
	if err != nil {
		return nil, err
	}
	insts, err := f.Policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	out := make([]sbinit.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = sbinit.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}
