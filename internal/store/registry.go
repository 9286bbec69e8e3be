package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/manifest"
)

// record is the value stored under a function's key: the api.Function
// (Status always nil, so omitted) plus the highest version number ever handed
// out for it.
//
// Deploying a version takes two compare-and-set steps on this record:
// reserve (NextVersion++) and commit (append the version). Reserving first
// gives every concurrent deploy its own number, hence its own object name,
// before anything is uploaded, so two deploys never write the same object.
// A reserved number whose deploy fails is never handed out again. A record
// without versions (a first deploy in flight, or one that failed) is not
// shown to callers.
type record struct {
	api.Function
	NextVersion int `json:"next_version"`
}

// casAttempts bounds the compare-and-set retries of one registry change.
const casAttempts = 100

// ObjectName is the artifact object of version n of a function.
func ObjectName(function string, n int) string {
	return function + "/v" + strconv.Itoa(n)
}

func (s *Store) getRecord(ctx context.Context, name string) (record, uint64, error) {
	e, err := s.kv.Get(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return record{}, 0, ErrNotFound
		}
		return record{}, 0, fmt.Errorf("store: get %s: %w", name, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return record{}, 0, fmt.Errorf("store: decode %s: %w", name, err)
	}
	return r, e.Revision(), nil
}

// putRecord writes r if the key is still at revision rev (0: absent). It
// returns errCAS when it is not.
func (s *Store) putRecord(ctx context.Context, r record, rev uint64) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", r.Name, err)
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, r.Name, data)
	} else {
		_, err = s.kv.Update(ctx, r.Name, data, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return errCAS
	}
	if err != nil {
		return fmt.Errorf("store: put %s: %w", r.Name, err)
	}
	return nil
}

var errCAS = errors.New("revision changed")

// backoff sleeps a little, more with each attempt, with jitter.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1+min(attempt, 20)) * time.Millisecond
	d += rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PutVersion stores the artifact and appends a new version to the function,
// creating the function if needed. Version numbers are 1, 2, 3, … per
// function and never reused while the function exists; concurrent calls for
// the same name each get their own number.
//
// The version's number is reserved in the registry first, then the artifact
// is uploaded under that version's object name, then the version is
// committed to the registry. If anything fails, the uploaded object is
// deleted again, so nothing half-written remains visible.
func (s *Store) PutVersion(ctx context.Context, m manifest.Manifest, artifact io.Reader) (api.Version, error) {
	name := m.Name
	if !validName(name) {
		return api.Version{}, fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	n, incarnation, err := s.reserve(ctx, name)
	if err != nil {
		return api.Version{}, err
	}

	obj := ObjectName(name, n)
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(artifact, h)}
	if _, err := s.obj.Put(ctx, jetstream.ObjectMeta{Name: obj}, cr); err != nil {
		s.abandon(ctx, name, n, incarnation, obj)
		return api.Version{}, fmt.Errorf("store: upload %s: %w", obj, err)
	}
	v := api.Version{
		Function:  name,
		Number:    n,
		Digest:    hex.EncodeToString(h.Sum(nil)),
		Size:      cr.n,
		Manifest:  m,
		CreatedAt: time.Now().UTC(),
	}
	if err := s.commit(ctx, v, incarnation); err != nil {
		s.abandon(ctx, name, n, incarnation, obj)
		return api.Version{}, err
	}
	return v, nil
}

// reserve hands out the next version number of a function, creating its
// record if needed. It returns the number and the record's CreatedAt, which
// identifies this incarnation of the function (a deleted and re-created
// function is another one).
func (s *Store) reserve(ctx context.Context, name string) (int, time.Time, error) {
	for attempt := 0; attempt < casAttempts; attempt++ {
		r, rev, err := s.getRecord(ctx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			r = record{Function: api.Function{Name: name, CreatedAt: time.Now().UTC()}}
		case err != nil:
			return 0, time.Time{}, err
		}
		r.NextVersion = max(r.NextVersion, r.Latest) + 1
		err = s.putRecord(ctx, r, rev)
		if err == nil {
			return r.NextVersion, r.CreatedAt, nil
		}
		if !errors.Is(err, errCAS) {
			return 0, time.Time{}, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, time.Time{}, err
		}
	}
	return 0, time.Time{}, fmt.Errorf("%w: too many concurrent changes to %s", ErrConflict, name)
}

// commit appends v to the incarnation of the function that reserved it.
func (s *Store) commit(ctx context.Context, v api.Version, incarnation time.Time) error {
	for attempt := 0; attempt < casAttempts; attempt++ {
		r, rev, err := s.getRecord(ctx, v.Function)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("%w: %s was deleted during the deploy", ErrConflict, v.Function)
		case err != nil:
			return err
		}
		if !r.CreatedAt.Equal(incarnation) {
			return fmt.Errorf("%w: %s was deleted and re-created during the deploy", ErrConflict, v.Function)
		}
		r.Versions = append(r.Versions, v)
		slices.SortFunc(r.Versions, func(a, b api.Version) int { return a.Number - b.Number })
		r.Latest = max(r.Latest, v.Number)
		r.UpdatedAt = v.CreatedAt
		err = s.putRecord(ctx, r, rev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errCAS) {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: too many concurrent changes to %s", ErrConflict, v.Function)
}

// abandon cleans up after a failed deploy of version n: it deletes the
// uploaded object unless the number now belongs to someone else, and removes
// the record if it was created for this deploy alone. Best effort.
func (s *Store) abandon(ctx context.Context, name string, n int, incarnation time.Time, obj string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for attempt := 0; attempt < casAttempts; attempt++ {
		r, rev, err := s.getRecord(ctx, name)
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("store: cleanup after failed deploy", "function", name, "version", n, "err", err)
			return
		}
		ours := err == nil && r.CreatedAt.Equal(incarnation)
		if err == nil && !ours && r.NextVersion >= n {
			// A newer incarnation of the function owns this number now.
			return
		}
		if err := s.obj.Delete(ctx, obj); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("store: delete object after failed deploy", "object", obj, "err", err)
		}
		if !ours || len(r.Versions) > 0 || r.NextVersion != n {
			return
		}
		// The record was created by this deploy and holds nothing else.
		err = s.kv.Purge(ctx, name, jetstream.LastRevision(rev))
		if err == nil || !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return
		}
	}
}

// Function returns a function with all its versions (Status is nil).
func (s *Store) Function(ctx context.Context, name string) (api.Function, error) {
	if !validName(name) {
		return api.Function{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	r, _, err := s.getRecord(ctx, name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return api.Function{}, fmt.Errorf("%w: function %s", ErrNotFound, name)
		}
		return api.Function{}, err
	}
	if len(r.Versions) == 0 {
		return api.Function{}, fmt.Errorf("%w: function %s", ErrNotFound, name)
	}
	return r.Function, nil
}

// Functions returns every function, sorted by name.
func (s *Store) Functions(ctx context.Context) ([]api.Function, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("store: list functions: %w", err)
	}
	defer w.Stop()
	fns := []api.Function{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("store: list functions: watcher stopped")
			}
			if e == nil { // all current values delivered
				slices.SortFunc(fns, func(a, b api.Function) int { return strings.Compare(a.Name, b.Name) })
				return fns, nil
			}
			var r record
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				s.log.Warn("store: skipping undecodable function record", "key", e.Key(), "err", err)
				continue
			}
			if len(r.Versions) > 0 {
				fns = append(fns, r.Function)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Artifact returns the packed artifact of a version, after checking it
// against the version's digest (ErrCorrupt if it does not match).
func (s *Store) Artifact(ctx context.Context, name string, version int) ([]byte, error) {
	fn, err := s.Function(ctx, name)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(fn.Versions, func(v api.Version) bool { return v.Number == version })
	if i < 0 {
		return nil, fmt.Errorf("%w: %s version %d", ErrNotFound, name, version)
	}
	v := fn.Versions[i]
	obj := ObjectName(name, version)
	data, err := s.obj.GetBytes(ctx, obj)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("%w: artifact %s", ErrNotFound, obj)
		}
		if errors.Is(err, jetstream.ErrDigestMismatch) {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, obj, err)
		}
		return nil, fmt.Errorf("store: get %s: %w", obj, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != v.Digest || int64(len(data)) != v.Size {
		return nil, fmt.Errorf("%w: %s has sha256 %s (%d bytes), want %s (%d bytes)", ErrCorrupt, obj, got, len(data), v.Digest, v.Size)
	}
	return data, nil
}

// DeleteFunction removes a function from the registry and deletes all its
// artifacts. Its logs and invocation records stay until they expire. It
// returns how many versions the function had.
func (s *Store) DeleteFunction(ctx context.Context, name string) (int, error) {
	if !validName(name) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	var r record
	for attempt := 0; ; attempt++ {
		if attempt == casAttempts {
			return 0, fmt.Errorf("%w: too many concurrent changes to %s", ErrConflict, name)
		}
		var rev uint64
		var err error
		r, rev, err = s.getRecord(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return 0, fmt.Errorf("%w: function %s", ErrNotFound, name)
		}
		if err != nil {
			return 0, err
		}
		err = s.kv.Purge(ctx, name, jetstream.LastRevision(rev))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("store: delete %s: %w", name, err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, err
		}
	}

	// Delete every object of the function, including those of versions
	// that were reserved but never committed.
	prefix := name + "/"
	objs, err := s.obj.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return len(r.Versions), fmt.Errorf("store: list artifacts of %s: %w", name, err)
	}
	var errs []error
	for _, o := range objs {
		if !strings.HasPrefix(o.Name, prefix) {
			continue
		}
		if err := s.obj.Delete(ctx, o.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			errs = append(errs, fmt.Errorf("store: delete %s: %w", o.Name, err))
		}
	}
	if len(r.Versions) == 0 {
		return 0, fmt.Errorf("%w: function %s", ErrNotFound, name)
	}
	return len(r.Versions), errors.Join(errs...)
}

// WatchFunctions sends the name of every function that changes (deployed,
// deleted) from now on. The channel is closed when ctx is done or the store
// is closed. A slow reader delays later notifications, it does not lose them.
func (s *Store) WatchFunctions(ctx context.Context) (<-chan string, error) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.isClosed {
		return nil, errClosed
	}
	w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("store: watch functions: %w", err)
	}
	ch := make(chan string, 16)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ch)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				select {
				case ch <- e.Key():
				case <-ctx.Done():
					return
				case <-s.stop:
					return
				}
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			}
		}
	}()
	return ch, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
