//go:build linux

// Command initbin is the sandbox init (package sbinit) as a small separate
// program. The driver embeds the binaries built from it (hearth-init.*,
// rebuilt by `go generate ./internal/driver/sandbox`) and executes them from
// memory, so a sandbox's PID 1 pays neither for the Go runtime state nor for
// the package initialisation of the whole Hearth binary.
package main

import (
	"syscall"

	"github.com/hearthdev/hearth/internal/driver/sandbox/sbinit"
)

func main() {
	if !isInit() {
		syscall.Write(2, []byte("hearth-init: only Hearth's sandbox driver runs this program\n"))
		syscall.Exit(2)
	}
	sbinit.Main()
}

func isInit() bool {
	var st syscall.Stat_t
	return syscall.Fstat(sbinit.CtlFD, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK
}
