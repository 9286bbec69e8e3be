package jsonappend

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"
)

func same(t *testing.T, v any, got []byte, err error) {
	t.Helper()
	want, werr := json.Marshal(v)
	if (werr != nil) != (err != nil) {
		t.Fatalf("%#v: errors differ: json.Marshal %v, here %v", v, werr, err)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("%#v:\n got %s\nwant %s", v, got, want)
	}
}

func TestMatchesMarshal(t *testing.T) {
	for _, s := range []string{"", "go-http", "a\"b\\c", "<&>", "tab\there\n", "\x00\x1f", "ü € \u2028\u2029", "\xff\xfe bad utf-8", "\x7f"} {
		same(t, s, String(nil, s), nil)
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1.5, 0.000125, 1e-6, 9.99e-7, 1e-7, 5e-9, 1e20, 1e21, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, math.NaN(), math.Inf(-1)} {
		b, err := Float(nil, f)
		same(t, f, b, err)
	}
	for _, tm := range []time.Time{{}, time.Date(2026, 11, 27, 10, 19, 38, 123456789, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600+30*60)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		b, err := Time(nil, tm)
		same(t, tm, b, err)
	}
	for _, h := range []http.Header{nil, {}, {"B": {"2"}, "A": {"1", "x\"y"}, "Nil": nil, "Empty": {}, "<K>": {"&"}}} {
		same(t, h, Header(nil, h), nil)
	}
}

func FuzzMatchesMarshal(f *testing.F) {
	f.Add("X-Key", "value", "other", 1.25, int64(1764238778123456789))
	f.Add("<&>", "\x00\xff", "", 1e-7, int64(-62135596800000000))
	f.Fuzz(func(t *testing.T, k, v1, v2 string, x float64, ns int64) {
		same(t, k, String(nil, k), nil)
		b, err := Float(nil, x)
		same(t, x, b, err)
		tm := time.Unix(0, ns).UTC()
		b, err = Time(nil, tm)
		same(t, tm, b, err)
		h := http.Header{k: {v1, v2}, v1: {k}}
		same(t, h, Header(nil, h), nil)
	})
}
