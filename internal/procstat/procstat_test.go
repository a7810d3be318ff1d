package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a parenthesis: fields count from the last ')'.
	line := []byte("4242 (work shop) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 123 45 0 0 20 0 9 0 100 0 0")
	got, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 168 * 10 * time.Millisecond; got != want {
		t.Errorf("cpu %s, want %s", got, want)
	}
	if _, err := parseStat([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a short line was accepted")
	}
	if _, err := parseStat([]byte("no parenthesis")); err == nil {
		t.Error("a line without a command name was accepted")
	}
}

func TestReadSelf(t *testing.T) {
	// Burn CPU until the kernel has counted some (10 ms resolution; on a
	// busy machine that takes longer than 10 ms of wall time).
	s, err := Read(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); s.CPU == 0 && time.Now().Before(deadline); s, _ = Read(os.Getpid()) {
		for x := 0; x < 1e6; x++ {
			_ = x * x
		}
	}
	if s.CPU <= 0 || s.RSS <= 0 || s.HWM < s.RSS || s.Anon <= 0 || s.Anon+s.File > s.RSS+64<<10 || s.Threads < 1 || s.FDs < 1 {
		t.Errorf("implausible sample of this process: %+v", s)
	}
	if _, err := Read(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
