//go:build linux && !amd64 && !arm64 && !386 && !arm

package sbinit

import (
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	sysSeccomp   = unix.SYS_SECCOMP
	sysSetns     = unix.SYS_SETNS
	sysSetgroups = syscall.SYS_SETGROUPS
	sysSetresgid = syscall.SYS_SETRESGID
	sysSetresuid = syscall.SYS_SETRESUID
)
