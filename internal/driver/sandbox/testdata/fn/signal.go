package main

import (
	"os/signal"
	"syscall"
)

func syscallIgnore(sig syscall.Signal) { signal.Ignore(sig) }
