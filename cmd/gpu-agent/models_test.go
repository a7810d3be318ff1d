package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/tunnel"
)

func writeManifest(t *testing.T, body string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestParseArgsModels(t *testing.T) {
	manifest := writeManifest(t, "- folder: checkpoints\n  file: a.safetensors\n  url: https://h/a\n  sha256: "+strings.Repeat("ab", 32)+"\n")
	dir := t.TempDir()
	base := []string{"--server", "http://s", "--token", "t", "--comfy", "http://h:1"}

	o, err := parseArgs(append(base, "--models", manifest, "--models-dir", dir, "--models-optional", "--models-concurrency", "3"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.modelsFile != manifest || o.modelsDir != dir || !o.modelsOptional || o.modelsConcurrency != 3 ||
		len(o.modelEntries) != 1 || o.modelEntries[0].Path() != "checkpoints/a.safetensors" {
		t.Errorf("options %+v", o)
	}
	env := map[string]string{envModels: manifest, envModelsDir: dir, envModelsOptional: "1", envModelsConcurrency: "4"}
	o, err = parseArgs(base, envOf(env))
	if err != nil || len(o.modelEntries) != 1 || !o.modelsOptional || o.modelsConcurrency != 4 {
		t.Errorf("from env: %+v %v", o, err)
	}
	o, err = parseArgs(base, envOf(nil))
	if err != nil || o.modelsFile != "" || o.modelsConcurrency != 2 {
		t.Errorf("no models: %+v %v", o, err)
	}

	bad := writeManifest(t, "- folder: ../etc\n  file: passwd\n  url: https://h/a\n")
	cases := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no dir":          {[]string{"--models", manifest}, nil, "--models needs --models-dir"},
		"missing dir":     {[]string{"--models", manifest, "--models-dir", filepath.Join(dir, "nope")}, nil, "--models-dir"},
		"dir is a file":   {[]string{"--models", manifest, "--models-dir", manifest}, nil, "not a directory"},
		"missing file":    {[]string{"--models", manifest + ".nope", "--models-dir", dir}, nil, "--models"},
		"bad manifest":    {[]string{"--models", bad, "--models-dir", dir}, nil, "would leave the models folder"},
		"concurrency":     {[]string{"--models", manifest, "--models-dir", dir, "--models-concurrency", "0"}, nil, "--models-concurrency"},
		"env optional":    {nil, map[string]string{envModelsOptional: "maybe"}, envModelsOptional},
		"env concurrency": {nil, map[string]string{envModelsConcurrency: "two"}, envModelsConcurrency},
	}
	for name, c := range cases {
		_, err := parseArgs(append(append([]string{}, base...), c.args...), envOf(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// A bad manifest is a usage error: exit 2, with the reason.
	var stderr bytes.Buffer
	if code := run(append(base, "--models", bad, "--models-dir", dir), envOf(nil), io.Discard, &stderr); code != exitBadUsage ||
		!strings.Contains(stderr.String(), "models.yaml:1") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}

	text := help(t)
	for _, want := range []string{"--models FILE", "--models-dir", "--models-optional", "--models-concurrency", envModels, envModelsDir, "HF_TOKEN"} {
		if !strings.Contains(text, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

func TestAuthorizer(t *testing.T) {
	auth := authorizer(envOf(map[string]string{"HF_TOKEN": "hf_x", "CIVITAI_TOKEN": "cv"}))
	for url, want := range map[string]string{
		"https://huggingface.co/a/b/resolve/main/m.safetensors": "Bearer hf_x",
		"https://cdn.huggingface.co/m":                          "Bearer hf_x",
		"https://civitai.com/api/download/models/1":             "Bearer cv",
		"http://huggingface.co/m":                               "", // never in clear
		"https://nothuggingface.co/m":                           "",
		"https://files.example.org/m":                           "",
	} {
		req := httptest.NewRequest(http.MethodGet, url, nil)
		auth(req)
		if got := req.Header.Get("Authorization"); got != want {
			t.Errorf("%s: %q, want %q", url, got, want)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "https://huggingface.co/m", nil)
	authorizer(envOf(map[string]string{"HUGGING_FACE_HUB_TOKEN": "old"}))(req)
	if req.Header.Get("Authorization") != "Bearer old" {
		t.Errorf("fallback variable: %q", req.Header.Get("Authorization"))
	}
}

// TestBinaryModels runs the real gpu-agent with --models: it downloads the
// models (resuming an interrupted transfer) before it connects, and stops
// with a clear message when a model cannot be had.
func TestBinaryModels(t *testing.T) {
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

	model := bytes.Repeat([]byte("weights!"), 40_000)
	h := sha256.Sum256(model)
	modelSum := hex.EncodeToString(h[:])
	var mu sync.Mutex
	var ranges []string
	slowStarted := make(chan struct{}, 1)
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow.safetensors" { // half, then nothing
			w.Header().Set("Content-Length", fmt.Sprint(len(model)))
			_, _ = w.Write(model[:len(model)/2])
			w.(http.Flusher).Flush()
			slowStarted <- struct{}{}
			<-r.Context().Done()
			return
		}
		if r.URL.Path != "/m.safetensors" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first { // cut the first transfer midway
			w.Header().Set("Content-Length", fmt.Sprint(len(model)))
			_, _ = w.Write(model[:len(model)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(model))
	}))
	t.Cleanup(files.Close)

	t.Run("syncs before connecting", func(t *testing.T) {
		dir := t.TempDir()
		manifest := writeManifest(t, fmt.Sprintf("models:\n  - folder: checkpoints\n    file: m.safetensors\n    url: %s/m.safetensors\n    sha256: %s\n    size: %d\n",
			files.URL, modelSum, len(model)))
		events, cancel := srv.Subscribe()
		defer cancel()
		p := start(t, bin, []string{envModelsDir + "=" + dir}, "--server", ts.URL, "--token", testToken, "--comfy", comfy.URL,
			"--name", "models", "--models", manifest)
		nextEvent(t, events, tunnel.AgentConnected, p)
		got, err := os.ReadFile(filepath.Join(dir, "checkpoints", "m.safetensors"))
		if err != nil || !bytes.Equal(got, model) {
			t.Fatalf("model not in place when the agent connected: %v", err)
		}
		mu.Lock()
		if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
			t.Errorf("requests %q: want a GET, then a Range resuming it", ranges)
		}
		mu.Unlock()
		if _, err := os.Stat(filepath.Join(dir, ".workshop-models.json")); err != nil {
			t.Errorf("no hash cache: %v", err)
		}
		_ = p.cmd.Process.Signal(os.Interrupt)
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.stderr())
		}
		// The order that matters is checked above: the model was in place
		// when the server saw the agent connect.

		// A restart finds the model through the hash cache: no request.
		mu.Lock()
		before := len(ranges)
		mu.Unlock()
		p = start(t, bin, []string{envModelsDir + "=" + dir}, "--server", ts.URL, "--token", testToken, "--comfy", comfy.URL,
			"--name", "models", "--models", manifest)
		nextEvent(t, events, tunnel.AgentConnected, p)
		mu.Lock()
		if len(ranges) != before {
			t.Errorf("the restart downloaded again: %q", ranges)
		}
		mu.Unlock()
		if !strings.Contains(p.stderr(), "verified=cache") {
			t.Errorf("hash cache not used:\n%s", p.stderr())
		}
		_ = p.cmd.Process.Signal(os.Interrupt)
		p.wait(t)
	})

	missing := fmt.Sprintf("- folder: loras\n  file: gone.safetensors\n  url: %s/gone.safetensors\n  sha256: %s\n", files.URL, modelSum)

	t.Run("a missing model stops the agent", func(t *testing.T) {
		p := start(t, bin, nil, "--server", ts.URL, "--token", testToken, "--comfy", comfy.URL,
			"--name", "no-models", "--models", writeManifest(t, missing), "--models-dir", t.TempDir())
		if code := p.wait(t); code != exitModels {
			t.Fatalf("exit %d, want %d\n%s", code, exitModels, p.stderr())
		}
		for _, want := range []string{"loras/gone.safetensors from " + files.URL + "/gone.safetensors", "404", "--models-optional"} {
			if !strings.Contains(p.stderr(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, p.stderr())
			}
		}
		if _, ok := srv.Agent("no-models"); ok {
			t.Error("the agent connected without its models")
		}
	})

	t.Run("--models-optional goes on", func(t *testing.T) {
		events, cancel := srv.Subscribe()
		defer cancel()
		p := start(t, bin, []string{envModelsOptional + "=true"}, "--server", ts.URL, "--token", testToken, "--comfy", comfy.URL,
			"--name", "some-models", "--models", writeManifest(t, missing), "--models-dir", t.TempDir())
		nextEvent(t, events, tunnel.AgentConnected, p)
		if !strings.Contains(p.stderr(), "going on without some models") || !strings.Contains(p.stderr(), "loras/gone.safetensors") {
			t.Errorf("missing model not reported:\n%s", p.stderr())
		}
		_ = p.cmd.Process.Signal(os.Interrupt)
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.stderr())
		}
	})

	t.Run("SIGTERM during the download exits 0", func(t *testing.T) {
		manifest := writeManifest(t, fmt.Sprintf("- {folder: checkpoints, file: slow.safetensors, url: %q}\n", files.URL+"/slow.safetensors"))
		p := start(t, bin, nil, "--server", ts.URL, "--token", testToken, "--comfy", comfy.URL,
			"--name", "slow", "--models", manifest, "--models-dir", t.TempDir())
		select {
		case <-slowStarted:
		case <-time.After(20 * time.Second):
			t.Fatalf("the download did not start\n%s", p.stderr())
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit %d\n%s", code, p.stderr())
		}
		if !strings.Contains(p.stderr(), "stopped during the model check") {
			t.Errorf("stderr:\n%s", p.stderr())
		}
		if _, ok := srv.Agent("slow"); ok {
			t.Error("connected")
		}
	})
}
