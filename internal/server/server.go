// Package server wires Hearth's subsystems together: the store, the isolation
// drivers, the scheduler and the gateway. It is the one place where
// dependencies are constructed and passed in; nothing below it reaches for a
// global.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// Config configures one Hearth node.
type Config struct {
	Listen  string // HTTP listen address, e.g. 127.0.0.1:8080
	DataDir string // all state lives here
	Demo    bool   // deploy the bundled examples and print curl lines
	Logger  *slog.Logger
	Stdout  io.Writer // where --demo prints its curl lines
	// Ready, if set, is called with the bound address once /healthz answers 200.
	Ready func(addr string)
}

// Run runs a node until ctx is done, then drains in-flight invocations,
// stops every instance and returns nil.
func Run(ctx context.Context, cfg Config) error {
	return errors.New("server: not implemented yet")
}
