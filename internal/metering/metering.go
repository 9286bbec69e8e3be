// Package metering turns invocations into billable usage: memory_GB × duration,
// with the duration rounded up to the next millisecond, as Lambda bills.
package metering

import (
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

const gib = 1 << 30

// BilledMs is d rounded up to the next whole millisecond. Every invocation
// bills at least 1 ms.
func BilledMs(d time.Duration) int64 {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	if ms < 1 {
		ms = 1
	}
	return ms
}

// GBSeconds is the usage of an instance with memoryBytes of memory running
// for billedMs milliseconds.
func GBSeconds(memoryBytes, billedMs int64) float64 {
	return float64(memoryBytes) / gib * float64(billedMs) / 1000
}

// Record builds the invocation record the store aggregates into usage.
func Record(id, function string, version int, memoryBytes int64, start time.Time, d time.Duration, status int, errMsg string, cold bool) api.Invocation {
	billed := BilledMs(d)
	return api.Invocation{
		ID:         id,
		Function:   function,
		Version:    version,
		Start:      start.UTC(),
		DurationMs: float64(d) / float64(time.Millisecond),
		BilledMs:   billed,
		MemoryMB:   memoryBytes >> 20,
		GBSeconds:  GBSeconds(memoryBytes, billed),
		Status:     status,
		Error:      errMsg,
		Cold:       cold,
	}
}
