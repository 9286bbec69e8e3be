//go:build linux && !amd64 && !arm64

package sbinit

import (
	"runtime"
	"syscall"
)

// Without the assembly of clone_*.s (architectures without an embedded
// init, which re-execute Hearth instead), vfork and cloneWaiter fork: the
// child gets a copy of the caller's memory, which is slower but behaves the
// same. See clone_asm.go.

//go:nosplit
//go:norace
//go:nocheckptr
func vfork() (pid uintptr, err syscall.Errno) {
	return rawClone(uintptr(syscall.SIGCHLD))
}

//go:nosplit
//go:norace
//go:nocheckptr
func cloneWaiter(flags uintptr) (pid uintptr, err syscall.Errno) {
	pid, err = rawClone(flags)
	if err != 0 || pid != 0 {
		return pid, err
	}
	for {
		syscall.RawSyscall6(syscall.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
	}
}

//go:nosplit
//go:norace
//go:nocheckptr
func rawClone(flags uintptr) (pid uintptr, err syscall.Errno) {
	if runtime.GOARCH == "s390x" {
		pid, _, err = syscall.RawSyscall6(syscall.SYS_CLONE, 0, flags, 0, 0, 0, 0)
	} else {
		pid, _, err = syscall.RawSyscall6(syscall.SYS_CLONE, flags, 0, 0, 0, 0, 0)
	}
	return pid, err
}
