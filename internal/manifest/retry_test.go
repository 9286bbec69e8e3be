package manifest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestRetryAndDestinationsGood(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(*Manifest) bool
	}{
		{"absent means defaults", wasmBase, func(m *Manifest) bool {
			return m.Retry == Retry{} && m.Retry.Effective() == Retry{3, Duration(time.Second), Duration(6 * time.Hour)}
		}},
		{"full retry", wasmBase + "retry: {attempts: 5, backoff: 250ms, max_age: 2h}", func(m *Manifest) bool {
			return m.Retry == Retry{5, Duration(250 * time.Millisecond), Duration(2 * time.Hour)}
		}},
		{"partial retry keeps other defaults", wasmBase + "retry: {attempts: 1}", func(m *Manifest) bool {
			e := m.Retry.Effective()
			return e.Attempts == 1 && e.Backoff == Duration(time.Second) && e.MaxAge == Duration(6*time.Hour)
		}},
		{"retry bounds", wasmBase + "retry: {attempts: 100, backoff: 100ms, max_age: 1m}", nil},
		{"retry upper bounds", wasmBase + "retry: {backoff: 1h, max_age: 168h}", nil},
		{"empty retry", wasmBase + "retry: {}", func(m *Manifest) bool { return m.Retry == Retry{} }},
		{"null retry", wasmBase + "retry:\n", nil},
		{"function destinations", wasmBase + "destinations: {on_success: audit, on_failure: alert-1}", func(m *Manifest) bool {
			return m.Destinations == Destinations{"audit", "alert-1"}
		}},
		{"url destinations", wasmBase + "destinations:\n  on_success: https://example.com/hook?x=1\n  on_failure: http://10.0.0.1:9000/fail\n", func(m *Manifest) bool {
			return IsURL(m.Destinations.OnSuccess) && IsURL(m.Destinations.OnFailure)
		}},
		{"only on_failure", wasmBase + "destinations: {on_failure: dead}", func(m *Manifest) bool { return m.Destinations.OnSuccess == "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil && !tt.check(m) {
				t.Errorf("unexpected result %+v", m)
			}
		})
	}
}

func TestRetryAndDestinationsBad(t *testing.T) {
	tests := []struct {
		name, yaml     string
		field, problem string
	}{
		{"attempts zero", wasmBase + "retry: {attempts: 0}", "retry.attempts", "out of range; use 1 to 100"},
		{"attempts negative", wasmBase + "retry: {attempts: -1}", "retry.attempts", "out of range"},
		{"attempts too many", wasmBase + "retry: {attempts: 101}", "retry.attempts", "out of range"},
		{"attempts not int", wasmBase + "retry: {attempts: many}", "retry.attempts", "not a whole number"},
		{"backoff zero", wasmBase + "retry: {backoff: 0s}", "retry.backoff", "out of range"},
		{"backoff too small", wasmBase + "retry: {backoff: 99ms}", "retry.backoff", "out of range; use 100ms to 1h0m0s"},
		{"backoff too large", wasmBase + "retry: {backoff: 61m}", "retry.backoff", "out of range"},
		{"backoff negative", wasmBase + "retry: {backoff: -1s}", "retry.backoff", "out of range"},
		{"backoff no unit", wasmBase + "retry: {backoff: 5}", "retry.backoff", "no unit"},
		{"max_age too small", wasmBase + "retry: {max_age: 59s}", "retry.max_age", "out of range"},
		{"max_age too large", wasmBase + "retry: {max_age: 169h}", "retry.max_age", "out of range"},
		{"max_age zero", wasmBase + "retry: {max_age: 0s}", "retry.max_age", "out of range"},
		{"retry unknown field", wasmBase + "retry: {tries: 3}", "retry.tries", "unknown field"},
		{"retry not mapping", wasmBase + "retry: 3", "retry", "must be a mapping"},
		{"destinations unknown", wasmBase + "destinations: {on_timeout: x}", "destinations.on_timeout", "unknown field"},
		{"destinations not mapping", wasmBase + "destinations: x", "destinations", "must be a mapping"},
		{"destination bad name", wasmBase + "destinations: {on_success: Not_A_Name}", "destinations.on_success", "neither a function name nor an http(s) URL"},
		{"destination ftp", wasmBase + "destinations: {on_failure: 'ftp://x/y'}", "destinations.on_failure", "not an http or https URL"},
		{"destination url without host", wasmBase + "destinations: {on_failure: 'http:///x'}", "destinations.on_failure", "not a valid URL"},
		{"destination self", wasmBase + "destinations: {on_success: hello}", "destinations.on_success", "invoke itself forever"},
		{"destination space", wasmBase + "destinations: {on_success: 'https://a b'}", "destinations.on_success", "space"},
		{"destination list", wasmBase + "destinations: {on_success: [a]}", "destinations.on_success", "must be a string"},
		{"destination too long", wasmBase + "destinations: {on_success: 'https://x/" + strings.Repeat("a", 2048) + "'}", "destinations.on_success", "longer than 2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", m)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %T %v is not a *FieldError", err, err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("got field %q problem %q; want field %q problem containing %q", fe.Field, fe.Problem, tt.field, tt.problem)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	r := Retry{Backoff: Duration(100 * time.Millisecond)}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 40: MaxBackoff, 1000: MaxBackoff} {
		if got := r.Delay(n); got != want {
			t.Errorf("Delay(%d) = %s, want %s", n, got, want)
		}
	}
	if got := (Retry{}).Delay(2); got != 2*time.Second {
		t.Errorf("default Delay(2) = %s, want 2s", got)
	}
}

func TestRetryRoundTrip(t *testing.T) {
	for _, src := range []string{
		wasmBase,
		wasmBase + "retry: {attempts: 4, max_age: 1h}\ndestinations: {on_failure: 'https://h.example/x'}\n",
	} {
		m, err := Parse([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(y), "retry"); got != (m.Retry != Retry{}) {
			t.Errorf("YAML of %+v mentions retry: %v\n%s", m.Retry, got, y)
		}
		back, err := Parse(y)
		if err != nil || back.Retry != m.Retry || back.Destinations != m.Destinations {
			t.Errorf("round trip via\n%s\ngot %+v, %v", y, back, err)
		}
		j, _ := json.Marshal(m)
		if got := strings.Contains(string(j), "destinations"); got != (m.Destinations != Destinations{}) {
			t.Errorf("JSON %s mentions destinations: %v", j, got)
		}
	}
}
