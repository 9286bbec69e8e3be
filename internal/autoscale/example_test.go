package autoscale_test

import (
	"fmt"
	"time"

	"github.com/hearthdev/hearth/internal/autoscale"
)

// manualClock is a clock the example moves by hand.
type manualClock struct{ t time.Time }

func (c *manualClock) Now() time.Time { return c.t }

func Example() {
	clk := &manualClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := autoscale.New(autoscale.Config{Target: 1, Max: 20}, clk)

	// Ten requests arrive at a function with no instance: start ten at once.
	a.Record(clk.t, 10)
	fmt.Println("start now:", a.Burst(0, 10, 0, 0))

	// The steady-state loop, two seconds later, keeps them and adds headroom.
	clk.t = clk.t.Add(2 * time.Second)
	d := a.Decide(clk.t, 10)
	fmt.Println(d.Desired, d.Panic)

	// A minute and a half of five requests in flight settles on ⌈5/0.7⌉.
	a.Record(clk.t, 5)
	for range 45 {
		clk.t = clk.t.Add(2 * time.Second)
		d = a.Decide(clk.t, d.Desired)
	}
	fmt.Println(d.Desired, d.Panic)
	// Output:
	// start now: 10
	// 15 true
	// 8 false
}
