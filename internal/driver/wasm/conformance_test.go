package wasm

import (
	"testing"

	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/driver/conformance"
)

func TestConformanceCommand(t *testing.T) {
	d := newTestDriver(t)
	conformance.Run(t, conformance.Harness{
		Driver: d,
		Spec:   func(t *testing.T, b string) driver.Spec { return guestSpec(t, guests.guest, b) },
		Leaks:  mappingLeaks(d),
	})
}

func TestConformanceSnapshot(t *testing.T) {
	d := newTestDriver(t)
	conformance.Run(t, conformance.Harness{
		Driver: d,
		Spec:   func(t *testing.T, b string) driver.Spec { return guestSpec(t, guests.guestReactor, b) },
		Leaks:  mappingLeaks(d),
	})
}
