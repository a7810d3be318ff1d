package models

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Phases of a transfer, as logged.
const (
	phaseDownload = "downloading"
	phaseHash     = "verifying"
	phasePartial  = "checking partial download"
)

// tracker follows the running downloads and hashes and logs their progress
// on every tick.
type tracker struct {
	log *slog.Logger

	mu     sync.Mutex
	active []*transfer
}

// transfer is one download or hash in progress. done is updated by the
// worker; the other fields after start belong to the tracker.
type transfer struct {
	path  string
	phase string
	total atomic.Int64 // -1 while unknown
	done  atomic.Int64

	lastDone int64
	lastTime time.Time
	rate     float64 // bytes per second, smoothed; 0 until the first tick
}

func (t *tracker) start(path, phase string, done, total int64) *transfer {
	tr := &transfer{path: path, phase: phase, lastDone: done, lastTime: time.Now()}
	tr.done.Store(done)
	tr.total.Store(total)
	t.mu.Lock()
	t.active = append(t.active, tr)
	t.mu.Unlock()
	return tr
}

func (t *tracker) finish(tr *transfer) {
	t.mu.Lock()
	t.active = slices.DeleteFunc(t.active, func(x *transfer) bool { return x == tr })
	t.mu.Unlock()
}

// tick logs one line per active transfer: bytes, percent, speed and ETA.
func (t *tracker) tick(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.active {
		done, total := tr.done.Load(), tr.total.Load()
		if dt := now.Sub(tr.lastTime).Seconds(); dt > 0 {
			r := float64(done-tr.lastDone) / dt
			if tr.rate == 0 {
				tr.rate = r
			} else {
				tr.rate = 0.5*tr.rate + 0.5*r
			}
		}
		tr.lastDone, tr.lastTime = done, now
		attrs := []any{"file", tr.path, "done", formatBytes(done)}
		if total > 0 {
			attrs = append(attrs, "total", formatBytes(total), "percent", fmt.Sprintf("%.1f", 100*float64(done)/float64(total)))
		}
		attrs = append(attrs, "speed", formatRate(tr.rate))
		if total > 0 && tr.rate > 0 {
			eta := time.Duration(float64(total-done) / tr.rate * float64(time.Second))
			attrs = append(attrs, "eta", eta.Round(time.Second).String())
		}
		t.log.Info(tr.phase, attrs...)
	}
}

// formatBytes writes n in decimal units: 512 B, 3.4 MB, 6.94 GB.
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.*f %cB", decimals(f), f, " kMGT"[i])
}

func decimals(f float64) int {
	switch {
	case f < 10:
		return 2
	case f < 100:
		return 1
	}
	return 0
}

// formatRate writes bytes per second as MB/s.
func formatRate(r float64) string {
	return fmt.Sprintf("%.1f MB/s", r/1e6)
}
