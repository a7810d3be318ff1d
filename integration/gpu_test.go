package integration

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const agentToken = "integration-agent-token-0123456789"

// sim is a running comfysim process.
type sim struct {
	*proc
	base   string
	outDir string
}

func startSim(t testing.TB, extra ...string) *sim {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"--listen", "127.0.0.1:0", "--output-dir", out, "--step-ms", "5", "--steps", "4"}, extra...)
	p := startProc(t, "comfysim", args...)
	m := p.waitLine(`comfysim listening on (http://\S+)`, 30*time.Second)
	return &sim{proc: p, base: m[1], outDir: out}
}

// restartSim starts a new simulator process on the same address and folders.
func restartSim(t testing.TB, old *sim, extra ...string) *sim {
	t.Helper()
	addr := strings.TrimPrefix(old.base, "http://")
	args := append([]string{"--listen", addr, "--output-dir", old.outDir, "--step-ms", "5", "--steps", "4"}, extra...)
	p := startProc(t, "comfysim", args...)
	m := p.waitLine(`comfysim listening on (http://\S+)`, 30*time.Second)
	return &sim{proc: p, base: m[1], outDir: old.outDir}
}

func (s *sim) stats(t testing.TB) (st struct {
	Executions       map[string]int `json:"executions"`
	PromptsQueued    int            `json:"prompts_queued"`
	PromptsRejected  int            `json:"prompts_rejected"`
	PromptsSucceeded int            `json:"prompts_succeeded"`
}) {
	t.Helper()
	resp, err := http.Get(s.base + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

func startAgent(t testing.TB, server, name string, sims ...*sim) *proc {
	t.Helper()
	urls := make([]string, len(sims))
	for i, s := range sims {
		urls[i] = s.base
	}
	return startAgentFor(t, server, name, urls...)
}

// startAgentFor runs a gpu-agent for the ComfyUI instances at urls.
func startAgentFor(t testing.TB, server, name string, urls ...string) *proc {
	t.Helper()
	return startAgentWithToken(t, server, name, agentToken, urls...)
}

func startGPUServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	return startServer(t, data, append([]string{"--agent-token", agentToken, "--max-pending", "0"}, extra...)...)
}

// stack is a server for GPU agents with an admin client and the admin
// socket; agents and simulators join it with addAgent and withSim.
type stack struct {
	*server
	a     admin
	ev    *events
	sim   *sim  // withSim's simulator
	agent *proc // withSim's agent
	data  string
	args  []string // the server's flags, kept for restart
}

// startGPUStack starts a server for GPU agents (extra: its flags).
func startGPUStack(t testing.TB, extra ...string) *stack {
	t.Helper()
	data := t.TempDir()
	srv := startGPUServer(t, data, extra...)
	return &stack{server: srv, a: admin{t, srv.base}, ev: watch(t, srv.base), data: data, args: extra}
}

// startStack is a stack with three seats (extra: more server flags) and
// one simulator behind the agent gpu-a, ready for jobs.
func startStack(t testing.TB, extra ...string) *stack {
	t.Helper()
	return startGPUStack(t, append([]string{"--seats", "3"}, extra...)...).withSim()
}

// withSim starts a simulator (args: its flags) behind the agent gpu-a, as
// s.sim and s.agent, and waits until the server has it.
func (s *stack) withSim(args ...string) *stack {
	s.a.t.Helper()
	s.sim = startSim(s.a.t, args...)
	s.agent = s.addAgent("gpu-a", s.sim.base)
	return s
}

// addAgent starts the gpu-agent name for the ComfyUI instances at urls
// (each "URL" or "instance=URL") and waits until the server has them all
// connected.
func (s *stack) addAgent(name string, urls ...string) *proc {
	s.a.t.Helper()
	ag := startAgentFor(s.a.t, s.base, name, urls...)
	s.ev.waitUp(s.a, fmt.Sprintf("the %d instance(s) of %s", len(urls), name), 60*time.Second, func(up map[string]bool) bool {
		n := 0
		for id, connected := range up {
			if connected && strings.HasPrefix(id, name+"/") {
				n++
			}
		}
		return n >= len(urls)
	})
	return ag
}

// restart kills the server with SIGKILL and starts it again on the same
// address and data, with its flags and extra, and a new admin socket.
func (s *stack) restart(extra ...string) {
	t := s.a.t
	t.Helper()
	s.server.kill9()
	args := append(append([]string{"--listen", strings.TrimPrefix(s.base, "http://")}, s.args...), extra...)
	s.server = startGPUServer(t, s.data, args...)
	s.a, s.ev = admin{t, s.base}, watch(t, s.base)
}

// admin is a REST client of the server with the admin token.
type admin struct {
	t    testing.TB
	base string
}

func (a admin) do(method, path string, body any, out any) int {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

type job struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Worker   string `json:"worker"`
	EngineID string `json:"engine_prompt_id"`
	Failures []struct {
		Worker  string `json:"worker"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"failures"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	Result *struct {
		Outputs []struct {
			Filename  string `json:"filename"`
			Subfolder string `json:"subfolder"`
			Type      string `json:"type"`
			Size      int64  `json:"size"`
			SHA256    string `json:"sha256"`
			URL       string `json:"url"`
		} `json:"outputs"`
	} `json:"result"`
}

// imageGraph is a graph that needs no models: an empty image, saved.
func imageGraph(prefix string, color int) map[string]any {
	return map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 64, "height": 64, "batch_size": 1, "color": color}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": prefix}},
	}
}

// samplerGraph runs a KSampler, so it takes steps (and time) on the simulator.
func samplerGraph(prefix string, seed int) map[string]any {
	return map[string]any{
		"4": map[string]any{"class_type": "CheckpointLoaderSimple", "inputs": map[string]any{"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
		"5": map[string]any{"class_type": "EmptyLatentImage", "inputs": map[string]any{"width": 64, "height": 64, "batch_size": 1}},
		"6": map[string]any{"class_type": "CLIPTextEncode", "inputs": map[string]any{"text": "a workshop " + prefix, "clip": []any{"4", 1}}},
		"7": map[string]any{"class_type": "CLIPTextEncode", "inputs": map[string]any{"text": "blurry", "clip": []any{"4", 1}}},
		"3": map[string]any{"class_type": "KSampler", "inputs": map[string]any{"seed": seed, "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": []any{"4", 0}, "positive": []any{"6", 0}, "negative": []any{"7", 0}, "latent_image": []any{"5", 0}}},
		"8": map[string]any{"class_type": "VAEDecode", "inputs": map[string]any{"samples": []any{"3", 0}, "vae": []any{"4", 2}}},
		"9": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"8", 0}, "filename_prefix": prefix}},
	}
}

func (a admin) submit(user string, graph map[string]any, prio ...int) job {
	a.t.Helper()
	body := map[string]any{"user_id": user, "workflow": graph}
	if len(prio) > 0 {
		body["priority"] = prio[0]
	}
	var j job
	if st := a.do("POST", "/api/jobs", body, &j); st != 201 {
		a.t.Fatalf("submit: %d", st)
	}
	return j
}

func (a admin) job(id string) job {
	a.t.Helper()
	var j job
	a.do("GET", "/api/jobs/"+id, nil, &j)
	return j
}

// events follows the admin socket.
type events struct {
	t    testing.TB
	conn *websocket.Conn
	mu   sync.Mutex
	done map[string]string // job id -> terminal status
	upd  chan struct{}
	all  []map[string]any
}

func watch(t testing.TB, base string) *events {
	t.Helper()
	url := "ws" + strings.TrimPrefix(base, "http") + "/ws?token=" + adminToken
	// Test servers with self-signed certificates are trusted as they are.
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	conn, _, err := dialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &events{t: t, conn: conn, done: map[string]string{}, upd: make(chan struct{}, 1)}
	t.Cleanup(func() { conn.Close() })
	go func() {
		for {
			var ev struct {
				Type string `json:"type"`
				Job  *job   `json:"job"`
				Raw  map[string]any
			}
			_, raw, err := conn.ReadMessage()
			if err != nil {
				return
			}
			json.Unmarshal(raw, &ev)
			var m map[string]any
			json.Unmarshal(raw, &m)
			e.mu.Lock()
			e.all = append(e.all, m)
			if ev.Job != nil {
				switch ev.Job.Status {
				case "completed", "failed", "cancelled":
					e.done[ev.Job.ID] = ev.Job.Status
				}
			}
			e.mu.Unlock()
			select {
			case e.upd <- struct{}{}:
			default:
			}
		}
	}()
	return e
}

// waitFor waits until cond holds over the events seen.
func (e *events) waitFor(what string, timeout time.Duration, cond func(done map[string]string, all []map[string]any) bool) {
	e.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		ok := cond(e.done, e.all)
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.upd:
		case <-deadline.C:
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (e *events) waitDone(timeout time.Duration, ids ...string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d jobs to finish", len(ids)), timeout, func(done map[string]string, _ []map[string]any) bool {
		for _, id := range ids {
			if done[id] == "" {
				return false
			}
		}
		return true
	})
}

// waitWorkers waits until n GPU instances are connected.
func (e *events) waitWorkers(a admin, n int, timeout time.Duration) {
	e.t.Helper()
	e.waitUp(a, fmt.Sprintf("%d GPU instances", n), timeout, func(up map[string]bool) bool {
		got := 0
		for _, connected := range up {
			if connected {
				got++
			}
		}
		return got >= n
	})
}

// waitUp waits until cond holds over the instances the server lists
// (id -> connected), checking again on every admin event.
func (e *events) waitUp(a admin, what string, timeout time.Duration, cond func(up map[string]bool) bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		up, _ := a.workersUp()
		if cond(up) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s to connect: %v", what, up)
		}
		// workers_changed comes with every connect; the timer is a backstop.
		select {
		case <-e.upd:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// workerInfo is one instance as GET /api/workers lists it.
type workerInfo struct {
	ID              string     `json:"id"`
	Connected       bool       `json:"connected"`
	State           string     `json:"state"`
	Current         string     `json:"current_job"`
	HeldJobs        []string   `json:"held_jobs"`
	LostAt          *time.Time `json:"lost_at"`
	GraceEndsAt     *time.Time `json:"grace_ends_at"`
	GraceRemainingS *float64   `json:"grace_remaining_s"`
	SetAside        *struct {
		Reason   string            `json:"reason"`
		Failures []json.RawMessage `json:"failures"`
	} `json:"set_aside"`
	RecentFailures []json.RawMessage `json:"recent_failures"`
	JobsDone       int               `json:"jobs_done"`
}

func (a admin) workers() []workerInfo {
	a.t.Helper()
	var ws struct {
		Workers []workerInfo `json:"workers"`
	}
	if st := a.do("GET", "/api/workers", nil, &ws); st != 200 {
		a.t.Fatalf("GET /api/workers: %d", st)
	}
	return ws.Workers
}

// worker is one instance of GET /api/workers; State "absent" if unlisted.
func (a admin) worker(id string) workerInfo {
	a.t.Helper()
	for _, w := range a.workers() {
		if w.ID == id {
			return w
		}
	}
	return workerInfo{ID: id, State: "absent"}
}

// workersUp maps every GPU instance the server lists to whether it is
// connected now, and counts the connected ones.
func (a admin) workersUp() (up map[string]bool, n int) {
	up = map[string]bool{}
	for _, w := range a.workers() {
		up[w.ID] = w.Connected
		if w.Connected {
			n++
		}
	}
	return up, n
}

func sha(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// The happy path: 20 jobs from 5 users over 2 agents x 2 instances all
// complete, and the outputs the server holds are what the simulators wrote.
func TestJobsRunOnAgents(t *testing.T) {
	st := startGPUStack(t)
	srv, a, ev := st.server, st.a, st.ev
	s1, s2, s3, s4 := startSim(t), startSim(t), startSim(t), startSim(t)
	st.addAgent("gpu-a", s1.base, s2.base)
	st.addAgent("gpu-b", s3.base, s4.base)

	var ids []string
	for i := 0; i < 20; i++ {
		user := fmt.Sprintf("user%03d", i%5+1)
		ids = append(ids, a.submit(user, samplerGraph(fmt.Sprintf("job%02d", i), 1000+i)).ID)
	}
	ev.waitDone(60*time.Second, ids...)

	sims := []*sim{s1, s2, s3, s4}
	runs := map[string]int{}
	for _, s := range sims {
		for id, n := range s.stats(t).Executions {
			runs[id] += n
		}
	}
	for _, id := range ids {
		j := a.job(id)
		if j.Status != "completed" || j.Result == nil || len(j.Result.Outputs) != 1 {
			t.Fatalf("job %s: %+v", id, j)
		}
		if runs[id] != 1 {
			t.Errorf("job %s ran %d times on the simulators", id, runs[id])
		}
		o := j.Result.Outputs[0]
		// The same file, byte for byte, on the simulator that ran it.
		found := false
		for _, s := range sims {
			p := filepath.Join(s.outDir, o.Subfolder, strings.TrimPrefix(o.Filename, strings.ReplaceAll(o.Subfolder, "/", "_")+"_"))
			if _, err := os.Stat(p); err == nil && sha(t, p) == o.SHA256 {
				found = true
			}
		}
		if !found {
			t.Errorf("job %s: output %s (sha %s) matches no simulator file", id, o.Filename, o.SHA256)
		}
		// And the download is that file.
		req, _ := http.NewRequest("GET", srv.base+o.URL, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := sha256.Sum256(body)
		if resp.StatusCode != 200 || hex.EncodeToString(h[:]) != o.SHA256 || int64(len(body)) != o.Size {
			t.Errorf("download %s: %d, %d bytes", o.URL, resp.StatusCode, len(body))
		}
	}
	ws := a.workers()
	total := 0
	for _, w := range ws {
		total += w.JobsDone
	}
	if len(ws) != 4 || total != 20 {
		t.Errorf("workers %+v", ws)
	}
}
