// Package bench measures Hearth's hot paths, each next to a baseline measured
// in the same run, and prints the ratios.
package bench

import (
	"context"
	"errors"
	"io"
	"time"
)

// Config selects what to measure.
type Config struct {
	Out      io.Writer
	Duration time.Duration // per measurement
	Only     []string      // names of benchmarks to run; empty = all
	JSON     bool
}

// Run runs the benchmarks and prints a table (or JSON) to cfg.Out.
func Run(ctx context.Context, cfg Config) error {
	return errors.New("bench: not implemented yet")
}
