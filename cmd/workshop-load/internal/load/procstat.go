package load

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStat is what /proc says about a local process.
type ProcStat struct {
	RSSBytes int64 `json:"rss_bytes"`
	HWMBytes int64 `json:"rss_peak_bytes"` // VmHWM: the process's own peak RSS
	Threads  int   `json:"threads"`
	FDs      int   `json:"open_fds"`
}

// ReadProc reads /proc/PID (Linux only).
func ReadProc(pid int) (ProcStat, error) {
	var st ProcStat
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

func mib(b int64) float64 { return float64(b) / (1 << 20) }
