package store

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

// Invocation records are the hottest write in Hearth: one per invocation.
// Storing each as its own JetStream message costs the server a message
// record, index entry and acknowledgement apiece, more than the rest of a
// warm invocation of a small module. So records are batched per function:
// RecordInvocation appends to a buffer, and the batcher publishes each
// function's buffer as one message holding a JSON array every batchEvery,
// or as soon as batchMax records wait. Readers (Usage) accept both a single
// record and an array. A crash loses at most the records of the last
// batchEvery, as it could lose the unacknowledged ones of an unbatched
// asynchronous publish.
const (
	batchEvery = 10 * time.Millisecond
	batchMax   = 512
)

type batcher struct {
	mu      sync.Mutex
	pending map[string][]api.Invocation
	n       int
	kick    chan struct{} // a buffer reached batchMax
}

func newBatcher() *batcher {
	return &batcher{pending: map[string][]api.Invocation{}, kick: make(chan struct{}, 1)}
}

func (b *batcher) add(inv api.Invocation) {
	b.mu.Lock()
	b.pending[inv.Function] = append(b.pending[inv.Function], inv)
	b.n++
	full := b.n >= batchMax
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// take returns and clears what is pending.
func (b *batcher) take() map[string][]api.Invocation {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return nil
	}
	out := b.pending
	b.pending = make(map[string][]api.Invocation, len(out))
	b.n = 0
	return out
}

// runBatcher publishes batches until the store stops; it is started by
// Open and waited for by Close.
func (s *Store) runBatcher() {
	defer s.wg.Done()
	t := time.NewTicker(batchEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.batch.kick:
		}
		s.publishBatches()
	}
}

// publishBatches publishes every pending batch asynchronously.
func (s *Store) publishBatches() {
	for fn, invs := range s.batch.take() {
		data, err := appendInvocations(nil, invs)
		if err != nil {
			s.hotError(invSubjectPrefix+fn, err)
			continue
		}
		s.publishHotRaw(invSubjectPrefix, fn, data)
	}
}

// decodeInvocations decodes a record message: one record or an array.
func decodeInvocations(data []byte) ([]api.Invocation, error) {
	for _, c := range data {
		if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
			continue
		}
		if c == '[' {
			var invs []api.Invocation
			err := json.Unmarshal(data, &invs)
			return invs, err
		}
		break
	}
	var inv api.Invocation
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, err
	}
	return []api.Invocation{inv}, nil
}
