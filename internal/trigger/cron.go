package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/manifest"
)

// cronState is a cron trigger's durable state (KV hearth_triggers).
type cronState struct {
	// LastTick is the newest scheduled tick that was fired or
	// deliberately skipped; ticks after it are due. At the trigger's first
	// start it is the start time, so a new trigger fires from then on.
	LastTick       time.Time `json:"last_tick"`
	LastFiredAt    time.Time `json:"last_fired_at,omitzero"`
	LastInvocation string    `json:"last_invocation,omitempty"`
	Schedule       string    `json:"schedule,omitempty"`
}

// maxScan bounds how many ticks dueTicks walks over after a long downtime.
const maxScan = 10_000_000

// dueTicks returns the ticks of sched after last and not after now that
// policy says to fire, oldest first, and the newest due tick (zero if none
// is due), which becomes the new LastTick once they are fired.
//
//   - all: every due tick, but at most manifest.MaxCatchUp (the newest);
//   - last: the newest due tick only;
//   - none: the newest due tick if it is less than grace old (it is the
//     tick being fired on time); older ones are skipped.
func dueTicks(sched cron.Schedule, last, now time.Time, policy string, grace time.Duration) (fire []time.Time, newest time.Time) {
	var due []time.Time
	t := sched.Next(last)
	for n := 0; !t.IsZero() && !t.After(now) && n < maxScan; n++ {
		due = append(due, t)
		if len(due) > 2*manifest.MaxCatchUp {
			due = append(due[:0], due[len(due)-manifest.MaxCatchUp:]...)
		}
		t = sched.Next(t)
	}
	if len(due) == 0 {
		return nil, time.Time{}
	}
	newest = due[len(due)-1]
	switch policy {
	case manifest.CatchUpAll:
		if len(due) > manifest.MaxCatchUp {
			due = due[len(due)-manifest.MaxCatchUp:]
		}
		return due, newest
	case manifest.CatchUpNone:
		if now.Sub(newest) <= grace {
			return []time.Time{newest}, newest
		}
		return nil, newest
	default: // last
		return []time.Time{newest}, newest
	}
}

// cronGrace is how late a tick may fire and still count as on time for
// catch_up: none.
const cronGrace = time.Minute

// runCron fires the schedule until ctx is done.
func (r *runner) runCron(ctx context.Context) error {
	sched, err := manifest.ParseSchedule(r.t.Schedule, r.t.Timezone)
	if err != nil {
		return err
	}
	st, found, err := r.m.loadState(ctx, r.key)
	if err != nil {
		return err
	}
	if !found || st.LastTick.IsZero() {
		st = cronState{LastTick: r.m.cfg.Now().UTC(), Schedule: r.t.Schedule}
		if err := r.m.saveState(ctx, r.key, st); err != nil {
			return err
		}
	}
	r.mu.Lock()
	if st.LastFiredAt.After(r.lastFired) {
		r.lastFired, r.lastInv = st.LastFiredAt, st.LastInvocation
	}
	r.mu.Unlock()
	r.setState(api.TriggerRunning, "")
	for {
		now := r.m.cfg.Now()
		fire, newest := dueTicks(sched, st.LastTick, now, r.t.CatchUp, cronGrace)
		r.setLag(int64(len(fire)))
		for i, tick := range fire {
			acc, err := r.fire(ctx, r.cronEvent(tick, now), fmt.Sprintf("cron/%s/%d", r.t.Name, tick.Unix()), 0)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				r.drop(err)
				return err // retried by loop; the tick is still due
			}
			st.LastTick, st.LastFiredAt, st.LastInvocation, st.Schedule = tick.UTC(), r.m.cfg.Now().UTC(), acc.ID, r.t.Schedule
			if err := r.m.saveState(ctx, r.key, st); err != nil {
				// The queue dedupes the tick if it is fired again.
				return err
			}
			r.setLag(int64(len(fire) - i - 1))
		}
		if !newest.IsZero() && newest.After(st.LastTick) {
			// Skipped by the policy.
			st.LastTick = newest.UTC()
			if err := r.m.saveState(ctx, r.key, st); err != nil {
				return err
			}
		}
		next := sched.Next(st.LastTick)
		r.setNext(next)
		if next.IsZero() {
			<-ctx.Done()
			return nil
		}
		// Wake at least every minute, so a jump of the wall clock is
		// noticed.
		wait := min(next.Sub(r.m.cfg.Now()), time.Minute)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
	}
}

func (r *runner) cronEvent(tick, now time.Time) *events.Event {
	e := events.New(fmt.Sprintf("/functions/%s/triggers/%s", r.fn, r.t.Name), events.TypeCronTick)
	e.SetID(fmt.Sprintf("%s/%s/%d", r.fn, r.t.Name, tick.Unix()))
	e.SetTime(tick.UTC())
	e.SetSubject(r.t.Name)
	tz := r.t.Timezone
	if tz == "" {
		tz = "UTC"
	}
	data, _ := json.Marshal(map[string]any{
		"trigger":   r.t.Name,
		"schedule":  r.t.Schedule,
		"timezone":  tz,
		"scheduled": tick.UTC(),
		"fired":     now.UTC(),
		"late":      now.Sub(tick) > cronGrace,
	})
	events.SetData(&e, "application/json", data)
	return &e
}

func (m *Manager) loadState(ctx context.Context, key string) (cronState, bool, error) {
	e, err := m.state.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return cronState{}, false, nil
		}
		return cronState{}, false, fmt.Errorf("reading trigger state: %w", err)
	}
	var st cronState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return cronState{}, false, nil // start afresh
	}
	return st, true, nil
}

func (m *Manager) saveState(ctx context.Context, key string, st cronState) error {
	b, _ := json.Marshal(st)
	if _, err := m.state.Put(ctx, key, b); err != nil {
		return fmt.Errorf("storing trigger state: %w", err)
	}
	return nil
}

func (m *Manager) deleteState(ctx context.Context, key string) error {
	err := m.state.Delete(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}
