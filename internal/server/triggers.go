package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/driver/sandbox"
	"github.com/hearthdev/hearth/internal/events"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/trigger"
)

var (
	_ sandbox.Emitter = (*trigger.Manager)(nil)
	_ sandbox.Emitter = (*lateEmitter)(nil)
)

// lateEmitter is the sandbox driver's Emitter: the trigger manager, once
// it exists (set). Until then an event is refused with errEventsNotReady.
type lateEmitter struct {
	m atomic.Pointer[trigger.Manager]
}

var errEventsNotReady = errors.New("the event bus is not running yet; try again shortly")

func (l *lateEmitter) set(m *trigger.Manager) { l.m.Store(m) }

// Emit implements sandbox.Emitter.
func (l *lateEmitter) Emit(ctx context.Context, topic string, e *events.Event, hops int) (api.EventAccepted, error) {
	m := l.m.Load()
	if m == nil {
		return api.EventAccepted{}, errEventsNotReady
	}
	return m.Emit(ctx, topic, e, hops)
}

// newTriggers builds the trigger manager: it watches the registry's KV
// bucket, so every deploy and delete (whichever path made it) starts and
// stops the function's triggers.
func newTriggers(ctx context.Context, st *store.Store, aq *async.Queue, reg prometheus.Registerer, log *slog.Logger) (*trigger.Manager, error) {
	fns, err := st.JetStream().KeyValue(ctx, store.FunctionsBucket)
	if err != nil {
		return nil, fmt.Errorf("triggers: %w", err)
	}
	m, err := trigger.New(ctx, trigger.Config{
		JS:         st.JetStream(),
		Queue:      aq,
		Functions:  fns,
		Registerer: reg,
		Logger:     log.With("component", "triggers"),
	})
	if err != nil {
		return nil, fmt.Errorf("triggers: %w", err)
	}
	return m, nil
}
