package store

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

func checkSameAsMarshal(t *testing.T, invs []api.Invocation) {
	t.Helper()
	want, werr := json.Marshal(invs)
	got, gerr := appendInvocations(nil, invs)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("errors differ: json.Marshal %v, appendInvocations %v", werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("appendInvocations\n%s\njson.Marshal\n%s", got, want)
	}
}

func TestAppendInvocationsMatchesMarshal(t *testing.T) {
	start := time.Date(2026, 11, 27, 10, 19, 38, 123456789, time.UTC)
	base := api.Invocation{ID: "0123456789abcdef01234567", Function: "go-http", Version: 3, Start: start,
		DurationMs: 1.234567, BilledMs: 2, MemoryMB: 64, GBSeconds: 0.000125, Status: 200, Cold: true}
	cases := [][]api.Invocation{nil, {}, {base}}
	for _, mut := range []func(*api.Invocation){
		func(i *api.Invocation) { i.Error = "function \"x\" crashed: <exit 2> & more\n\t\x01 ü \u2028 \xff" },
		func(i *api.Invocation) { i.DurationMs, i.GBSeconds = 0, 0 },
		func(i *api.Invocation) { i.DurationMs, i.GBSeconds = 1e-7, 5e-9 },
		func(i *api.Invocation) { i.DurationMs, i.GBSeconds = 1e21, 123456789.125 },
		func(i *api.Invocation) { i.DurationMs = -0.5; i.Status = 499; i.Cold = false },
		func(i *api.Invocation) { i.Start = time.Time{} },
		func(i *api.Invocation) { i.Start = start.In(time.FixedZone("x", 5*3600+30*60)) },
		func(i *api.Invocation) { i.Start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
		func(i *api.Invocation) { i.ID, i.Function = "", "" },
	} {
		inv := base
		mut(&inv)
		cases = append(cases, []api.Invocation{inv, base})
	}
	for _, c := range cases {
		checkSameAsMarshal(t, c)
	}
	// What json.Marshal refuses, appendInvocations refuses.
	for _, mut := range []func(*api.Invocation){
		func(i *api.Invocation) { i.DurationMs = math.NaN() },
		func(i *api.Invocation) { i.GBSeconds = math.Inf(1) },
		func(i *api.Invocation) { i.Start = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		inv := base
		mut(&inv)
		checkSameAsMarshal(t, []api.Invocation{inv})
	}
}

func FuzzAppendInvocations(f *testing.F) {
	f.Add("0123456789abcdef01234567", "fn", "", int64(1764238778123456789), 1.5, 0.000125, 200, true)
	f.Add("x", "<&>", "bad \"input\"\n", int64(0), 1e-7, 1e22, 502, false)
	f.Fuzz(func(t *testing.T, id, fn, errMsg string, unixNano int64, dur, gbs float64, status int, cold bool) {
		inv := api.Invocation{ID: id, Function: fn, Error: errMsg, Start: time.Unix(0, unixNano).UTC(),
			DurationMs: dur, BilledMs: unixNano % 1000, MemoryMB: int64(status), GBSeconds: gbs, Status: status, Cold: cold}
		checkSameAsMarshal(t, []api.Invocation{inv, inv})
	})
}

func BenchmarkAppendInvocations(b *testing.B) {
	invs := make([]api.Invocation, 64)
	for i := range invs {
		invs[i] = api.Invocation{ID: "0123456789abcdef01234567", Function: "go-http", Version: 3, Start: time.Now().UTC(),
			DurationMs: 1.234567, BilledMs: 2, MemoryMB: 64, GBSeconds: 0.000125, Status: 200}
	}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(invs)
		}
	})
	b.Run("appendInvocations", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = appendInvocations(buf[:0], invs)
		}
	})
}
