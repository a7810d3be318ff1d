package load

import (
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// maxSamples bounds what one latency series keeps; past it, samples replace
// earlier ones at random (reservoir sampling), so percentiles stay honest
// and memory stays flat on long runs.
const maxSamples = 1 << 20

// series collects latency samples.
type series struct {
	mu    sync.Mutex
	v     []time.Duration
	seen  int64
	state uint64 // xorshift state for the reservoir
}

func (s *series) add(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if len(s.v) < maxSamples {
		s.v = append(s.v, d)
		return
	}
	if s.state == 0 {
		s.state = 0x9e3779b97f4a7c15
	}
	s.state ^= s.state << 13
	s.state ^= s.state >> 7
	s.state ^= s.state << 17
	if i := s.state % uint64(s.seen); i < maxSamples {
		s.v[i] = d
	}
}

// Percentiles is a latency summary, in milliseconds.
type Percentiles struct {
	N    int64   `json:"n"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func (s *series) summary() Percentiles {
	s.mu.Lock()
	v := slices.Clone(s.v)
	n := s.seen
	s.mu.Unlock()
	return summarize(v, n)
}

func summarize(v []time.Duration, n int64) Percentiles {
	if len(v) == 0 {
		return Percentiles{N: n}
	}
	slices.Sort(v)
	var sum time.Duration
	for _, d := range v {
		sum += d
	}
	return Percentiles{
		N: n, Min: ms(v[0]), Max: ms(v[len(v)-1]), Mean: ms(sum / time.Duration(len(v))),
		P50: ms(quantile(v, 0.50)), P90: ms(quantile(v, 0.90)), P99: ms(quantile(v, 0.99)),
	}
}

// quantile is the nearest-rank quantile of sorted samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())) / 1000 }

// Jain returns Jain's fairness index of x: (Σx)² / (n·Σx²), from 1/n (one
// gets everything) to 1 (all equal). All zeros count as fair.
func Jain(x []float64) float64 {
	if len(x) == 0 {
		return 1
	}
	var sum, sq float64
	for _, v := range x {
		sum += v
		sq += v * v
	}
	if sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(x)) * sq)
}

// errorCounts counts errors by kind, keeping one example message per kind.
type errorCounts struct {
	mu      sync.Mutex
	n       map[string]int64
	example map[string]string
	total   int64
}

func (e *errorCounts) add(kind, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n, e.example = map[string]int64{}, map[string]string{}
	}
	e.n[kind]++
	e.total++
	if _, ok := e.example[kind]; !ok && msg != "" {
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		e.example[kind] = msg
	}
}

func (e *errorCounts) count() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// ErrorKind is one kind of error and how often it happened.
type ErrorKind struct {
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
	Example string `json:"example,omitempty"`
}

func (e *errorCounts) list() []ErrorKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ErrorKind, 0, len(e.n))
	for k, n := range e.n {
		out = append(out, ErrorKind{Kind: k, Count: n, Example: e.example[k]})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}
