package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/store"
	"github.com/hearthdev/hearth/internal/trigger"
)

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
