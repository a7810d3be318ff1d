package load

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/comfy-workshop/workshop/internal/procstat"
	"github.com/comfy-workshop/workshop/internal/promtext"
)

// ServerSample is the server's state at one moment: from /proc when it is
// local (--server-pid), and from its Prometheus /metrics when it has them.
type ServerSample struct {
	RSSBytes       int64 `json:"rss_bytes"`
	HWMBytes       int64 `json:"rss_peak_bytes,omitempty"` // VmHWM: the kernel's own peak RSS
	FDs            int   `json:"open_fds"`
	Threads        int   `json:"threads,omitempty"`
	Goroutines     int   `json:"goroutines,omitempty"`
	HeapInuseBytes int64 `json:"heap_inuse_bytes,omitempty"`
	// CPUSeconds is the server's user+system CPU time so far (/proc).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`

	hists histograms // from /metrics: what happened inside the server
}

func (s ServerSample) String() string {
	out := fmt.Sprintf("RSS %.1f MiB, %d open files", mib(s.RSSBytes), s.FDs)
	if s.Goroutines > 0 {
		out += fmt.Sprintf(", %d goroutines", s.Goroutines)
	}
	if s.HeapInuseBytes > 0 {
		out += fmt.Sprintf(", heap in use %.1f MiB", mib(s.HeapInuseBytes))
	}
	if s.Threads > 0 {
		out += fmt.Sprintf(", %d threads", s.Threads)
	}
	return out
}

// readProc reads /proc/PID (Linux only).
func readProc(pid int) (ServerSample, error) {
	st, err := procstat.Read(pid)
	return ServerSample{RSSBytes: st.RSS, HWMBytes: st.HWM, FDs: st.FDs, Threads: st.Threads, CPUSeconds: st.CPU.Seconds()}, err
}

// serverProbe samples the server; /metrics is asked until it answers
// other than 200 once.
type serverProbe struct {
	r         *Runner
	noMetrics atomic.Bool
}

// sample returns what can be known now; ok is false when nothing can.
func (sp *serverProbe) sample(ctx context.Context, withMetrics bool) (ServerSample, bool) {
	var s ServerSample
	ok := false
	if pid := sp.r.cfg.ServerPID; pid > 0 {
		if st, err := readProc(pid); err == nil {
			s, ok = st, true
		} else {
			sp.r.probeErrors.add("server_proc", err.Error())
		}
	}
	if !withMetrics || sp.noMetrics.Load() {
		return s, ok
	}
	rctx, cancel := context.WithTimeout(ctx, sp.r.cfg.Timeout)
	defer cancel()
	resp, err := sp.r.do(rctx, "GET", "/metrics", nil, "", true)
	if err != nil {
		sp.r.probeErrors.add("server_metrics", err.Error())
		return s, ok
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed:
		sp.noMetrics.Store(true) // this server has none for us
		return s, ok
	default:
		sp.r.probeErrors.add(fmt.Sprintf("server_metrics_http_%d", resp.StatusCode), "")
		return s, ok
	}
	s.hists = histograms{}
	promtext.Lines(resp.Body, func(series string, v float64) {
		s.hists.add(series, v)
		switch series {
		case "go_goroutines":
			s.Goroutines, ok = int(v), true
		case "go_memstats_heap_inuse_bytes":
			s.HeapInuseBytes = int64(v)
		case "process_resident_memory_bytes":
			if s.RSSBytes == 0 {
				s.RSSBytes = int64(v)
			}
		case "process_open_fds":
			if s.FDs == 0 {
				s.FDs = int(v)
			}
		case "go_threads":
			if s.Threads == 0 {
				s.Threads = int(v)
			}
		}
	})
	return s, ok
}

// settle samples until open files and goroutines stop changing (the
// server takes a moment to notice closed sockets), at most d.
func (sp *serverProbe) settle(ctx context.Context, d time.Duration) ServerSample {
	prev, _ := sp.sample(ctx, true)
	deadline := time.Now().Add(d)
	for stable := 0; stable < 3 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		cur, _ := sp.sample(ctx, true)
		if cur.FDs == prev.FDs && cur.Goroutines == prev.Goroutines {
			stable++
		} else {
			stable = 0
		}
		prev = cur
	}
	return prev
}

// peak keeps the highest of each figure.
func peak(p *ServerSample, s ServerSample) {
	p.RSSBytes = max(p.RSSBytes, s.RSSBytes)
	p.HWMBytes = max(p.HWMBytes, s.HWMBytes)
	p.FDs = max(p.FDs, s.FDs)
	p.Threads = max(p.Threads, s.Threads)
	p.Goroutines = max(p.Goroutines, s.Goroutines)
	p.HeapInuseBytes = max(p.HeapInuseBytes, s.HeapInuseBytes)
	p.CPUSeconds = max(p.CPUSeconds, s.CPUSeconds)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// The server's histograms the report explains a run's latency with: its
// own time for a submission, its store's commits and their disk time, how
// long its goroutines waited for a CPU, and its GC pauses.
var serverHists = []struct {
	key, name string
	sel       promtext.Selector
}{
	{"submit", "submit inside", promtext.Selector{Metric: "workshop_http_request_duration_seconds", Labels: []string{`method="POST"`, `route="/user/`, `/prompt"`}}},
	{"commit", "store commit", promtext.Selector{Metric: "workshop_store_commit_seconds"}},
	{"disk", "commit disk", promtext.Selector{Metric: "workshop_store_disk_seconds"}},
	{"sched", "cpu wait", promtext.Selector{Metric: "go_sched_latencies_seconds"}},
	{"gc", "gc pauses", promtext.Selector{Metric: "go_sched_pauses_total_gc_seconds"}},
}

// histograms are the server's serverHists, by key.
type histograms map[string]promtext.Histogram

// add takes one line of the Prometheus text format.
func (h histograms) add(series string, v float64) {
	for _, sh := range serverHists {
		if got := sh.sel.Add(h[sh.key], series, v); got != nil {
			h[sh.key] = got
		}
	}
}

// HistogramDelta summarises what one of the server's histograms counted
// between two samples: upper bounds of the buckets, in milliseconds
// (+Inf: past the last bucket, written as null).
type HistogramDelta struct {
	N   int64    `json:"n"`
	P50 *float64 `json:"p50_le_ms"`
	P99 *float64 `json:"p99_le_ms"`
	Max *float64 `json:"max_le_ms"`
}

func delta(before, after histograms, key string) HistogramDelta {
	s := after[key].Since(before[key])
	ms := func(v float64) *float64 {
		if math.IsInf(v, 1) || math.IsNaN(v) {
			return nil
		}
		v *= 1000
		return &v
	}
	return HistogramDelta{N: s.N, P50: ms(s.P50), P99: ms(s.P99), Max: ms(s.Max)}
}

func (d HistogramDelta) String() string {
	if d.N == 0 {
		return "none"
	}
	f := func(v *float64) string {
		if v == nil {
			return "more"
		}
		return strconv.FormatFloat(*v, 'g', 3, 64) + " ms"
	}
	return fmt.Sprintf("p50 <= %s, p99 <= %s, max <= %s (n=%d)", f(d.P50), f(d.P99), f(d.Max), d.N)
}
