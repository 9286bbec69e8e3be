package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultMemoryMB is the memory assumed for a function whose app has no row
// in the memory file.
const DefaultMemoryMB = 128

// Trace is a per-minute invocation trace in the Azure Functions 2019 format.
type Trace struct {
	Minutes   int // length of the trace in minutes
	Functions []Function
}

// Function is one function of a trace.
type Function struct {
	Name     string   // HashFunction
	App      string   // HashApp
	Counts   []uint32 // invocations per minute, len Trace.Minutes
	Duration time.Duration
	MemoryMB int
}

// Invocations is the total number of invocations of f.
func (f *Function) Invocations() int64 {
	var n int64
	for _, c := range f.Counts {
		n += int64(c)
	}
	return n
}

// Files returns the three file paths of the n-function trace in dir.
func Files(dir string, n int) (inv, run, mem string) {
	p := func(kind string) string { return filepath.Join(dir, fmt.Sprintf("%d_%s.csv", n, kind)) }
	return p("inv"), p("run"), p("mem")
}

// Load reads the n-function trace in dir: N_inv.csv, N_run.csv and N_mem.csv.
// The durations and memory files may lack rows: a function without a duration
// runs under a minute, and one without memory gets DefaultMemoryMB.
func Load(dir string, n int) (*Trace, error) {
	invPath, runPath, memPath := Files(dir, n)
	open := func(path string) (*os.File, error) {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("trace file %s not found: want %d_inv.csv, %d_run.csv and %d_mem.csv in %s", path, n, n, n, dir)
		}
		return f, err
	}
	var files [3]*os.File
	for i, p := range []string{invPath, runPath, memPath} {
		f, err := open(p)
		if err != nil {
			for _, g := range files[:i] {
				g.Close()
			}
			return nil, err
		}
		files[i] = f
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	return Parse(
		Named{invPath, files[0]},
		Named{runPath, files[1]},
		Named{memPath, files[2]},
	)
}

// Named is a reader with the name errors report it by.
type Named struct {
	Name string
	R    io.Reader
}

// ParseError reports a malformed trace file.
type ParseError struct {
	File string
	Line int // 1-based; 0 if not known
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads a trace from its invocations, durations and memory files.
func Parse(inv, run, mem Named) (*Trace, error) {
	tr := &Trace{}
	index := make(map[string]int)
	err := readCSV(inv, func(line int, header, rec []string) error {
		if line == 1 {
			if len(rec) < 4 || !strings.EqualFold(rec[0], "HashFunction") {
				return errors.New("want header HashFunction,HashApp,HashOwner,1,2,… (invocations per minute)")
			}
			tr.Minutes = len(rec) - 3
			return nil
		}
		if _, dup := index[rec[0]]; dup {
			return fmt.Errorf("function %s listed twice", rec[0])
		}
		f := Function{Name: rec[0], App: rec[1], Counts: make([]uint32, tr.Minutes), MemoryMB: DefaultMemoryMB}
		for i, s := range rec[3:] {
			c, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil {
				return fmt.Errorf("minute %d: invocation count %q is not a non-negative integer", i+1, s)
			}
			f.Counts[i] = uint32(c)
		}
		index[f.Name] = len(tr.Functions)
		tr.Functions = append(tr.Functions, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if tr.Minutes == 0 {
		return nil, &ParseError{File: inv.Name, Err: errors.New("empty file: want a header and one row per function")}
	}

	avgCol := -1
	err = readCSV(run, func(line int, header, rec []string) error {
		if line == 1 {
			avgCol = column(rec, "Average")
			if avgCol < 0 || !strings.EqualFold(rec[0], "HashFunction") {
				return errors.New("want header HashFunction,HashApp,HashOwner,Count,Average,… (durations in ms)")
			}
			return nil
		}
		i, ok := index[rec[0]]
		if !ok {
			return nil // a duration for a function that is never invoked
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(rec[avgCol]), 64)
		if err != nil || ms < 0 {
			return fmt.Errorf("average duration %q is not a non-negative number of milliseconds", rec[avgCol])
		}
		tr.Functions[i].Duration = time.Duration(ms * float64(time.Millisecond))
		return nil
	})
	if err != nil {
		return nil, err
	}

	memCol := -1
	appMem := make(map[string]int)
	err = readCSV(mem, func(line int, header, rec []string) error {
		if line == 1 {
			memCol = column(rec, "AverageAllocatedMb")
			if memCol < 0 || !strings.EqualFold(rec[0], "HashApp") {
				return errors.New("want header HashApp,HashOwner,SampleCount,AverageAllocatedMb,… (memory in MB)")
			}
			return nil
		}
		mb, err := strconv.ParseFloat(strings.TrimSpace(rec[memCol]), 64)
		if err != nil || mb < 0 {
			return fmt.Errorf("AverageAllocatedMb %q is not a non-negative number", rec[memCol])
		}
		appMem[rec[0]] = int(mb + 0.5)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range tr.Functions {
		if mb, ok := appMem[tr.Functions[i].App]; ok && mb > 0 {
			tr.Functions[i].MemoryMB = mb
		}
	}
	return tr, nil
}

// readCSV calls row for every record of r, the header being line 1. Every
// record must have as many fields as the header.
func readCSV(r Named, row func(line int, header, rec []string) error) error {
	cr := csv.NewReader(r.R)
	cr.ReuseRecord = false
	var header []string
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			if line == 1 {
				return &ParseError{File: r.Name, Err: errors.New("empty file: want a header line")}
			}
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return &ParseError{File: r.Name, Line: pe.Line, Err: pe.Err}
			}
			return &ParseError{File: r.Name, Line: line, Err: err}
		}
		if line == 1 {
			header = rec
		}
		if err := row(line, header, rec); err != nil {
			return &ParseError{File: r.Name, Line: line, Err: err}
		}
	}
}

// column is the index of the header field named name, or -1.
func column(header []string, name string) int {
	for i, h := range header {
		if strings.EqualFold(strings.TrimSpace(h), name) {
			return i
		}
	}
	return -1
}
