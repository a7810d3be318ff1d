package benchkit

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Pct is the p-th quantile (0 to 1) of d, which it sorts; 0 when d is
// empty.
func Pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		slices.Sort(d)
	}
	return d[int(p*float64(len(d)-1))]
}

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Latencies collects durations from several goroutines.
type Latencies struct {
	mu sync.Mutex
	v  []time.Duration
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.v = append(l.v, d)
	l.mu.Unlock()
}

// Pct is the p-th quantile (0 to 1) of what was added so far.
func (l *Latencies) Pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Pct(l.v, p)
}

// EnvInts reads a comma-separated list of numbers from the environment
// variable name, or returns def when it is unset; a bad number fails tb.
func EnvInts(tb testing.TB, name string, def ...int) []int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			tb.Fatalf("%s=%q: %v", name, v, err)
		}
		out = append(out, n)
	}
	return out
}

// EnvInt is EnvInts for one number.
func EnvInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	return EnvInts(tb, name, def)[0]
}

// Background runs run in a goroutine until tb ends: then its context is
// cancelled and run waited for.
func Background(tb testing.TB, run func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
}
