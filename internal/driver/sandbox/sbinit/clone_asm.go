//go:build linux && (amd64 || arm64)

package sbinit

import "syscall"

// vfork starts a child that shares the caller's memory and runs on its
// stack while the calling thread waits, until the child executes or exits
// (clone with CLONE_VM|CLONE_VFORK, as syscall.ForkExec does): no copy of
// the init's memory. Call it between the runtime's fork hooks; the child
// returns 0 and may only call nosplit functions.
func vfork() (pid uintptr, err syscall.Errno)

// cloneWaiter starts, with flags (CLONE_NEWUSER|SIGCHLD), a child that
// shares the caller's memory and only sleeps until it is killed: a process
// to hold a new user namespace while its id maps are written. Call it
// between the runtime's fork hooks (the child keeps every signal blocked).
func cloneWaiter(flags uintptr) (pid uintptr, err syscall.Errno)
