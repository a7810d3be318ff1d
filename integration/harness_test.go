package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir   string
	buildErr error
	built    sync.Once
)

// testVersion is stamped into the binaries the tests build, as the
// Taskfile's build stamps a release's.
const testVersion = "v0.0.0-integration"

// binary builds (once per test run) and returns the path of cmd/<name>.
func binary(t testing.TB, name string) string {
	t.Helper()
	built.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "workshop-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-ldflags", "-X github.com/comfy-workshop/workshop/internal/version.stamp="+testVersion,
			"-o", binDir+string(os.PathSeparator), "../cmd/...")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("binary %s: %v", name, err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// proc is a running binary whose output is watched for lines.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	name string

	mu    sync.Mutex
	lines []string
	subs  []chan string
	done  chan struct{}
	err   error
}

// startProc runs a built binary with args; it is killed at test end.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t, name), args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{t: t, cmd: cmd, name: name, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.line(sc.Text())
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s output:\n%s", name, strings.Join(p.lines, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

func (p *proc) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, s)
	for _, c := range p.subs {
		select {
		case c <- s:
		default:
		}
	}
}

// waitLine waits for an output line matching re and returns its submatches.
func (p *proc) waitLine(re string, timeout time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	c := make(chan string, 1024)
	p.mu.Lock()
	for _, l := range p.lines {
		if m := rx.FindStringSubmatch(l); m != nil {
			p.mu.Unlock()
			return m
		}
	}
	p.subs = append(p.subs, c)
	p.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l := <-c:
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, re)
		case <-timer.C:
			p.t.Fatalf("%s did not print %q within %s", p.name, re, timeout)
		}
	}
}

// kill9 kills the process without warning and waits for it.
func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(ctx context.Context) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.kill9()
		return ctx.Err()
	}
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.kill9()
	}
}
