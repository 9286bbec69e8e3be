//go:build linux && (386 || arm)

package sbinit

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The 32-bit id calls: the plain ones take 16-bit ids.
const (
	sysSeccomp   = unix.SYS_SECCOMP
	sysSetns     = unix.SYS_SETNS
	sysSetgroups = syscall.SYS_SETGROUPS32
	sysSetresgid = syscall.SYS_SETRESGID32
	sysSetresuid = syscall.SYS_SETRESUID32
)
