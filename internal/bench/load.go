package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Load is a closed-loop HTTP load: Concurrency workers, each sending its
// next request as soon as the previous one is answered, over kept-alive
// connections.
type Load struct {
	URL         string
	Method      string
	Body        []byte
	Header      http.Header
	Concurrency int
	Duration    time.Duration
	// MaxRequests stops the load early after this many requests (0: no cap).
	MaxRequests int
	// Lean sends hand-written HTTP/1.1 on raw kept-alive TCP connections
	// instead of using net/http's client (see runLean).
	Lean bool
	// Process runs the load generator in a child process (see
	// MaybeRunLoad), so that it does not count in this process's CPU time.
	Process bool
}

// Result summarises a load run.
type Result struct {
	Requests int
	Errors   int         // transport errors and non-2xx answers
	Status   map[int]int // answers by status
	Elapsed  time.Duration
	P50, P99 time.Duration
	Max      time.Duration
	// CPU is the CPU time this process used during the run; with
	// Load.Process, the servers' share alone.
	CPU time.Duration
	// Err says why a Process run failed.
	Err string `json:",omitempty"`
}

// RPS is the throughput of successful requests.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

// NewClient returns an HTTP client suited to load generation against
// loopback: enough idle connections for every worker.
func NewClient(conc int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conc * 2,
		MaxIdleConnsPerHost: conc * 2,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// Run drives the load and returns its result. c is not used by a Lean
// load.
func (l Load) Run(ctx context.Context, c *http.Client) Result {
	if l.Concurrency <= 0 {
		l.Concurrency = 1
	}
	if l.Method == "" {
		l.Method = http.MethodGet
	}
	if l.Process {
		c0 := cpuTime()
		r := l.runProcess(ctx)
		r.CPU = cpuTime() - c0
		return r
	}
	if l.Lean {
		return l.runLean(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	ws := make([]*worker, l.Concurrency)
	var mu sync.Mutex
	sent := 0
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, 4096), status: map[int]int{}}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if l.MaxRequests > 0 {
					mu.Lock()
					if sent >= l.MaxRequests {
						mu.Unlock()
						return
					}
					sent++
					mu.Unlock()
				}
				req, _ := http.NewRequestWithContext(ctx, l.Method, l.URL, bytes.NewReader(l.Body))
				for k, v := range l.Header {
					req.Header[k] = v
				}
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					if ctx.Err() != nil {
						return // the run ended mid-request
					}
					w.errs++
					w.lat = append(w.lat, time.Since(t0))
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				w.lat = append(w.lat, time.Since(t0))
				w.status[resp.StatusCode]++
				if resp.StatusCode >= 300 {
					w.errs++
				}
			}
		}()
	}
	wg.Wait()
	return summarize(ws, time.Since(start))
}

// worker is what one load worker saw.
type worker struct {
	lat    []time.Duration
	status map[int]int
	errs   int
}

// summarize adds up the workers of a run that took elapsed.
func summarize(ws []*worker, elapsed time.Duration) Result {
	r := Result{Status: map[int]int{}, Elapsed: elapsed}
	var all []time.Duration
	for _, w := range ws {
		all = append(all, w.lat...)
		r.Errors += w.errs
		for s, n := range w.status {
			r.Status[s] += n
		}
	}
	r.Requests = len(all)
	if len(all) > 0 {
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		r.P50 = all[len(all)/2]
		r.P99 = all[len(all)*99/100]
		r.Max = all[len(all)-1]
	}
	return r
}

// Interleave runs a and b in alternating rounds (a, b, a, b, …) that add up
// to each load's Duration, and merges each side's rounds. A baseline and
// its contender then see the same background load, which on a shared
// machine drifts over seconds.
func Interleave(ctx context.Context, c *http.Client, a, b Load, rounds int) (Result, Result) {
	if rounds < 1 {
		rounds = 1
	}
	var ra, rb []Result
	la, lb := a, b
	la.Duration, lb.Duration = a.Duration/time.Duration(rounds), b.Duration/time.Duration(rounds)
	for range rounds {
		ra = append(ra, la.Run(ctx, c))
		rb = append(rb, lb.Run(ctx, c))
	}
	return merge(ra), merge(rb)
}

// merge adds up results; percentiles are taken as the median of the
// rounds' percentiles.
func merge(rs []Result) Result {
	out := Result{Status: map[int]int{}}
	var p50s, p99s []time.Duration
	for _, r := range rs {
		out.Requests += r.Requests
		out.Errors += r.Errors
		out.CPU += r.CPU
		out.Elapsed += r.Elapsed
		for s, n := range r.Status {
			out.Status[s] += n
		}
		p50s, p99s = append(p50s, r.P50), append(p99s, r.P99)
		out.Max = max(out.Max, r.Max)
	}
	sort.Slice(p50s, func(i, j int) bool { return p50s[i] < p50s[j] })
	sort.Slice(p99s, func(i, j int) bool { return p99s[i] < p99s[j] })
	out.P50, out.P99 = p50s[len(p50s)/2], p99s[len(p99s)/2]
	return out
}

// runLean drives the load over hand-written HTTP/1.1 on raw kept-alive TCP
// connections: each worker writes the same pre-encoded request and reads
// the status line, the headers and a Content-Length body, as wrk does. The
// client then costs a fraction of net/http's, so on a small machine the
// figures say more about the servers compared than about the load
// generator. Responses must carry Content-Length (not chunked).
func (l Load) runLean(ctx context.Context) Result {
	u, err := url.Parse(l.URL)
	if err != nil {
		return Result{Requests: 1, Errors: 1, Status: map[int]int{}}
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", l.Method, u.RequestURI(), u.Host)
	for k, vs := range l.Header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	if len(l.Body) > 0 || l.Method == http.MethodPost || l.Method == http.MethodPut {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(l.Body))
	}
	req.WriteString("\r\n")
	req.Write(l.Body)
	wire := req.Bytes()

	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ws := make([]*worker, l.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ws {
		w := &worker{lat: make([]time.Duration, 0, 4096), status: map[int]int{}}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for ctx.Err() == nil {
				if conn == nil {
					c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
					if err != nil {
						w.errs++
						time.Sleep(time.Millisecond)
						continue
					}
					// A read in flight when the run ends returns then.
					c.SetDeadline(deadline)
					conn, br = c, bufio.NewReaderSize(c, 16<<10)
				}
				t0 := time.Now()
				code, keep, err := roundTrip(conn, br, wire)
				if err != nil {
					conn.Close()
					conn = nil
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						return // the run ended mid-request
					}
					w.errs++
					w.lat = append(w.lat, time.Since(t0))
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
				w.status[code]++
				if code >= 300 {
					w.errs++
				}
				if !keep {
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	wg.Wait()
	return summarize(ws, time.Since(start))
}

// roundTrip writes one pre-encoded request and reads its response,
// returning the status code and whether the connection stays open.
func roundTrip(conn net.Conn, br *bufio.Reader, wire []byte) (code int, keep bool, err error) {
	if _, err := conn.Write(wire); err != nil {
		return 0, false, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	keep = true
	n := 0
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case asciiEqualFold(k, "Content-Length"):
			if n, err = strconv.Atoi(string(v)); err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case asciiEqualFold(k, "Transfer-Encoding"):
			return 0, false, errors.New("chunked responses are not supported by the lean client")
		case asciiEqualFold(k, "Connection"):
			keep = !asciiEqualFold(v, "close")
		}
	}
	if _, err := br.Discard(n); err != nil {
		return 0, false, err
	}
	return code, keep, nil
}

func asciiEqualFold(b []byte, s string) bool {
	return len(b) == len(s) && strings.EqualFold(string(b), s)
}
