// Package sbinit is the sandbox's init: the first process inside a new
// sandbox (PID 1 of its PID namespace). It builds the sandbox's root, waits
// for a task, starts the function with no privileges (in a user namespace
// of its own, see fork_linux.go) and then reaps processes until the
// function exits.
//
// The package is built into a small separate binary (see ../initbin) so a
// sandbox starts without the Go runtime and package initialisation of the
// whole Hearth binary, and so each idle sandbox costs only a few hundred KiB.
// It therefore imports only syscall-level packages: no fmt, os, encoding/json
// or reflection. This file holds the wire format the driver and the init
// share; both sides import it.
package sbinit

import "errors"

// Arg0 is argv[0] of an init; Env marks its environment (the fallback
// re-execution of Hearth's own binary checks both).
const (
	Arg0 = "hearth-sandbox-init"
	Env  = "HEARTH_SANDBOX_INIT"
)

// CtlFD is the init's control socket (a SOCK_SEQPACKET unix socket). The
// protocol, one message each way at a time:
//
//	driver → init: Root (encoded) with two descriptors (SCM_RIGHTS): the
//	               driver's state directory and the root template, opened
//	               in the init's mount namespace (through /proc/PID/root)
//	init → driver: "ready" once the root and the function's user namespace
//	               are made, or "error: ..." (then the init exits)
//	driver → init: Task (encoded) with the function directory as a detached
//	               mount (SCM_RIGHTS); or EOF to discard a pooled sandbox
//	init → driver: for a task with Port: "listening" with a connection to the
//	               port (SCM_RIGHTS); else EOF once the function started; or
//	               "error: ..."; or EOF because the function exited early.
//
// The init reaches its mount point and template through those descriptors
// (as /proc/self/fd/N/...), not by their host paths, which the driver alone
// resolves. It closes both once the root is built: they lead out of it.
const CtlFD = 3

// Root describes the empty sandbox; it is the same for every sandbox of a
// driver but for User's host ids (the template, which a function may bring,
// comes as a descriptor).
type Root struct {
	Mount    string // name, in the state directory, of the directory to mount the new root on
	Binds    []Bind // read-only binds on top of the template (host dirs)
	Hostname string
	NoFile   uint64       // RLIMIT_NOFILE
	Seccomp  []SockFilter // the compiled seccomp program
	// User is who the function will run as. With a HostUID, the init
	// creates the function's user namespace as it builds the root (see
	// fork_linux.go).
	User User
	// Probe makes the init check, before it reports "ready", that it can
	// start the function's process (the driver's probe in New): a child
	// goes through every step of a function's start but the exec.
	Probe bool
}

// User is who a function runs as.
type User struct {
	UID, GID uint32 // inside the sandbox
	// HostUID and HostGID, if HostUID is not 0, put the function in a user
	// namespace of its own whose only ids are UID and GID, mapped to these
	// unprivileged host ids; 0: no user namespace, UID and GID are host ids.
	HostUID, HostGID uint32
}

// Bind is one read-only bind mount.
type Bind struct {
	Src string // host path
	Dst string // path inside the root, relative
}

// SockFilter is one classic BPF instruction (struct sock_filter).
type SockFilter struct {
	Code uint16
	Jt   uint8
	Jf   uint8
	K    uint32
}

// Task turns an empty sandbox into one function instance.
type Task struct {
	Argv     []string
	Env      []string
	TmpBytes int64 // size of /tmp
	// Port, if not 0, is the loopback port the function listens on: the
	// init reports "listening" with a connection to it once it accepts.
	Port uint16
}

const wireVersion = 3

// ErrWire reports a malformed message.
var ErrWire = errors.New("sbinit: malformed message")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) {
	for v >= 0x80 {
		e.b = append(e.b, byte(v)|0x80)
		v >>= 7
	}
	e.b = append(e.b, byte(v))
}

func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bool(b bool) {
	if b {
		e.uint(1)
	} else {
		e.uint(0)
	}
}

func (e *encoder) user(u User) {
	e.uint(uint64(u.UID))
	e.uint(uint64(u.GID))
	e.uint(uint64(u.HostUID))
	e.uint(uint64(u.HostGID))
}

func (e *encoder) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if len(d.b) == 0 {
			d.err = ErrWire
			return 0
		}
		c := d.b[0]
		d.b = d.b[1:]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	d.err = ErrWire
	return 0
}

func (d *decoder) len() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.err = ErrWire
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.len()
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) user() User {
	return User{UID: uint32(d.uint()), GID: uint32(d.uint()), HostUID: uint32(d.uint()), HostGID: uint32(d.uint())}
}

func (d *decoder) strs() []string {
	n := d.len() // each string takes at least one byte
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

// Marshal encodes r.
func (r *Root) Marshal() []byte {
	e := encoder{b: []byte{wireVersion, 'R'}}
	e.str(r.Mount)
	e.uint(uint64(len(r.Binds)))
	for _, b := range r.Binds {
		e.str(b.Src)
		e.str(b.Dst)
	}
	e.str(r.Hostname)
	e.uint(r.NoFile)
	e.uint(uint64(len(r.Seccomp)))
	for _, f := range r.Seccomp {
		e.uint(uint64(f.Code))
		e.uint(uint64(f.Jt))
		e.uint(uint64(f.Jf))
		e.uint(uint64(f.K))
	}
	e.user(r.User)
	e.bool(r.Probe)
	return e.b
}

// Unmarshal decodes what Marshal encoded.
func (r *Root) Unmarshal(b []byte) error {
	if len(b) < 2 || b[0] != wireVersion || b[1] != 'R' {
		return ErrWire
	}
	d := decoder{b: b[2:]}
	r.Mount = d.str()
	n := d.len()
	r.Binds = make([]Bind, 0, n)
	for range n {
		r.Binds = append(r.Binds, Bind{Src: d.str(), Dst: d.str()})
	}
	r.Hostname = d.str()
	r.NoFile = d.uint()
	n = d.len()
	r.Seccomp = make([]SockFilter, 0, n)
	for range n {
		r.Seccomp = append(r.Seccomp, SockFilter{Code: uint16(d.uint()), Jt: uint8(d.uint()), Jf: uint8(d.uint()), K: uint32(d.uint())})
	}
	r.User = d.user()
	r.Probe = d.uint() != 0
	if d.err == nil && len(d.b) != 0 {
		d.err = ErrWire
	}
	return d.err
}

// Marshal encodes t.
func (t *Task) Marshal() []byte {
	e := encoder{b: []byte{wireVersion, 'T'}}
	e.strs(t.Argv)
	e.strs(t.Env)
	e.uint(uint64(t.TmpBytes))
	e.uint(uint64(t.Port))
	return e.b
}

// Unmarshal decodes what Marshal encoded.
func (t *Task) Unmarshal(b []byte) error {
	if len(b) < 2 || b[0] != wireVersion || b[1] != 'T' {
		return ErrWire
	}
	d := decoder{b: b[2:]}
	t.Argv = d.strs()
	t.Env = d.strs()
	t.TmpBytes = int64(d.uint())
	t.Port = uint16(d.uint())
	if d.err == nil && len(d.b) != 0 {
		d.err = ErrWire
	}
	if d.err == nil && len(t.Argv) == 0 {
		d.err = ErrWire
	}
	return d.err
}
