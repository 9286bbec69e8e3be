package funclog

import (
	"strings"
	"sync"
	"testing"

	"github.com/hearthdev/hearth/internal/api"
)

type sink struct {
	mu    sync.Mutex
	lines []api.LogEntry
}

func (s *sink) AppendLog(e api.LogEntry) {
	s.mu.Lock()
	s.lines = append(s.lines, e)
	s.mu.Unlock()
}

func TestWriterSplitsLines(t *testing.T) {
	s := &sink{}
	w := NewWriter(s, api.LogEntry{Function: "f", InvocationID: "id1", Stream: "stderr"})
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r\nthree"))
	w.Close()
	var got []string
	for _, e := range s.lines {
		if e.Function != "f" || e.InvocationID != "id1" || e.Stream != "stderr" || e.Time.IsZero() {
			t.Fatalf("entry %+v lacks template fields", e)
		}
		got = append(got, e.Line)
	}
	if strings.Join(got, "|") != "one|two|three" {
		t.Fatalf("lines = %q", got)
	}
}

func TestWriterBoundsOutput(t *testing.T) {
	s := &sink{}
	w := NewWriter(s, api.LogEntry{Stream: "stderr"})
	w.Write([]byte(strings.Repeat("x", MaxLine+10)))
	w.Close()
	if len(s.lines) != 2 || !strings.Contains(s.lines[0].Line, "cut at 16 KiB") {
		t.Fatalf("long line: %d entries", len(s.lines))
	}
	s.lines = nil
	w = NewWriter(s, api.LogEntry{Stream: "stderr"})
	line := strings.Repeat("y", 1000) + "\n"
	for range 2000 {
		w.Write([]byte(line))
	}
	if w.Dropped == 0 || s.lines[len(s.lines)-1].Stream != "system" {
		t.Fatalf("no drop notice after 2 MB of logs (dropped %d)", w.Dropped)
	}
	if len(s.lines) > MaxTotal/1000+2 {
		t.Fatalf("shipped %d lines past the limit", len(s.lines))
	}
}
