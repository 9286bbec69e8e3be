package async

import (
	"context"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/manifest"
)

// CachedPolicy builds a PolicyFunc from a lookup of a function's versions
// (registry.Get): the retry policy and destinations of the latest version,
// cached for ttl (a missing function is not cached). isNotFound reports the lookup's "no such function" error;
// on any other error the last known (or default) policy is used and the
// function counts as deployed, so a store hiccup does not dead-letter work.
func CachedPolicy(get func(ctx context.Context, name string) (api.Function, error), isNotFound func(error) bool, ttl time.Duration) PolicyFunc {
	type entry struct {
		retry   manifest.Retry
		dests   manifest.Destinations
		ok      bool
		expires time.Time
	}
	var (
		mu    sync.Mutex
		cache = map[string]entry{}
	)
	return func(name string) (manifest.Retry, manifest.Destinations, bool) {
		now := time.Now()
		mu.Lock()
		e, hit := cache[name]
		mu.Unlock()
		if hit && now.Before(e.expires) {
			return e.retry, e.dests, e.ok
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f, err := get(ctx, name)
		switch {
		case err != nil && isNotFound(err):
			// Not cached: a deploy right after must not be missed.
			mu.Lock()
			delete(cache, name)
			mu.Unlock()
			return manifest.Retry{}, manifest.Destinations{}, false
		case err != nil:
			if !hit {
				return manifest.Retry{}, manifest.Destinations{}, true
			}
			return e.retry, e.dests, e.ok
		default:
			e = entry{ok: true}
			for _, v := range f.Versions {
				if v.Number == f.Latest {
					e.retry, e.dests = v.Manifest.Retry, v.Manifest.Destinations
				}
			}
		}
		e.expires = now.Add(ttl)
		mu.Lock()
		if len(cache) > 10000 {
			clear(cache)
		}
		cache[name] = e
		mu.Unlock()
		return e.retry, e.dests, e.ok
	}
}
