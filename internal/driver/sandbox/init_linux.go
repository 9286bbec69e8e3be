//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/hearthdev/hearth/internal/driver/sandbox/sbinit"
)

// A sandbox's init (its PID 1, package sbinit) is a small separate program
// embedded in the driver (initBinary, built from ./initbin by go generate):
// the driver copies it into a sealed memfd once and executes it from there,
// so a sandbox starts without the Go runtime state and package
// initialisation of the whole Hearth binary (milliseconds and megabytes per
// sandbox). On architectures without an embedded build the driver falls
// back to re-executing Hearth's own binary, which MaybeRunInit turns into
// the same init.

//go:generate go test -run ^TestInitBinaryUpToDate$ -update-init .

// MaybeRunInit runs the sandbox init and exits if this process was started
// as one; otherwise it returns at once. Call it first thing in main (and in
// TestMain of packages that start sandboxes), before any other work.
func MaybeRunInit() {
	if len(os.Args) == 0 || os.Args[0] != sbinit.Arg0 || os.Getenv(sbinit.Env) == "" {
		return
	}
	sbinit.Main()
}

// initProgram is the executable a driver starts as each sandbox's init.
type initProgram struct {
	path  string
	memfd *os.File // nil when re-executing /proc/self/exe
}

// openInitProgram loads the embedded init into a sealed memfd, or falls
// back to /proc/self/exe when there is no build for this architecture (or
// reexec is set).
func openInitProgram(reexec bool) (*initProgram, error) {
	if len(initBinary) == 0 || reexec {
		return &initProgram{path: "/proc/self/exe"}, nil
	}
	fd, err := unix.MemfdCreate("hearth-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("sandbox: memfd for the init: %w", err)
	}
	f := os.NewFile(uintptr(fd), "hearth-sandbox-init")
	if _, err := f.Write(initBinary); err != nil {
		f.Close()
		return nil, fmt.Errorf("sandbox: writing the init: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("sandbox: sealing the init: %w", err)
	}
	return &initProgram{path: "/proc/self/fd/" + strconv.Itoa(fd), memfd: f}, nil
}

func (p *initProgram) close() {
	if p.memfd != nil {
		p.memfd.Close()
	}
}
