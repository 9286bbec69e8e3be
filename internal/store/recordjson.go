package store

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/hearthdev/hearth/internal/api"
)

// appendInvocations appends invs as the JSON array json.Marshal makes of
// them, byte for byte (TestAppendInvocationsMatchesMarshal,
// FuzzAppendInvocations), without reflection: the batcher encodes one record
// per invocation, and encoding/json spent more on that than the gateway on
// the rest of a warm invocation's bookkeeping.
func appendInvocations(b []byte, invs []api.Invocation) ([]byte, error) {
	if invs == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '[')
	for i := range invs {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendInvocation(b, &invs[i]); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func appendInvocation(b []byte, inv *api.Invocation) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendJSONString(b, inv.ID)
	b = append(b, `,"function":`...)
	b = appendJSONString(b, inv.Function)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(inv.Version), 10)
	b = append(b, `,"start":`...)
	if y := inv.Start.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("store: record %s: start %v: year outside [0,9999]", inv.ID, inv.Start)
	}
	b = append(b, '"')
	b = inv.Start.AppendFormat(b, "2006-01-02T15:04:05.999999999Z07:00")
	b = append(b, '"')
	b = append(b, `,"duration_ms":`...)
	if b, err = appendJSONFloat(b, inv.DurationMs); err != nil {
		return nil, err
	}
	b = append(b, `,"billed_ms":`...)
	b = strconv.AppendInt(b, inv.BilledMs, 10)
	b = append(b, `,"memory_mb":`...)
	b = strconv.AppendInt(b, inv.MemoryMB, 10)
	b = append(b, `,"gb_seconds":`...)
	if b, err = appendJSONFloat(b, inv.GBSeconds); err != nil {
		return nil, err
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(inv.Status), 10)
	if inv.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, inv.Error)
	}
	b = append(b, `,"cold":`...)
	b = strconv.AppendBool(b, inv.Cold)
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json quotes it: as is when it
// needs no escape (the ids and names of records always), else through
// json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONFloat appends f as encoding/json writes a float64.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("store: unsupported value %v in a record", f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}
