package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/google/uuid"
)

// The test binary doubles as comfysim: with COMFYSIM_MAIN=1 it runs main,
// so the tests start real processes without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("COMFYSIM_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd    *exec.Cmd
	base   string
	stderr *bytes.Buffer
	done   chan error
}

// startSim runs comfysim on port 0 and reads its address from stdout.
func startSim(t *testing.T, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"--listen", "127.0.0.1:0", "--output-dir", dir + "/out", "--input-dir", dir + "/in", "--temp-dir", dir + "/tmp", "--user-dir", dir + "/user"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "COMFYSIM_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "comfysim listening on http://") {
		cmd.Process.Kill()
		t.Fatalf("first line %q: %v\n%s", line, err, p.stderr)
	}
	go io.Copy(io.Discard, stdout)
	p.base = strings.TrimSpace(strings.TrimPrefix(line, "comfysim listening on "))
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		p.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // harmless once it has exited
		<-exited
	})
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(20 * time.Second):
		t.Fatal("comfysim did not exit")
		return -1
	}
}

func TestServesAndStopsOnSIGTERM(t *testing.T) {
	p := startSim(t, "--step-ms", "0")
	c, _ := comfy.New(p.base)
	n, err := c.QueueRemaining(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("GET /prompt: %d %v", n, err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "shutting down") {
		t.Errorf("no shutdown log:\n%s", p.stderr)
	}
}

func TestCrashFaultKillsTheProcessMidJob(t *testing.T) {
	p := startSim(t, "--step-ms", "0", "--crash-node", "SaveImage")
	c, _ := comfy.New(p.base, comfy.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx := context.Background()
	f := c.Follow(ctx, "crash", comfy.WithPingInterval(time.Second))
	defer f.Close()
	if _, err := f.WaitFor(ctx, func(ev comfy.Event) bool { return ev.Type == comfy.EventStatus }); err != nil {
		t.Fatal(err)
	}
	// The process may die before it answers: either outcome is fine.
	_, _ = c.QueuePrompt(ctx, comfy.PromptRequest{ClientID: "crash", PromptID: uuid.NewString(), Prompt: comfy.Prompt{
		"1": {ClassType: "EmptyImage", Inputs: map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}},
		"2": {ClassType: "SaveImage", Inputs: map[string]any{"images": comfy.Link("1", 0), "filename_prefix": "x"}},
	}})
	if code := p.wait(t); code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, p.stderr)
	}
	if _, err := f.WaitFor(ctx, func(ev comfy.Event) bool { return ev.Type == comfy.EventDisconnected }); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(p.base + "/prompt"); err == nil {
		t.Error("server still answering after the crash")
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--steps", "-1"}, {"--nope"}, {"--prompt-ids", "weird"}, {"extra"}, {"--log-level", "loud"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != 2 || stderr.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "crash-node") {
		t.Errorf("--help: %d %q", code, stdout.String())
	}
	if code := run(context.Background(), []string{"--listen", "256.0.0.1:1"}, &stdout, &stderr); code != 1 {
		t.Errorf("bad listen address: %d", code)
	}
}
