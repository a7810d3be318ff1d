// Package promtext reads histograms from a server's Prometheus text
// exposition (/metrics), so that a benchmark or the load tool can say what
// happened inside the server during a run: the buckets before and after,
// and the quantiles of what was counted in between.
package promtext

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Histogram is cumulative bucket counts by upper bound (seconds, or the
// histogram's unit), summed over every series a Selector matched.
type Histogram map[float64]float64

// Selector picks the buckets of one histogram: its metric name (without
// _bucket) and substrings its label set must contain.
type Selector struct {
	Metric string
	Labels []string
}

// Add adds one exposition line (the series and its value) to h when it is
// a bucket of s, and returns h (made when nil).
func (s Selector) Add(h Histogram, series string, v float64) Histogram {
	name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	if name != s.Metric+"_bucket" {
		return h
	}
	for _, l := range s.Labels {
		if !strings.Contains(labels, l) {
			return h
		}
	}
	i := strings.Index(labels, `le="`)
	if i < 0 {
		return h
	}
	le, err := strconv.ParseFloat(strings.TrimSuffix(labels[i+4:], `"`), 64)
	if err != nil {
		return h
	}
	if h == nil {
		h = Histogram{}
	}
	h[le] += v
	return h
}

// Read reads the histogram s selects from an exposition.
func Read(r io.Reader, s Selector) (Histogram, error) {
	h := Histogram{}
	err := Lines(r, func(series string, v float64) { h = s.Add(h, series, v) })
	return h, err
}

// Lines calls fn with every sample line of an exposition.
func Lines(r io.Reader, fn func(series string, v float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			fn(f[0], v)
		}
	}
	return sc.Err()
}

// Summary is what a histogram counted between two readings: how many, and
// the upper bounds of the buckets holding the median, the 99th percentile
// and the largest (+Inf when past the last bound).
type Summary struct {
	N             int64
	P50, P99, Max float64
}

// Since summarises what h counted after before (nil: from the start).
func (h Histogram) Since(before Histogram) Summary {
	les := make([]float64, 0, len(h))
	for le := range h {
		les = append(les, le)
	}
	slices.Sort(les)
	var s Summary
	if len(les) == 0 {
		return s
	}
	total := h[les[len(les)-1]] - before[les[len(les)-1]]
	s.N = int64(total)
	if total <= 0 {
		return s
	}
	s.P50, s.P99, s.Max = math.NaN(), math.NaN(), math.NaN()
	for _, le := range les {
		cum := h[le] - before[le]
		if math.IsNaN(s.P50) && cum >= 0.5*total {
			s.P50 = le
		}
		if math.IsNaN(s.P99) && cum >= 0.99*total {
			s.P99 = le
		}
		if cum >= total {
			s.Max = le
			break
		}
	}
	return s
}
