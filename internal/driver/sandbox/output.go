//go:build linux

package sandbox

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// output reads a sandbox's stdout and stderr (one pipe) and routes it: to the
// invocation in flight when there is exactly one, else to the instance's
// log writer. Reading and routing happen under one lock, so drain (called
// when an invocation ends) delivers everything the function wrote before it
// answered to that invocation, without races or sleeps.
type output struct {
	f    *os.File
	done chan struct{}

	mu     sync.Mutex
	logs   io.Writer
	sinks  map[*sink]struct{}
	tail   []byte // last bytes written, for crash reports
	closed bool
	buf    [16 << 10]byte
}

type sink struct{ w io.Writer }

const tailSize = 1 << 10

func newOutput(f *os.File) *output {
	o := &output{f: f, done: make(chan struct{}), sinks: map[*sink]struct{}{}}
	go o.loop()
	return o
}

func (o *output) loop() {
	defer close(o.done)
	rc, err := o.f.SyscallConn()
	if err != nil {
		return
	}
	eof := false
	for !eof {
		err := rc.Read(func(fd uintptr) bool {
			eof = o.readAvailable(int(fd))
			return eof
		})
		if err != nil {
			return
		}
	}
}

// readAvailable reads until the pipe is empty; it reports EOF.
func (o *output) readAvailable(fd int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		n, err := unix.Read(fd, o.buf[:])
		if n > 0 {
			o.route(o.buf[:n])
			continue
		}
		switch err {
		case unix.EAGAIN:
			return false
		case unix.EINTR:
			continue
		}
		return true
	}
}

func (o *output) route(p []byte) {
	if len(p) >= tailSize {
		o.tail = append(o.tail[:0], p[len(p)-tailSize:]...)
	} else {
		if over := len(o.tail) + len(p) - tailSize; over > 0 {
			o.tail = append(o.tail[:0], o.tail[over:]...)
		}
		o.tail = append(o.tail, p...)
	}
	if len(o.sinks) == 1 {
		for s := range o.sinks {
			if s.w != nil {
				s.w.Write(p)
				return
			}
		}
	}
	if o.logs != nil {
		o.logs.Write(p)
	}
}

// setLogs sets where output outside invocations goes.
func (o *output) setLogs(w io.Writer) {
	o.mu.Lock()
	o.logs = w
	o.mu.Unlock()
}

func (o *output) begin(w io.Writer) *sink {
	s := &sink{w: w}
	o.mu.Lock()
	o.sinks[s] = struct{}{}
	o.mu.Unlock()
	return s
}

// end drains what the function wrote so far to s, then unregisters it.
// With other invocations in flight the output could not be told apart and
// goes to the instance's logs anyway, which the reader loop does by
// itself: the drain (a read system call) is then skipped.
func (o *output) end(s *sink) {
	o.mu.Lock()
	alone := len(o.sinks) == 1
	o.mu.Unlock()
	if alone {
		o.drain()
	}
	o.mu.Lock()
	delete(o.sinks, s)
	o.mu.Unlock()
}

// drain routes everything already in the pipe.
func (o *output) drain() {
	rc, err := o.f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { o.readAvailable(int(fd)) })
}

// lastLines returns the tail of the output, for error messages.
func (o *output) lastLines() string {
	o.drain()
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.tail)
}

// close stops the reader (after the writers are gone it sees EOF by itself).
func (o *output) close() {
	o.f.Close()
	<-o.done
}
