package trigger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/manifest"
)

// BucketPrefix prefixes the JetStream object store of a user bucket:
// bucket "uploads" is the object store hearth_bucket_uploads (stream
// OBJ_hearth_bucket_uploads).
const BucketPrefix = "hearth_bucket_"

// MaxKeyLen bounds an object key.
const MaxKeyLen = 1024

// Errors of bucket operations.
var (
	ErrNoBucket  = errors.New("no such bucket")
	ErrNoObject  = errors.New("no such object")
	ErrBadBucket = errors.New("invalid bucket name")
	ErrBadKey    = errors.New("invalid object key")
)

func storeName(bucket string) string { return BucketPrefix + bucket }

// Buckets are users' object-store buckets in JetStream. A bucket is
// created by its first put (or by a bucket trigger).
type Buckets struct {
	js jetstream.JetStream

	mu     sync.Mutex
	stores map[string]jetstream.ObjectStore
}

// NewBuckets returns the buckets of the node's JetStream.
func NewBuckets(js jetstream.JetStream) *Buckets {
	return &Buckets{js: js, stores: make(map[string]jetstream.ObjectStore)}
}

// CheckKey reports what is wrong with an object key, or nil.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrBadKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrBadKey, MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrBadKey)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%w: %q starts with /", ErrBadKey, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrBadKey, key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == ".." || seg == "." {
			return fmt.Errorf("%w: %q has a . or .. segment", ErrBadKey, key)
		}
	}
	return nil
}

func checkBucket(bucket string) error {
	if !manifest.ValidBucketName(bucket) {
		return fmt.Errorf("%w %q: use 1 to 63 lowercase letters, digits and dashes", ErrBadBucket, bucket)
	}
	return nil
}

// store returns the object store of bucket, creating it if create is set.
func (b *Buckets) store(ctx context.Context, bucket string, create bool) (jetstream.ObjectStore, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	b.mu.Lock()
	s, ok := b.stores[bucket]
	b.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := b.js.ObjectStore(ctx, storeName(bucket))
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		if !create {
			return nil, fmt.Errorf("%w %q", ErrNoBucket, bucket)
		}
		s, err = b.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      storeName(bucket),
			Description: "Hearth bucket " + bucket,
			Storage:     jetstream.FileStorage,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	b.mu.Lock()
	b.stores[bucket] = s
	b.mu.Unlock()
	return s, nil
}

func contentType(m *jetstream.ObjectMeta) string {
	if m.Headers == nil {
		return ""
	}
	return m.Headers.Get("Content-Type")
}

func object(bucket string, info *jetstream.ObjectInfo) api.Object {
	return api.Object{
		Bucket: bucket, Key: info.Name, Size: info.Size, Digest: info.Digest,
		ContentType: contentType(&info.ObjectMeta), ModTime: info.ModTime.UTC(),
	}
}

// Put stores an object, creating the bucket if needed.
func (b *Buckets) Put(ctx context.Context, bucket, key, contentType string, body io.Reader) (api.Object, error) {
	if err := CheckKey(key); err != nil {
		return api.Object{}, err
	}
	s, err := b.store(ctx, bucket, true)
	if err != nil {
		return api.Object{}, err
	}
	meta := jetstream.ObjectMeta{Name: key}
	if contentType != "" {
		meta.Headers = map[string][]string{"Content-Type": {contentType}}
	}
	info, err := s.Put(ctx, meta, body)
	if err != nil {
		return api.Object{}, fmt.Errorf("storing %s/%s: %w", bucket, key, err)
	}
	return object(bucket, info), nil
}

// Get opens an object; the caller closes the reader.
func (b *Buckets) Get(ctx context.Context, bucket, key string) (io.ReadCloser, api.Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, api.Object{}, err
	}
	s, err := b.store(ctx, bucket, false)
	if err != nil {
		return nil, api.Object{}, err
	}
	res, err := s.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, api.Object{}, fmt.Errorf("%w %q in bucket %q", ErrNoObject, key, bucket)
		}
		return nil, api.Object{}, err
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, api.Object{}, err
	}
	return res, object(bucket, info), nil
}

// Delete removes an object.
func (b *Buckets) Delete(ctx context.Context, bucket, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	s, err := b.store(ctx, bucket, false)
	if err != nil {
		return err
	}
	if err := s.Delete(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("%w %q in bucket %q", ErrNoObject, key, bucket)
		}
		return err
	}
	return nil
}

// List lists the objects of a bucket whose key starts with prefix, sorted
// by key.
func (b *Buckets) List(ctx context.Context, bucket, prefix string) ([]api.Object, error) {
	s, err := b.store(ctx, bucket, false)
	if err != nil {
		return nil, err
	}
	infos, err := s.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, err
	}
	out := []api.Object{}
	for _, info := range infos {
		if strings.HasPrefix(info.Name, prefix) {
			out = append(out, object(bucket, info))
		}
	}
	slices.SortFunc(out, func(a, b api.Object) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Names lists the buckets.
func (b *Buckets) Names(ctx context.Context) ([]string, error) {
	l := b.js.ObjectStoreNames(ctx)
	out := []string{}
	for n := range l.Name() {
		if name, ok := strings.CutPrefix(n, BucketPrefix); ok {
			out = append(out, name)
		}
	}
	if err := l.Error(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}
