//go:build linux

package sbinit

import "syscall"

const (
	sysSeccomp   = 277
	sysSetns     = syscall.SYS_SETNS
	sysSetgroups = syscall.SYS_SETGROUPS
	sysSetresgid = syscall.SYS_SETRESGID
	sysSetresuid = syscall.SYS_SETRESUID
)
