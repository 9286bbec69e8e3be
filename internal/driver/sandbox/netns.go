//go:build linux

package sandbox

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// The gateway reaches a sandboxed function without any host port and without
// a bridge process: a socket is created inside the sandbox's network
// namespace (one OS thread briefly joins it with setns) and then used from
// the host like any other connection. The kernel keeps a socket in the
// namespace it was created in, so the connection is a plain loopback TCP
// connection inside the sandbox, while the function still sees only "lo".

// inNetns runs fn on a dedicated OS thread that has joined the network
// namespace nsFD. If the thread cannot return to the host namespace it is
// thrown away (its goroutine exits still locked).
func inNetns(hostNS, nsFD int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("sandbox: joining network namespace: %w", err)
			return
		}
		err := fn()
		if rerr := unix.Setns(hostNS, unix.CLONE_NEWNET); rerr != nil {
			errc <- fmt.Errorf("sandbox: leaving network namespace: %w", rerr)
			return // stay locked: the runtime discards this thread
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// dialNetns connects to addr inside the namespace.
func dialNetns(ctx context.Context, hostNS, nsFD int, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(hostNS, nsFD, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	return c, err
}

// listenNetns listens on addr inside the namespace.
func listenNetns(hostNS, nsFD int, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(hostNS, nsFD, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	return ln, err
}
