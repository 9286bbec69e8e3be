package store

import (
	"strconv"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/jsonappend"
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
	b = jsonappend.String(b, inv.ID)
	b = append(b, `,"function":`...)
	b = jsonappend.String(b, inv.Function)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(inv.Version), 10)
	b = append(b, `,"start":`...)
	if b, err = jsonappend.Time(b, inv.Start); err != nil {
		return nil, err
	}
	b = append(b, `,"duration_ms":`...)
	if b, err = jsonappend.Float(b, inv.DurationMs); err != nil {
		return nil, err
	}
	b = append(b, `,"billed_ms":`...)
	b = strconv.AppendInt(b, inv.BilledMs, 10)
	b = append(b, `,"memory_mb":`...)
	b = strconv.AppendInt(b, inv.MemoryMB, 10)
	b = append(b, `,"gb_seconds":`...)
	if b, err = jsonappend.Float(b, inv.GBSeconds); err != nil {
		return nil, err
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(inv.Status), 10)
	if inv.Error != "" {
		b = append(b, `,"error":`...)
		b = jsonappend.String(b, inv.Error)
	}
	b = append(b, `,"cold":`...)
	b = strconv.AppendBool(b, inv.Cold)
	return append(b, '}'), nil
}
