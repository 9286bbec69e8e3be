//go:build linux && !amd64 && !arm64

package sbinit

import "golang.org/x/sys/unix"

const sysSeccomp = unix.SYS_SECCOMP
