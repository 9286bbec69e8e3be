// Package async runs asynchronous invocations (POST /async/fn/{name}) on
// JetStream, so that queued work survives restarts and kill -9.
//
// # Data
//
//   - Stream HEARTH_ASYNC (work-queue retention, file storage): one
//     message per queued invocation. Enqueue returns only after the server
//     acknowledged the message (see publisher: concurrent callers share the
//     connection, each waiting for its own acknowledgement; status records
//     and dead letters are stored the same way). A plain invocation's
//     message has the subject async.<function> and its id is a random
//     part and the message's stream sequence (<24 hex digits>-<base 36>),
//     so Status finds a queued one by sequence with no subject per message
//     (see envelope). With an Idempotency-Key the invocation id is derived
//     from (function, key), the subject is async.<function>.<id> and the
//     message carries Nats-Msg-Id, so a repeated request within the
//     duplicate window stores nothing and answers the same id; past the
//     window the repeated message is stored but skipped by the worker,
//     because the id's status is already final.
//   - KV bucket hearth_invocations (TTL 7 days), key: invocation id, value:
//     the JSON api.InvocationStatus. Written when an attempt ends, and when
//     an attempt of a redelivered message starts; the first attempt of a
//     message delivered for the first time keeps its "running" record in
//     the memory of the process running it, so a plain successful async
//     invocation costs one status write. Status answers from that memory
//     while the attempt runs, then from the bucket; an invocation without a
//     record that is still in the stream is queued (so with several nodes
//     on one NATS, a node other than the one running a first attempt
//     reports it queued until it ends).
//   - Stream HEARTH_DLQ (limits retention, 14 days), subject
//     dlq.<function>.<id>: invocations that failed for good, with the
//     original request, their attempts and last error.
//
// # Execution
//
// One durable pull consumer (explicit acks, unlimited deliveries: attempts
// are counted in the status record) feeds Config.Workers goroutines, each
// pulling one message when it is free, so no message waits in a client
// buffer while its ack timer runs. While an attempt runs, the message is
// kept in progress every AckWait/3, so a job longer than the ack-wait is not
// delivered again. Before running a redelivered message, or one whose id
// may have a history (an idempotency key, a replay), a worker reads the
// status record: a final status means the invocation finished before a
// crash took the ack, and the message is acked without running it again. A
// message delivered for the first time with a fresh random id has no
// record, so that read is skipped; if its attempt is cut short by a crash,
// the redelivery finds no record and counts that one attempt. A failure (an error, a timeout,
// HTTP 5xx or 429) is retried with exponential backoff (NakWithDelay) per the
// function's manifest.Retry; one that has used its attempts, or whose next
// attempt would start past its max age, is written to the dead-letter
// stream. Delivery is at least once: an attempt interrupted by a crash runs
// again, with the same invocation id, after the ack-wait.
//
// A replay (Replay) starts a new series of attempts for the same invocation
// id: the status goes back to queued with zero attempts and Replays
// incremented, the original request is queued again, and the dead-letter
// entry is removed (it comes back if the series fails too).
//
// Destinations: a function destination is invoked asynchronously through
// this queue with an idempotency key derived from the invocation, before the
// source message is acked, so it is delivered at least once and executed
// once. A URL destination is POSTed by a goroutine of the Queue (3 tries);
// it is best effort: a crash can lose it.
package async

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/driver"
	"github.com/hearthdev/hearth/internal/manifest"
)

// Names of the JetStream assets the package owns.
const (
	Stream       = "HEARTH_ASYNC"
	DLQStream    = "HEARTH_DLQ"
	StatusBucket = "hearth_invocations"
	ConsumerName = "hearth-async"

	subjectPrefix = "async."
	dlqPrefix     = "dlq."
	statusSubject = "$KV." + StatusBucket + "."
)

// Defaults and limits.
const (
	DefaultWorkers    = 32
	DefaultAckWait    = 30 * time.Second
	DefaultDuplicates = 24 * time.Hour // Idempotency-Key window in the stream
	DefaultStatusTTL  = 7 * 24 * time.Hour
	DLQMaxAge         = 14 * 24 * time.Hour

	// MaxStoredBody bounds the response body kept in a status record.
	MaxStoredBody = 512 << 10
	// MaxKeyLen bounds an Idempotency-Key.
	MaxKeyLen = 255
	// MaxDestinationDepth bounds chains of function destinations (a → b → a …).
	MaxDestinationDepth = 8

	metaBudget = 64 << 10 // message bytes kept for everything but the body

	// publishTimeout bounds the wait for JetStream's acknowledgement of a
	// message the queue stores.
	publishTimeout = 10 * time.Second
	maxErrLen      = 4 << 10
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no asynchronous invocation or dead letter with that id.
	ErrNotFound = errors.New("async: not found")
	// ErrBadKey: the Idempotency-Key is empty-after-trim, too long or not
	// printable ASCII.
	ErrBadKey = errors.New("async: invalid idempotency key")
	// ErrTooLarge: the request does not fit in one queued message.
	ErrTooLarge = errors.New("async: request too large")
	// ErrClosed: the queue is closed.
	ErrClosed = errors.New("async: closed")
)

// InvokeFunc runs one attempt of an invocation of function synchronously and
// returns the function's answer. The caller (the server) applies the
// function's timeout, logs and metering. An error means the attempt failed.
type InvokeFunc func(ctx context.Context, function string, req *driver.Request) (*driver.Response, error)

// PolicyFunc returns the retry policy and destinations of the serving
// version of function, and false if the function is not deployed.
type PolicyFunc func(function string) (manifest.Retry, manifest.Destinations, bool)

// Config configures a Queue.
type Config struct {
	JS     jetstream.JetStream // required
	Invoke InvokeFunc          // required
	Policy PolicyFunc          // required
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Workers is how many attempts run at once. Default DefaultWorkers.
	Workers int
	// AckWait is the consumer's ack-wait: how long a delivered message may
	// go without an ack or progress report before it is delivered again.
	// Default DefaultAckWait.
	AckWait time.Duration
	// Throttled, if set, reports whether an Invoke error means the function
	// was over capacity (scheduler.ErrOverloaded). Such an attempt is tried
	// again after the backoff without counting as an attempt, as Lambda
	// does with throttles; max age still applies.
	Throttled func(error) bool
	// HTTPClient sends URL destinations. Default: a client with a 10 s
	// timeout.
	HTTPClient *http.Client

	// testHookFinished, if set, is called with the id of every invocation
	// whose final status was stored and whose message was acked.
	testHookFinished func(id string)
}

// Queue is the asynchronous invocation queue. Its methods are safe for
// concurrent use.
type Queue struct {
	cfg        Config
	log        *slog.Logger
	js         jetstream.JetStream
	pub        *publisher // publishes with store
	stream     jetstream.Stream
	dlq        jetstream.Stream
	kv         jetstream.KeyValue
	cons       jetstream.Consumer
	maxPayload int64

	fetchCtx    context.Context // cancelled when Close starts: no new work
	stopFetch   context.CancelFunc
	runCtx      context.Context // cancelled when Close gives up waiting
	cancelRun   context.CancelFunc
	wg          sync.WaitGroup // workers
	callbacks   sync.WaitGroup // URL destinations
	callbackSem chan struct{}

	mu      sync.Mutex
	started bool
	closed  bool
	// running holds the ids with an attempt running in this process, and
	// the status record of the attempt once it has started (nil before).
	running map[string]*api.InvocationStatus
}

// New creates (or updates) the stream, bucket and consumer. Enqueue works at
// once; attempts run after Start.
func New(ctx context.Context, cfg Config) (*Queue, error) {
	if cfg.JS == nil || cfg.Invoke == nil || cfg.Policy == nil {
		return nil, errors.New("async: Config.JS, Invoke and Policy are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	q := &Queue{
		cfg:         cfg,
		log:         cfg.Logger,
		js:          cfg.JS,
		maxPayload:  cfg.JS.Conn().MaxPayload(),
		running:     make(map[string]*api.InvocationStatus),
		callbackSem: make(chan struct{}, 64),
	}
	q.fetchCtx, q.stopFetch = context.WithCancel(context.Background())
	q.runCtx, q.cancelRun = context.WithCancel(context.Background())

	var err error
	q.stream, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "Hearth asynchronous invocations waiting to run",
		Subjects:    []string{subjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  DefaultDuplicates,
		AllowDirect: true,
		// No MaxAge: an invocation leaves the queue only through success
		// or the dead-letter stream, never silently.
	})
	if err != nil {
		return nil, fmt.Errorf("async: stream %s: %w", Stream, err)
	}
	q.dlq, err = q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "Hearth asynchronous invocations that failed for good",
		Subjects:    []string{dlqPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      DLQMaxAge,
		Duplicates:  time.Hour,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("async: stream %s: %w", DLQStream, err)
	}
	q.kv, err = q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StatusBucket,
		Description: "Hearth asynchronous invocation status",
		History:     1,
		TTL:         DefaultStatusTTL,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("async: bucket %s: %w", StatusBucket, err)
	}
	q.cons, err = q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "Hearth asynchronous invocation workers",
		FilterSubject: subjectPrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		// Attempts are counted in the status record; retries waiting out
		// their backoff stay pending, so pending must not be bounded by
		// the number of workers (each worker pulls one message at a time).
		MaxDeliver:    -1,
		MaxAckPending: -1,
		MaxWaiting:    max(512, 2*cfg.Workers),
	})
	if err != nil {
		return nil, fmt.Errorf("async: consumer %s: %w", ConsumerName, err)
	}
	if q.pub, err = newPublisher(cfg.JS.Conn(), publishTimeout); err != nil {
		return nil, err
	}
	return q, nil
}

// Start starts the workers. Calling it again does nothing.
func (q *Queue) Start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.closed {
		return
	}
	q.started = true
	for range q.cfg.Workers {
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			q.work()
		}()
	}
}

// Close stops taking new work and waits for the running attempts until ctx
// is done; then it cancels them (they run again after a restart) and waits
// for the workers to return. Enqueue fails with ErrClosed afterwards.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.stopFetch()
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		q.callbacks.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("async: attempts still running at close: %w", ctx.Err())
		q.cancelRun()
		<-done
	}
	q.cancelRun()
	q.pub.close()
	return err
}

// MaxBody is the largest request body Enqueue accepts.
func (q *Queue) MaxBody() int64 {
	return max(0, q.maxPayload-metaBudget)
}

func (q *Queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}
