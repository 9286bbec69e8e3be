package manifest

import (
	"errors"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of Retry and Destinations, enforced by Validate.
const (
	MaxRetryAttempts  = 100
	MinRetryBackoff   = Duration(100 * time.Millisecond)
	MaxRetryBackoff   = Duration(time.Hour)
	MinRetryMaxAge    = Duration(time.Minute)
	MaxRetryMaxAge    = Duration(7 * 24 * time.Hour)
	MaxDestinationLen = 2048

	// MaxBackoff caps the exponentially growing delay between two attempts.
	MaxBackoff = time.Hour
)

// Effective returns r with its zero fields set to the defaults.
func (r Retry) Effective() Retry {
	if r.Attempts == 0 {
		r.Attempts = DefaultRetryAttempts
	}
	if r.Backoff == 0 {
		r.Backoff = Duration(DefaultRetryBackoff)
	}
	if r.MaxAge == 0 {
		r.MaxAge = Duration(DefaultRetryMaxAge)
	}
	return r
}

// Delay is how long to wait after failed attempt n (1-based) before the
// next one: Backoff × 2^(n-1), capped at MaxBackoff. Zero fields of r count
// as their defaults.
func (r Retry) Delay(n int) time.Duration {
	d := time.Duration(r.Effective().Backoff)
	for i := 1; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// IsURL reports whether a destination is a URL (as opposed to a function
// name).
func IsURL(dest string) bool {
	return strings.HasPrefix(dest, "http://") || strings.HasPrefix(dest, "https://")
}

func (m *Manifest) checkRetry() *FieldError {
	r := m.Retry
	switch {
	case r.Attempts < 0 || r.Attempts > MaxRetryAttempts:
		return bad("retry.attempts", "%d is out of range; use 1 to %d (the total number of executions)", r.Attempts, MaxRetryAttempts)
	case r.Backoff != 0 && (r.Backoff < MinRetryBackoff || r.Backoff > MaxRetryBackoff):
		return bad("retry.backoff", "%s is out of range; use %s to %s", r.Backoff, MinRetryBackoff, MaxRetryBackoff)
	case r.MaxAge != 0 && (r.MaxAge < MinRetryMaxAge || r.MaxAge > MaxRetryMaxAge):
		return bad("retry.max_age", "%s is out of range; use %s to %s", r.MaxAge, MinRetryMaxAge, Duration(MaxRetryMaxAge))
	}
	return nil
}

func (m *Manifest) checkDestinations() *FieldError {
	for _, d := range []struct{ field, value string }{
		{"destinations.on_success", m.Destinations.OnSuccess},
		{"destinations.on_failure", m.Destinations.OnFailure},
	} {
		if d.value == "" {
			continue
		}
		if err := checkDestination(d.value, m.Name); err != nil {
			return bad(d.field, "%s", err)
		}
	}
	return nil
}

// checkDestination validates one destination of the function self.
func checkDestination(dest, self string) error {
	if len(dest) > MaxDestinationLen {
		return errors.New("is longer than 2048 bytes")
	}
	if !utf8.ValidString(dest) || strings.ContainsAny(dest, "\x00\r\n\t ") {
		return errors.New("contains a space, a control character or invalid UTF-8")
	}
	if IsURL(dest) {
		u, err := url.Parse(dest)
		if err != nil || u.Host == "" || u.Hostname() == "" {
			return errors.New(quote(dest) + " is not a valid URL; use e.g. https://example.com/hook")
		}
		return nil
	}
	if strings.Contains(dest, "://") {
		return errors.New(quote(dest) + " is not an http or https URL")
	}
	if !nameRE.MatchString(dest) {
		return errors.New(quote(dest) + " is neither a function name nor an http(s) URL")
	}
	if dest == self {
		return errors.New("is the function itself, which would invoke itself forever; name another function")
	}
	return nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
