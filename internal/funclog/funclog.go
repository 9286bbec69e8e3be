// Package funclog turns a function's raw output into log entries: it splits
// bytes into lines, bounds their size, and hands each line to a sink (the
// store's log stream).
package funclog

import (
	"bytes"
	"sync"
	"time"

	"github.com/hearthdev/hearth/internal/api"
)

// Sink receives finished log lines.
type Sink interface {
	AppendLog(api.LogEntry)
}

// Limits bound what one writer ships.
const (
	MaxLine  = 16 << 10 // longer lines are cut and marked
	MaxTotal = 1 << 20  // per writer; the rest is dropped with one notice
)

// Writer is an io.Writer that ships each line written to it as a log entry.
// It is safe for concurrent use. Call Close to flush a final partial line.
type Writer struct {
	sink     Sink
	template api.LogEntry
	now      func() time.Time

	mu      sync.Mutex
	buf     []byte
	total   int
	dropped bool
	// Dropped counts lines not shipped because of MaxTotal.
	Dropped int
}

// NewWriter returns a writer shipping lines with the function, version,
// invocation id and stream of template.
func NewWriter(sink Sink, template api.LogEntry) *Writer {
	return &Writer{sink: sink, template: template, now: time.Now}
}

// Write implements io.Writer. It never fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) > MaxLine {
				w.emitLocked(w.buf[:MaxLine], true)
				w.buf = append(w.buf[:0], w.buf[MaxLine:]...)
			}
			break
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, p[:i]...)
			w.emitLocked(w.buf, false)
			w.buf = w.buf[:0]
		} else {
			w.emitLocked(p[:i], false)
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close ships a trailing line without a newline.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emitLocked(w.buf, false)
		w.buf = nil
	}
	return nil
}

// Line ships one line (used for system messages).
func (w *Writer) Line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.emitLocked([]byte(s), false)
}

func (w *Writer) emitLocked(line []byte, cut bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if w.total+len(line) > MaxTotal {
		w.Dropped++
		if !w.dropped {
			w.dropped = true
			e := w.template
			e.Time = w.now().UTC()
			e.Stream = "system"
			e.Line = "log output over 1 MiB for this invocation; further lines dropped"
			w.sink.AppendLog(e)
		}
		return
	}
	w.total += len(line)
	e := w.template
	e.Time = w.now().UTC()
	e.Line = string(line)
	if cut {
		e.Line += " …[line cut at 16 KiB]"
	}
	w.sink.AppendLog(e)
}
