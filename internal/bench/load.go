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
