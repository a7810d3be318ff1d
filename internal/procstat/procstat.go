// Package procstat reads a local process's CPU time, memory and open files
// from /proc (Linux), for benchmarks and the load tool: the CPU a server
// spent per operation stays meaningful on a machine shared with other
// work, where wall-clock rates and latencies do not.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Sample is one reading of a process.
type Sample struct {
	// CPU is the user plus system time of all its threads so far.
	CPU time.Duration
	// RSS is its resident memory now, HWM the highest it has been. RSS
	// is Anon (the heap, stacks) plus File (mapped files' pages in memory,
	// such as a bbolt file's: the kernel can drop those).
	RSS, HWM   int64
	Anon, File int64
	Threads    int
	FDs        int
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// Read samples process pid.
func Read(pid int) (Sample, error) {
	var s Sample
	cpu, err := CPU(pid)
	if err != nil {
		return s, err
	}
	s.CPU = cpu
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.RSS = n << 10
		case "VmHWM:":
			s.HWM = n << 10
		case "RssAnon:":
			s.Anon = n << 10
		case "RssFile:":
			s.File = n << 10
		case "Threads:":
			s.Threads = int(n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	return s, nil
}

// CPU returns the user plus system CPU time process pid has used, at the
// kernel's 10 ms resolution.
func CPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(raw)
}

// parseStat reads utime and stime (fields 14 and 15) of a stat line. The
// command name (field 2) is in parentheses and may hold spaces, so fields
// are counted from its closing parenthesis.
func parseStat(raw []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: unreadable stat line %.60q", raw)
	}
	f := strings.Fields(string(raw[i+1:]))
	// f[0] is field 3 (state): utime is field 14, so f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: short stat line %.60q", raw)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("procstat: unreadable times in %.60q", raw)
	}
	return time.Duration(ut+st) * clockTick, nil
}
