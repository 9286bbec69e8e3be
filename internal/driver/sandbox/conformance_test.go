//go:build linux

package sandbox

import (
	"testing"

	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/conformance"
)

func TestConformance(t *testing.T) {
	d := newTestDriver(t, Config{})
	conformance.Run(t, conformance.Harness{
		Driver: d,
		Spec:   func(t *testing.T, b string) driver.Spec { return fnSpec(b) },
		Leaks:  func() error { return leaks(d) },
	})
}
