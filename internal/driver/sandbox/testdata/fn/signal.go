package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func syscallIgnore(sig syscall.Signal) { signal.Ignore(sig) }

// cleanUpOnTerm makes SIGTERM start a clean-up that takes a while and logs
// its progress on stderr (the instance's logs), then exits 0: what a
// function that drains connections or flushes buffers at shutdown does.
func cleanUpOnTerm(d time.Duration) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	go func() {
		<-c
		fmt.Fprintln(os.Stderr, "fn: got SIGTERM, cleaning up")
		time.Sleep(d)
		fmt.Fprintln(os.Stderr, "fn: clean-up done")
		os.Exit(0)
	}()
}
