package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sort"
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
}

// Result summarises a load run.
type Result struct {
	Requests int
	Errors   int         // transport errors and non-2xx answers
	Status   map[int]int // answers by status
	Elapsed  time.Duration
	P50, P99 time.Duration
	Max      time.Duration
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

// Run drives the load and returns its result.
func (l Load) Run(ctx context.Context, c *http.Client) Result {
	if l.Concurrency <= 0 {
		l.Concurrency = 1
	}
	if l.Method == "" {
		l.Method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	type worker struct {
		lat    []time.Duration
		status map[int]int
		errs   int
	}
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
	r := Result{Status: map[int]int{}, Elapsed: time.Since(start)}
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
