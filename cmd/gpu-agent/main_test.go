package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/tunnel"
)

const testToken = "agent-token-for-tests"

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// parseArgs parses and checks as run does, without connecting; an error
// is what the binary would print.
func parseArgs(args []string, getenv func(string) string) (*options, error) {
	o := &options{}
	cmd := command(o)
	cmd.Run = func(context.Context, []string) error { return o.check() }
	var stderr bytes.Buffer
	if code := cli.Run(context.Background(), cmd, args, cli.IO{Stdout: io.Discard, Stderr: &stderr, Getenv: getenv}); code != 0 {
		return nil, errors.New(stderr.String())
	}
	return o, nil
}

// help is the output of --help.
func help(t *testing.T) string {
	var stdout bytes.Buffer
	if code := run([]string{"--help"}, envOf(nil), &stdout, io.Discard); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	return stdout.String()
}

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"--server", "https://w.example.org", "--token", "t",
		"--comfy", "http://127.0.0.1:8188", "--comfy", "big=127.0.0.1:8189", "--comfy", "http://127.0.0.1:8190/",
		"--name", "gpu-1", "--report-interval", "2s", "--queue-target", "25ms", "--insecure", "--log-format", "json"}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []tunnel.Instance{
		{Name: "0", URL: "http://127.0.0.1:8188"},
		{Name: "big", URL: "http://127.0.0.1:8189"},
		{Name: "2", URL: "http://127.0.0.1:8190"},
	}
	if fmt.Sprint(o.instances) != fmt.Sprint(want) {
		t.Errorf("instances %v, want %v", o.instances, want)
	}
	if o.name != "gpu-1" || o.reportInterval != 2*time.Second || o.queueTarget != 25*time.Millisecond || !o.insecure || o.logFormat != "json" {
		t.Errorf("options %+v", o)
	}

	// Environment only; the name defaults to the hostname.
	env := map[string]string{
		envServer: "http://s:8080", envToken: "tok", envComfy: "http://127.0.0.1:8188, http://127.0.0.1:8189",
		envInterval: "750ms", envInsecure: "true",
		envFingerprint: strings.Repeat("AB:", 31) + "AB",
	}
	o, err = parseArgs(nil, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if o.server != "http://s:8080" || o.token != "tok" || len(o.instances) != 2 || o.instances[1].Name != "1" ||
		o.name != host || o.reportInterval != 750*time.Millisecond || !o.insecure {
		t.Errorf("from env: %+v", o)
	}
	// A flag wins over the environment.
	o, err = parseArgs([]string{"--comfy", "http://h:1", "--name", "n", "--insecure=false"}, envOf(env))
	if err != nil || len(o.instances) != 1 || o.name != "n" || o.insecure {
		t.Errorf("flags over env: %+v %v", o, err)
	}

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err = parseArgs([]string{"--server", "http://s", "--token-file", tokenFile, "--comfy", "http://h:1"}, envOf(nil))
	if err != nil || o.token != "from-file" {
		t.Errorf("token file: %+v %v", o, err)
	}
}

func TestParseArgsErrors(t *testing.T) {
	base := []string{"--server", "http://s", "--token", "t", "--comfy", "http://h:1"}
	cases := map[string][]string{
		"no server":       {"--token", "t", "--comfy", "http://h:1"},
		"bad server":      {"--server", "ftp://s", "--token", "t", "--comfy", "http://h:1"},
		"no token":        {"--server", "http://s", "--comfy", "http://h:1"},
		"no comfy":        {"--server", "http://s", "--token", "t"},
		"bad comfy":       append(base, "--comfy", "ftp://x"),
		"dup name":        append(base, "--comfy", "0=http://h:2"),
		"bad name":        append(base, "--name", "has space"),
		"bad interval":    append(base, "--report-interval", "soon"),
		"tiny interval":   append(base, "--report-interval", "1ms"),
		"negative queue":  append(base, "--queue-target", "-1ms"),
		"bad fingerprint": append(base, "--server-fingerprint", "abc"),
		"bad log format":  append(base, "--log-format", "xml"),
		"bad log level":   append(base, "--log-level", "loud"),
		"unknown flag":    append(base, "--bogus"),
		"extra argument":  append(base, "extra"),
	}
	for name, args := range cases {
		if _, err := parseArgs(args, envOf(nil)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	text := help(t)
	for _, want := range []string{"--server", "--token", "--comfy", "--name", "--report-interval", "--queue-target", "--insecure",
		"--server-fingerprint", "--log-format", envServer, envToken, envComfy, envName} {
		if !strings.Contains(text, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--token", "t"}, envOf(nil), io.Discard, &stderr); code != exitBadUsage ||
		!strings.Contains(stderr.String(), "--server") {
		t.Errorf("missing --server: exit %d, %q", code, stderr.String())
	}
}

func TestParseGPUs(t *testing.T) {
	out := "0, NVIDIA H100 80GB HBM3, GPU-aaaa, 37, 10240, 81559\n1, NVIDIA H100 80GB HBM3, GPU-bbbb, [N/A], 0, 81559\n"
	gpus, err := parseGPUs([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 2 || gpus[0].Name != "NVIDIA H100 80GB HBM3" || gpus[0].UtilizationPct != 37 ||
		gpus[0].MemoryUsedMiB != 10240 || gpus[0].MemoryTotalMiB != 81559 || gpus[1].Index != 1 ||
		gpus[1].UtilizationPct != -1 || gpus[1].UUID != "GPU-bbbb" {
		t.Fatalf("%+v", gpus)
	}
	if _, err := parseGPUs([]byte("0, x\n")); err == nil {
		t.Error("short line accepted")
	}
}

func fakeComfy(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/system_stats":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"system": {"os": "posix", "comfyui_version": "0.3.40"},
				"devices": [{"name": "cuda:0 NVIDIA H100", "type": "cuda", "index": 0, "vram_total": 85899345920, "vram_free": 84000000000}]}`)
		case "/hello":
			_, _ = io.WriteString(w, "hello from comfy")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestProberReport(t *testing.T) {
	comfy := fakeComfy(t)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer broken.Close()
	smi := filepath.Join(t.TempDir(), "nvidia-smi")
	script := "#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, GPU-1234, 55, 2048, 81559'\n"
	if err := os.WriteFile(smi, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := newProber([]tunnel.Instance{
		{Name: "0", URL: comfy.URL},
		{Name: "1", URL: broken.URL},
		{Name: "2", URL: "http://127.0.0.1:1"},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p.smi = smi
	r := p.Report(context.Background())
	if len(r.Instances) != 3 {
		t.Fatalf("%+v", r)
	}
	if in := r.Instances[0]; !in.Healthy || !bytes.Contains(in.SystemStats, []byte(`"vram_total":85899345920`)) {
		t.Errorf("healthy instance: %+v", in)
	}
	if in := r.Instances[1]; in.Healthy || !strings.Contains(in.Error, "500") {
		t.Errorf("broken instance: %+v", in)
	}
	if in := r.Instances[2]; in.Healthy || in.Error == "" {
		t.Errorf("down instance: %+v", in)
	}
	if len(r.GPUs) != 1 || r.GPUs[0].UtilizationPct != 55 || r.GPUs[0].MemoryTotalMiB != 81559 {
		t.Errorf("gpus: %+v", r.GPUs)
	}
}

// TestBinary builds the real gpu-agent and runs it against a test server.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := agentBinary(t)

	srv := tunnel.NewServer(tunnel.ServerConfig{Token: testToken})
	mux := http.NewServeMux()
	mux.Handle("GET /tunnel", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = srv.Close() })
	comfy := fakeComfy(t)

	t.Run("connects, serves, exits 0 on SIGTERM", func(t *testing.T) {
		events, cancel := srv.Subscribe()
		defer cancel()
		p := start(t, bin, nil, "--server", ts.URL, "--token", testToken, "--comfy", comfy.URL,
			"--name", "e2e", "--report-interval", "100ms")
		e := nextEvent(t, events, tunnel.AgentConnected, p)
		in, ok := e.Agent.Report.Instance("0")
		if e.Agent.Name != "e2e" || !ok || !in.Healthy || in.URL != comfy.URL || !bytes.Contains(in.SystemStats, []byte("H100")) {
			t.Fatalf("hello: %+v", e.Agent)
		}
		nextEvent(t, events, tunnel.AgentReported, p)

		client := &http.Client{Transport: &http.Transport{DialContext: srv.Dialer("e2e", "0")}}
		defer client.CloseIdleConnections()
		resp, err := client.Get("http://comfy/hello")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello from comfy" {
			t.Fatalf("through the tunnel: %q", body)
		}

		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0\n%s", code, p.stderr())
		}
		nextEvent(t, events, tunnel.AgentDisconnected, p)
	})

	t.Run("environment and SIGINT", func(t *testing.T) {
		events, cancel := srv.Subscribe()
		defer cancel()
		p := start(t, bin, []string{envServer + "=" + ts.URL, envToken + "=" + testToken, envComfy + "=" + comfy.URL, envName + "=from-env",
			cli.EnvName(envPrefix, "log-format") + "=json"})
		if e := nextEvent(t, events, tunnel.AgentConnected, p); e.Agent.Name != "from-env" {
			t.Fatalf("name %q", e.Agent.Name)
		}
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d after SIGINT, want 0\n%s", code, p.stderr())
		}
		if !strings.Contains(p.stderr(), `"msg":"gpu-agent stopped"`) {
			t.Errorf("no JSON log line:\n%s", p.stderr())
		}
	})

	t.Run("wrong token exits 1 with a message", func(t *testing.T) {
		p := start(t, bin, nil, "--server", ts.URL, "--token", "wrong", "--comfy", comfy.URL, "--name", "bad")
		if code := p.wait(t); code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, p.stderr())
		}
		if !strings.Contains(p.stderr(), "rejected the agent token") {
			t.Fatalf("stderr lacks the reason:\n%s", p.stderr())
		}
		if _, ok := srv.Agent("bad"); ok {
			t.Fatal("agent registered with a wrong token")
		}
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		p := start(t, bin, nil, "--token", "x")
		if code := p.wait(t); code != 2 || !strings.Contains(p.stderr(), "--server") {
			t.Fatalf("exit %d\n%s", code, p.stderr())
		}
		p = start(t, bin, nil, "--help")
		if code := p.wait(t); code != 0 || !strings.Contains(p.stdout.String(), "Usage: gpu-agent") {
			t.Fatalf("--help: exit %d\n%s", code, p.stdout.String())
		}
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

// agentBinary builds the gpu-agent once for all the tests that run it.
func agentBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "gpu-agent-test-"); binErr != nil {
			return
		}
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", filepath.Join(binDir, "gpu-agent"), ".")
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "gpu-agent")
}

type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	errBuf bytes.Buffer
	stdout bytes.Buffer
	done   chan error
	waited bool
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errBuf.String()
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.errBuf.Write(b)
}

func start(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	p.cmd.Stderr = lockedWriter{p}
	p.cmd.Stdout = &p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.waited {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns the exit code, failing the test if the process runs on.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		p.waited = true
	case <-time.After(30 * time.Second):
		t.Fatalf("gpu-agent still running after 30 s\n%s", p.stderr())
	}
	return p.cmd.ProcessState.ExitCode()
}

func nextEvent(t *testing.T, events <-chan tunnel.Event, want tunnel.EventType, p *proc) tunnel.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Type == want {
				return e
			}
		case err := <-p.done:
			p.done <- err
			t.Fatalf("gpu-agent exited (%v) while waiting for %v\n%s", err, want, p.stderr())
		case <-timeout:
			t.Fatalf("no %v event within 30 s\n%s", want, p.stderr())
		}
	}
}

// TestRealNvidiaSMI runs the real nvidia-smi where there is one (a GPU host).
func TestRealNvidiaSMI(t *testing.T) {
	smi, err := exec.LookPath("nvidia-smi")
	if err != nil {
		t.Skip("no nvidia-smi on this host")
	}
	gpus, err := queryGPUs(context.Background(), smi)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 {
		t.Fatal("nvidia-smi listed no GPU")
	}
	for _, g := range gpus {
		t.Logf("GPU %d %q %s: %.0f%% busy, %.0f/%.0f MiB", g.Index, g.Name, g.UUID, g.UtilizationPct, g.MemoryUsedMiB, g.MemoryTotalMiB)
		if g.Name == "" || g.MemoryTotalMiB <= 0 {
			t.Errorf("implausible GPU %+v", g)
		}
	}
}
