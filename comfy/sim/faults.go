package sim

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Faults make the simulator misbehave on purpose, for tests. A node
// matches by id ("7") or class ("KSampler"). They can be set at start
// (Config.Faults, comfysim flags), replaced at run time with POST
// /sim/fault (the same JSON), or given for one prompt in POST /prompt's
// extra_data as {"sim": {...}} (those add to the server's).
type Faults struct {
	// FailNode raises an exception in the node: execution_error, history
	// status "error".
	FailNode string `json:"fail_node,omitempty"`
	// FailMessage is the exception text (default "simulated failure").
	FailMessage string `json:"fail_message,omitempty"`
	// OOMNode fails the node as a GPU out of memory does in ComfyUI:
	// execution_error with exception_type torch.OutOfMemoryError and
	// ComfyUI's tips in the message. "*" (here and in the other node
	// faults) matches every node, so every prompt fails.
	OOMNode string `json:"oom_node,omitempty"`
	// HangNode blocks in the node until the prompt is interrupted.
	HangNode string `json:"hang_node,omitempty"`
	// CrashNode ends the process (exit status 3) when the node starts, with
	// no reply, event or history: a GPU host dying mid-job.
	CrashNode string `json:"crash_node,omitempty"`
	// DropWSAtStep cuts every socket (no close frame) when a sampler
	// reaches this step, once per prompt.
	DropWSAtStep int `json:"drop_ws_at_step,omitempty"`
	// ViewDelay waits before /view answers.
	ViewDelay Duration `json:"view_delay,omitempty"`
	// ViewBytesPerSec throttles /view bodies.
	ViewBytesPerSec int64 `json:"view_bytes_per_sec,omitempty"`
	// ProgressText makes samplers send a binary progress-text frame (type
	// 3) at their start, as some nodes do.
	ProgressText bool `json:"progress_text,omitempty"`
	// DropPromptAnswers queues the next N prompts and then closes their
	// connections without an answer (with Instant, once the prompt ran):
	// a reply lost with the network. Server-wide only.
	DropPromptAnswers int `json:"drop_prompt_answers,omitempty"`
}

// Duration is a time.Duration that reads and writes as "1.5s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "250ms" or a number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := time.ParseDuration(s)
		*d = Duration(v)
		return err
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

// merged adds per-prompt faults to the server's.
func (f Faults) merged(p Faults) Faults {
	if p.FailNode != "" {
		f.FailNode, f.FailMessage = p.FailNode, p.FailMessage
	}
	if p.OOMNode != "" {
		f.OOMNode = p.OOMNode
	}
	if p.HangNode != "" {
		f.HangNode = p.HangNode
	}
	if p.CrashNode != "" {
		f.CrashNode = p.CrashNode
	}
	if p.DropWSAtStep != 0 {
		f.DropWSAtStep = p.DropWSAtStep
	}
	if p.ProgressText {
		f.ProgressText = true
	}
	return f
}

// takePromptAnswerDrop reports whether to drop this /prompt answer, using
// up one of DropPromptAnswers.
func (s *Server) takePromptAnswerDrop() bool {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if s.faults.DropPromptAnswers <= 0 {
		return false
	}
	s.faults.DropPromptAnswers--
	return true
}

func (s *Server) currentFaults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults
}

// SetFaults replaces the server's faults.
func (s *Server) SetFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = f
	s.faultMu.Unlock()
	s.log.Info("faults set", "faults", f)
}

// DropSockets cuts every open socket now and returns how many there were.
func (s *Server) DropSockets() int { return s.hub.dropAll() }

// counters are what /sim/stats reports.
type counters struct {
	mu         sync.Mutex
	executions map[string]int
	queued     atomic.Int64
	rejected   atomic.Int64
	succeeded  atomic.Int64
	failed     atomic.Int64
	interrupts atomic.Int64
	uploads    atomic.Int64
	views      atomic.Int64
	viewBytes  atomic.Int64
	wsConnects atomic.Int64
}

func (c *counters) executed(id string) {
	c.mu.Lock()
	if c.executions == nil {
		c.executions = map[string]int{}
	}
	c.executions[id]++
	c.mu.Unlock()
}

// Stats is the reply of GET /sim/stats.
type Stats struct {
	// Executions counts, per prompt id, how often execution started: a
	// job that ran twice shows 2.
	Executions       map[string]int `json:"executions"`
	PromptsQueued    int64          `json:"prompts_queued"`
	PromptsRejected  int64          `json:"prompts_rejected"`
	PromptsSucceeded int64          `json:"prompts_succeeded"`
	PromptsFailed    int64          `json:"prompts_failed"`
	Interrupted      int64          `json:"prompts_interrupted"`
	QueueRemaining   int            `json:"queue_remaining"`
	Running          string         `json:"running"`
	Uploads          int64          `json:"uploads"`
	Views            int64          `json:"views"`
	ViewBytes        int64          `json:"view_bytes"`
	WSConnected      int            `json:"ws_connected"`
	WSConnects       int64          `json:"ws_connects_total"`
	Faults           Faults         `json:"faults"`
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	c.mu.Lock()
	ex := make(map[string]int, len(c.executions))
	for k, v := range c.executions {
		ex[k] = v
	}
	c.mu.Unlock()
	return Stats{
		Executions: ex, PromptsQueued: c.queued.Load(), PromptsRejected: c.rejected.Load(),
		PromptsSucceeded: c.succeeded.Load(), PromptsFailed: c.failed.Load(), Interrupted: c.interrupts.Load(),
		QueueRemaining: s.queue.remaining(), Running: s.queue.runningID(),
		Uploads: c.uploads.Load(), Views: c.views.Load(), ViewBytes: c.viewBytes.Load(),
		WSConnected: s.hub.count(), WSConnects: c.wsConnects.Load(), Faults: s.currentFaults(),
	}
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleGetFault(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.currentFaults())
}

func (s *Server) handleSetFault(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := readJSON(r, &f); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) handleDropWS(w http.ResponseWriter, r *http.Request) {
	n := s.DropSockets()
	writeJSON(w, http.StatusOK, map[string]any{"dropped": n})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
