package load

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
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
	var st ServerSample
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			st.RSSBytes = n << 10
		case "VmHWM:":
			st.HWMBytes = n << 10
		case "Threads:":
			st.Threads = int(n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return st, err
	}
	st.FDs = len(fds)
	return st, nil
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
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
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
	}
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
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
