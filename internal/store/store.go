// Package store is Hearth's only database. Everything Hearth must remember
// lives in NATS JetStream:
//
//   - the function registry in the KV bucket hearth_functions (key: function
//     name, value: the JSON api.Function without its live Status),
//   - the deployed artifacts in the object store hearth_artifacts (object
//     name: <function>/v<N>),
//   - function logs in the stream HEARTH_LOGS (subject logs.<function>),
//   - invocation records, from which usage is computed, in the stream
//     HEARTH_INVOCATIONS (subject inv.<function>).
//
// By default Open embeds a NATS server with JetStream that keeps its files
// under Options.Dir and accepts only in-process connections; with
// Options.Listen it also accepts authenticated outside clients with
// restricted permissions (listen.go). Setting Options.URL connects to an
// external NATS deployment instead; nothing else in the package depends on
// which of the two it is.
//
// Durability: every write is acknowledged only after the server has written
// it to its files (JetStream's default flush-in-place for single-replica
// streams), so an acknowledged deploy, log line or invocation record survives
// kill -9 of the process. What reaches the disk platter is governed by the
// fsync policy: the embedded server fsyncs every SyncInterval (default 1s),
// or on every write with Options.SyncAlways.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the JetStream assets the store owns.
const (
	FunctionsBucket   = "hearth_functions"
	ArtifactsBucket   = "hearth_artifacts"
	LogsStream        = "HEARTH_LOGS"
	InvocationsStream = "HEARTH_INVOCATIONS"

	logsSubjectPrefix = "logs."
	invSubjectPrefix  = "inv."
)

// Retention of the streams.
const (
	LogsMaxAge        = 7 * 24 * time.Hour
	LogsMaxBytes      = 1 << 30
	InvocationsMaxAge = 30 * 24 * time.Hour
)

// Defaults for Options.
const (
	DefaultSyncInterval = time.Second
	DefaultMaxPending   = 16384
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: the function, version or object does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a concurrent change won and retrying did not help (for
	// example the function was deleted while a version was being deployed).
	ErrConflict = errors.New("store: conflict")
	// ErrCorrupt: stored bytes do not match their recorded digest.
	ErrCorrupt = errors.New("store: artifact digest mismatch")
	// ErrInvalidName: the name cannot be a function name ([a-z0-9-], 1..63).
	ErrInvalidName = errors.New("store: invalid function name")

	errClosed = errors.New("store: closed")
)

// Options configures Open.
type Options struct {
	// Dir is the data directory; the JetStream file store goes in Dir/nats.
	// Required unless URL is set.
	Dir string
	// URL, if set, connects to this external NATS server instead of
	// embedding one. Dir, the sync settings and Listen are then ignored.
	URL string
	// Listen, if set, makes the embedded server accept outside NATS
	// clients on this TCP address (host:port; port 0 picks a free port).
	// They authenticate with ListenToken, which is then required, and are
	// let in once AcceptClients is called (see listen.go).
	Listen      string
	ListenToken string
	// Logger receives the store's and the embedded server's messages.
	// Nil discards them.
	Logger *slog.Logger

	// SyncInterval is how often the embedded server fsyncs its files.
	// Zero means DefaultSyncInterval. Acknowledged writes survive a
	// process crash regardless; this bounds what an OS crash or power loss
	// can take.
	SyncInterval time.Duration
	// SyncAlways makes the embedded server fsync every write before
	// acknowledging it. Much slower for logs and invocation records.
	SyncAlways bool
	// MaxPending bounds the asynchronous log and invocation publishes
	// waiting for an acknowledgement; beyond it AppendLog and
	// RecordInvocation drop records (counted in Stats). Zero means
	// DefaultMaxPending.
	MaxPending int
}

// Store is an open connection to Hearth's state. Its methods are safe for
// concurrent use.
type Store struct {
	log  *slog.Logger
	srv  *server.Server // nil when connected to an external NATS
	auth *authenticator // nil unless the embedded server listens
	nc   *nats.Conn
	js   jetstream.JetStream // registry, queries
	hot  jetstream.JetStream // async publishes of logs and invocation records

	kv   jetstream.KeyValue
	obj  jetstream.ObjectStore
	logs jetstream.Stream
	invs jetstream.Stream

	maxPending int
	closedCh   chan struct{} // closed by the connection's ClosedHandler

	stop     chan struct{} // closed by Close: stops watchers
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	batch    *batcher // invocation records waiting to be published
	isClosed bool

	dropped   atomic.Uint64 // hot-path records dropped because too many were pending
	pubErrors atomic.Uint64 // hot-path publishes that failed or were not acknowledged
	lastLog   atomic.Int64  // unix nanos of the last hot-path error log line
}

// Stats counts hot-path records that did not make it into the store.
type Stats struct {
	Dropped       uint64 // refused because MaxPending publishes were outstanding
	PublishErrors uint64 // failed or unacknowledged publishes
}

// Open starts (or connects to) NATS, and creates the store's buckets and
// streams if they do not exist yet.
func Open(ctx context.Context, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log:        log,
		maxPending: opts.MaxPending,
		closedCh:   make(chan struct{}),
		stop:       make(chan struct{}),
		batch:      newBatcher(),
	}
	if s.maxPending <= 0 {
		s.maxPending = DefaultMaxPending
	}

	connOpts := []nats.Option{
		nats.Name("hearth-store"),
		nats.ClosedHandler(func(*nats.Conn) { close(s.closedCh) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
	}
	if opts.URL != "" {
		nc, err := nats.Connect(opts.URL, connOpts...)
		if err != nil {
			return nil, fmt.Errorf("store: connect %s: %w", opts.URL, err)
		}
		s.nc = nc
	} else {
		if opts.Dir == "" {
			return nil, errors.New("store: Options.Dir or Options.URL is required")
		}
		if opts.Listen != "" {
			if opts.ListenToken == "" {
				return nil, errors.New("store: Options.ListenToken is required with Options.Listen")
			}
			s.auth = newAuthenticator(opts.ListenToken)
			connOpts = append(connOpts, nats.Token(s.auth.internal))
		}
		srv, err := startServer(opts, s.auth, log)
		if err != nil {
			return nil, err
		}
		s.srv = srv
		connOpts = append(connOpts, nats.CustomInboxPrefix(InboxPrefix), nats.InProcessServer(srv))
		nc, err := nats.Connect("", connOpts...)
		if err != nil {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil, fmt.Errorf("store: connect to embedded server: %w", err)
		}
		s.nc = nc
	}

	if err := s.setup(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.runBatcher()
	return s, nil
}

func startServer(opts Options, auth *authenticator, log *slog.Logger) (*server.Server, error) {
	dir := filepath.Join(opts.Dir, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	interval := opts.SyncInterval
	if interval <= 0 {
		interval = DefaultSyncInterval
	}
	sopts := &server.Options{
		ServerName:   "hearth",
		JetStream:    true,
		StoreDir:     dir,
		DontListen:   true,
		NoSigs:       true,
		NoLog:        true,
		SyncInterval: interval,
		SyncAlways:   opts.SyncAlways,
	}
	if auth != nil {
		host, port, err := listenAddr(opts.Listen)
		if err != nil {
			return nil, err
		}
		if port != server.RANDOM_PORT {
			// The server would only log a busy port and never be ready.
			ln, err := net.Listen("tcp", opts.Listen)
			if err != nil {
				return nil, fmt.Errorf("store: nats listener: %w", err)
			}
			ln.Close()
		}
		sopts.DontListen = false
		sopts.Host, sopts.Port = host, port
		sopts.CustomClientAuthentication = auth
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("store: embedded nats: %w", err)
	}
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	srv.SetLoggerV2(serverLogger{log: log.With("component", "nats")}, debug, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if auth != nil {
			return nil, fmt.Errorf("store: embedded nats in %s did not start; is %s free?", dir, opts.Listen)
		}
		return nil, fmt.Errorf("store: embedded nats in %s did not start", dir)
	}
	return srv, nil
}

// setup creates the JetStream contexts and assets.
func (s *Store) setup(ctx context.Context) error {
	var err error
	if s.js, err = jetstream.New(s.nc); err != nil {
		return fmt.Errorf("store: jetstream: %w", err)
	}
	s.hot, err = jetstream.New(s.nc,
		jetstream.WithPublishAsyncMaxPending(s.maxPending),
		jetstream.WithPublishAsyncTimeout(30*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			s.hotError(m.Subject, err)
		}),
	)
	if err != nil {
		return fmt.Errorf("store: jetstream: %w", err)
	}

	s.kv, err = s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      FunctionsBucket,
		Description: "Hearth function registry",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", FunctionsBucket, err)
	}
	s.obj, err = s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      ArtifactsBucket,
		Description: "Hearth function artifacts",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("store: object store %s: %w", ArtifactsBucket, err)
	}
	s.logs, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        LogsStream,
		Description: "Hearth function logs",
		Subjects:    []string{logsSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      LogsMaxAge,
		MaxBytes:    LogsMaxBytes,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", LogsStream, err)
	}
	s.invs, err = s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        InvocationsStream,
		Description: "Hearth invocation records",
		Subjects:    []string{invSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      InvocationsMaxAge,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", InvocationsStream, err)
	}
	return nil
}

// Conn is the NATS connection the store uses.
func (s *Store) Conn() *nats.Conn { return s.nc }

// JetStream is the JetStream context the store uses for its registry.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Stats reports hot-path records that were lost.
func (s *Store) Stats() Stats {
	return Stats{Dropped: s.dropped.Load(), PublishErrors: s.pubErrors.Load()}
}

// Close waits (briefly) for outstanding asynchronous publishes, stops the
// store's watchers, drains the connection and, if it is embedded, shuts the
// NATS server down and waits for it.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.isClosed {
		return nil
	}
	s.isClosed = true

	var errs []error
	if s.hot != nil && !s.nc.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("store: flush: %w", err))
		}
		cancel()
	}
	close(s.stop)
	s.wg.Wait()
	s.publishBatches() // anything recorded while stopping

	if !s.nc.IsClosed() {
		if err := s.nc.Drain(); err != nil {
			s.nc.Close()
		}
	}
	select {
	case <-s.closedCh:
	case <-time.After(10 * time.Second):
		s.nc.Close()
		<-s.closedCh
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// hotError counts a failed hot-path publish and logs at most one line every
// 10 seconds.
func (s *Store) hotError(subject string, err error) {
	n := s.pubErrors.Add(1)
	s.maybeLog("store: publish failed", "subject", subject, "err", err, "failed_total", n, "dropped_total", s.dropped.Load())
}

func (s *Store) hotDrop(subject string) {
	n := s.dropped.Add(1)
	s.maybeLog("store: too many pending publishes, dropping", "subject", subject, "dropped_total", n, "failed_total", s.pubErrors.Load())
}

const hotLogEvery = 10 * time.Second

func (s *Store) maybeLog(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(hotLogEvery) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, args...)
}

// validName reports whether name can be a function name, which also makes
// it safe as a KV key and a subject token.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// serverLogger bridges the embedded server's logger to slog: notices and
// debug lines at Debug, warnings at Warn, errors at Error — except what
// outside clients did wrong (a bad token, a denied subject), which is
// their error, not the server's: Warn.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "authentication error") || strings.Contains(msg, " Violation - ") {
		l.log.Warn(msg)
		return
	}
	l.log.Error(msg)
}
func (l serverLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

var _ server.Logger = serverLogger{}
