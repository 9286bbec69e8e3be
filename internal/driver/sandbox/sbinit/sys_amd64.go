//go:build linux

package sbinit

import "syscall"

const (
	sysSeccomp   = 317
	sysSetns     = 308
	sysSetgroups = syscall.SYS_SETGROUPS
	sysSetresgid = syscall.SYS_SETRESGID
	sysSetresuid = syscall.SYS_SETRESUID
)
