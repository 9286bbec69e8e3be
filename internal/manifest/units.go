package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Binary size units.
const (
	Ki Bytes = 1 << 10
	Mi Bytes = 1 << 20
	Gi Bytes = 1 << 30
	Ti Bytes = 1 << 40
)

// sizeSuffixes lists the accepted unit suffixes, longest first so that "Mi"
// is tried before "M".
var sizeSuffixes = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseBytes parses a size: an integer number of bytes ("1048576"), or an
// integer with a binary ("512Ki", "128Mi", "1Gi", "1Ti") or decimal SI ("64M",
// "1G") suffix. A leading minus sign is accepted so that every Bytes value
// round-trips through its String form; Validate rejects negative limits.
func ParseBytes(s string) (Bytes, error) {
	num, mult := s, int64(1)
	for _, u := range sizeSuffixes {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	if !isInteger(num) {
		return 0, fmt.Errorf("%q is not a size; use e.g. 128Mi", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Bytes(n * mult), nil
}

// isInteger reports whether s is an optionally negative run of ASCII digits.
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// String returns b in the largest binary unit that represents it exactly
// ("128Mi", "1Gi"), or as a plain number of bytes.
func (b Bytes) String() string {
	if b != 0 {
		for _, u := range []struct {
			unit   Bytes
			suffix string
		}{{Ti, "Ti"}, {Gi, "Gi"}, {Mi, "Mi"}, {Ki, "Ki"}} {
			if b%u.unit == 0 {
				return strconv.FormatInt(int64(b/u.unit), 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML implements yaml.Unmarshaler. It accepts a plain integer or a
// string as understood by ParseBytes.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a size such as 128Mi")
	}
	if n.ShortTag() == "!!int" {
		var v int64
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("%q is too large", n.Value)
		}
		*b = Bytes(v)
		return nil
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b Bytes) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalJSON implements json.Marshaler: b is written as its String form.
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON implements json.Unmarshaler. It accepts a string as
// understood by ParseBytes or a number of bytes.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	} else {
		s = string(data)
	}
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseDuration parses a Go duration string such as "30s" or "1m30s".
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; use e.g. 30s", s)
	}
	return Duration(d), nil
}

// String returns d in Go's duration syntax, e.g. "30s" or "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler. It accepts a string as
// understood by ParseDuration; a bare number is rejected because its unit
// would be a guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a duration such as 30s")
	}
	if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
		return fmt.Errorf("%s has no unit; use e.g. %ss", n.Value, n.Value)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON implements json.Marshaler: d is written as its String form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON implements json.Unmarshaler. It accepts a string as
// understood by ParseDuration.
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("must be a duration string such as \"30s\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

var (
	_ yaml.Unmarshaler = (*Bytes)(nil)
	_ yaml.Marshaler   = Bytes(0)
	_ json.Unmarshaler = (*Bytes)(nil)
	_ json.Marshaler   = Bytes(0)
	_ yaml.Unmarshaler = (*Duration)(nil)
	_ yaml.Marshaler   = Duration(0)
	_ json.Unmarshaler = (*Duration)(nil)
	_ json.Marshaler   = Duration(0)
)
