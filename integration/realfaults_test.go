package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// bigGraph makes a batch of large images: seconds of work on the CPU for a
// real ComfyUI (most of it writing the PNGs), enough to act mid-job. The
// color differs per job, so no run is answered from ComfyUI's cache.
func bigGraph(prefix string, color int) map[string]any {
	return map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 2048, "height": 2048, "batch_size": 16, "color": color}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": prefix}},
	}
}

// comfyHistory is a real ComfyUI's own record of a prompt: its status and
// how many files it saved, or ok false when it has none.
func comfyHistory(t testing.TB, in *realcomfy.Instance, promptID string) (status string, files int, ok bool) {
	t.Helper()
	var h map[string]struct {
		Outputs map[string]struct {
			Images []json.RawMessage `json:"images"`
		} `json:"outputs"`
		Status struct {
			StatusStr string `json:"status_str"`
		} `json:"status"`
	}
	json.Unmarshal(get(t, in.URL+"/history/"+promptID), &h)
	e, ok := h[promptID]
	for _, o := range e.Outputs {
		files += len(o.Images)
	}
	return e.Status.StatusStr, files, ok
}

// comfyHistoryAll is a real ComfyUI's whole history, by prompt id.
func comfyHistoryAll(t testing.TB, in *realcomfy.Instance) map[string]json.RawMessage {
	t.Helper()
	var h map[string]json.RawMessage
	if err := json.Unmarshal(get(t, in.URL+"/history"), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// answerDropper stands between a gpu-agent and a ComfyUI: it forwards
// every request and the socket, and when armed lets ComfyUI take the next
// POST /prompt, then closes the connection instead of answering: an answer
// lost on the way back, at a moment the test chooses.
type answerDropper struct {
	url   string
	armed atomic.Bool
	proxy *httputil.ReverseProxy
}

func newAnswerDropper(t testing.TB, target string) *answerDropper {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	d := &answerDropper{proxy: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	d.url = srv.URL
	return d
}

func (d *answerDropper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/prompt") && d.armed.CompareAndSwap(true, false) {
		d.proxy.ServeHTTP(httptest.NewRecorder(), r) // ComfyUI queues it; its answer goes nowhere
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	d.proxy.ServeHTTP(w, r)
}

// comfyRunning reports whether a real ComfyUI is executing promptID now.
func comfyRunning(t testing.TB, in *realcomfy.Instance, promptID string) bool {
	t.Helper()
	var q struct {
		Running [][]json.RawMessage `json:"queue_running"`
	}
	json.Unmarshal(get(t, in.URL+"/queue"), &q)
	for _, it := range q.Running {
		var id string
		if len(it) > 1 && json.Unmarshal(it[1], &id) == nil && id == promptID {
			return true
		}
	}
	return false
}

// executions counts the prompts a real ComfyUI ran to the end, from its log.
func executions(in *realcomfy.Instance) int { return strings.Count(in.Log(), "Prompt executed in") }

// waitComfy polls a real ComfyUI (its own state, which no event reports to
// the test) until cond holds.
func waitComfy(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Faults on real ComfyUI, through the real server and gpu-agent, with a
// 0.3.64 and a 2024-08-15 on one GPU host (shared by the subtests; each
// has its own server and agent): an instance killed mid-job, an instance
// down past the grace period, the agent killed mid-job, and a job needing
// a node only the newer version has.
func TestRealComfyFaults(t *testing.T) {
	newer := realcomfy.Start(t, realcomfy.Get(t, "0.3.64"), realcomfy.Options{})
	older := realcomfy.Start(t, realcomfy.Get(t, "2024-08-15"), realcomfy.Options{CustomNodes: map[string]string{"workshop_pass.py": realcomfy.PassThroughNode("WorkshopPassThrough")}})
	comfyOf := map[string]*realcomfy.Instance{"gpu/new": newer, "gpu/old": older}
	other := map[string]string{"gpu/new": "gpu/old", "gpu/old": "gpu/new"}
	// promptID is the id the instance knows the job by (2024-08-15 makes
	// its own).
	promptID := func(j job) string {
		if j.EngineID != "" {
			return j.EngineID
		}
		return j.ID
	}
	host := func(t *testing.T, extra ...string) (admin, *events, *proc) {
		s := startGPUStack(t, extra...)
		ag := s.addAgent("gpu", "new="+newer.URL, "old="+older.URL)
		return s.a, s.ev, ag
	}

	// moved runs a big job, ends the instance running it with kill, and
	// checks that the job completed once on the other instance, its loss
	// kept (the message saying lostSays); it returns the first instance.
	moved := func(t *testing.T, grace, lostSays string, color int, kill func(*realcomfy.Instance)) (admin, string) {
		t.Helper()
		a, ev, _ := host(t, "--grace", grace, "--prefetch", "0")
		j := a.submit("user001", bigGraph("moved", color))
		ev.waitStage(j.ID, "executing", 60*time.Second)
		first := a.job(j.ID).Worker
		before := executions(comfyOf[other[first]])
		kill(comfyOf[first])
		ev.waitDone(3*time.Minute, j.ID)
		got := a.job(j.ID)
		if got.Status != "completed" || got.Worker != other[first] || got.Attempts != 2 || len(got.Failures) != 1 ||
			got.Failures[0].Worker != first || got.Failures[0].Reason != "lost" || !strings.Contains(got.Failures[0].Message, lostSays) {
			t.Fatalf("job after its instance went: %+v", got)
		}
		if got.Result == nil || len(got.Result.Outputs) != 16 {
			t.Errorf("outputs: %+v", got.Result)
		}
		if st, files, ok := comfyHistory(t, comfyOf[got.Worker], promptID(got)); !ok || st != "success" || files != 16 {
			t.Errorf("ComfyUI %s history of the job: %q, %d files, %v", got.Worker, st, files, ok)
		}
		if n := executions(comfyOf[got.Worker]) - before; n != 1 {
			t.Errorf("%s ran %d prompts, want 1", got.Worker, n)
		}
		return a, first
	}

	// kill -9 of the instance running a job, back at once: the server
	// finds the job lost when it reconnects and runs it on the other
	// instance; it completes once.
	t.Run("instance killed mid-job", func(t *testing.T) {
		a, first := moved(t, "2m", "the GPU instance lost the job", 11, func(in *realcomfy.Instance) {
			in.Kill()
			in.Restart()
		})
		if n := executions(comfyOf[first]); n != 0 {
			t.Errorf("the restarted %s ran %d prompts", first, n)
		}
		if w := a.worker(first); w.State != "idle" || w.SetAside != nil || len(w.RecentFailures) != 1 {
			t.Errorf("the instance that was killed, back: %+v", w)
		}
	})

	// The instance dies and stays down past the grace period: the job moves
	// to the other instance.
	t.Run("instance down past the grace", func(t *testing.T) {
		a, first := moved(t, "4s", "stopped renewing its lease", 12, func(in *realcomfy.Instance) {
			in.Kill()
			t.Cleanup(in.Restart) // for the next subtests
		})
		if w := a.worker(first); w.State != "unreachable" || w.Connected || len(w.HeldJobs) != 0 {
			t.Errorf("the dead instance: %+v", w)
		}
	})

	// kill -9 of the agent while its instance runs a job: the host stays
	// listed as disconnected, holding the job, with its grace counting
	// down; the job finishes on the instance meanwhile, and when the agent
	// is back the server collects it instead of running it again.
	t.Run("agent killed mid-job", func(t *testing.T) {
		a, ev, ag := host(t, "--grace", "2m", "--prefetch", "0")
		only(t, a, "gpu/old") // 2024-08-15, which knows the job by an id of its own
		j := a.submit("user001", bigGraph("agent", 13))
		ev.waitStage(j.ID, "executing", 60*time.Second)
		on := a.job(j.ID).Worker
		in := comfyOf[on]
		if on != "gpu/old" {
			t.Fatalf("the job runs on %s", on)
		}
		// The id 2024-08-15 made for the job is stored a moment after it
		// starts.
		waitComfy(t, "the instance's id of the job", 10*time.Second, func() bool {
			return in.Version.AcceptsPromptID || a.job(j.ID).EngineID != ""
		})
		engineID := promptID(a.job(j.ID))
		before := executions(in)
		ag.kill9()
		if !comfyRunning(t, in, engineID) {
			t.Fatal("the job was no longer running when the agent was killed: make bigGraph longer")
		}
		ev.waitFor("the host to show as disconnected", 60*time.Second, func(map[string]string, []map[string]any) bool {
			return a.worker(on).State == "disconnected"
		})
		w := a.worker(on)
		if w.Connected || len(w.HeldJobs) != 1 || w.HeldJobs[0] != j.ID || w.LostAt == nil ||
			w.GraceRemainingS == nil || *w.GraceRemainingS <= 0 || *w.GraceRemainingS > 120 || w.GraceEndsAt == nil {
			t.Errorf("disconnected instance: %+v", w)
		}
		if o := a.worker(other[on]); o.State != "disconnected" || len(o.HeldJobs) != 0 {
			t.Errorf("the other instance of the host: %+v", o)
		}
		if got := a.job(j.ID); got.Status != "running" {
			t.Errorf("the job while its agent is away: %+v", got)
		}
		waitComfy(t, "the job to finish on ComfyUI", 3*time.Minute, func() bool {
			st, _, ok := comfyHistory(t, in, engineID)
			return ok && st == "success"
		})
		startAgentFor(t, a.base, "gpu", "new="+newer.URL, "old="+older.URL)
		ev.waitDone(2*time.Minute, j.ID)
		got := a.job(j.ID)
		if got.Status != "completed" || got.Attempts != 1 || len(got.Failures) != 0 || got.Result == nil || len(got.Result.Outputs) != 16 {
			t.Fatalf("job after the agent came back: %+v", got)
		}
		if n := executions(in) - before; n != 1 {
			t.Errorf("%s ran the job %d times", on, n)
		}
	})

	// 2024-08-15 takes a prompt and the answer naming the id it made is
	// lost: the server finds the job on it by its tag and collects it,
	// without posting it again.
	t.Run("lost answer", func(t *testing.T) {
		drop := newAnswerDropper(t, older.URL)
		s := startGPUStack(t, "--prefetch", "0")
		s.addAgent("gpu", "old="+drop.url)
		before := len(comfyHistoryAll(t, older))
		drop.armed.Store(true)
		j := s.a.submit("user001", imageGraph("lost", 18))
		s.ev.waitDone(2*time.Minute, j.ID)
		got := s.a.job(j.ID)
		if got.Status != "completed" || got.Attempts != 1 || len(got.Failures) != 0 || got.EngineID == "" || got.Result == nil || len(got.Result.Outputs) != 1 {
			t.Fatalf("job after its answer was lost: %+v", got)
		}
		if drop.armed.Load() {
			t.Fatal("no answer was dropped")
		}
		if n := len(comfyHistoryAll(t, older)) - before; n != 1 {
			t.Errorf("ComfyUI ran %d prompts, want 1", n)
		}
	})

	// ImageFlip exists on 0.3.64, not on 2024-08-15; a custom node exists
	// on the 2024-08-15 only. Participants get both, the classes both have
	// as 0.3.64 defines them, and each job goes straight to the instance
	// that has its nodes, even while it is busy and the other is free.
	t.Run("nodes only on one instance", func(t *testing.T) {
		a, ev, _ := host(t, "--prefetch", "0")
		var union jsonobj.Object
		waitComfy(t, "the union of both node lists", 30*time.Second, func() bool {
			var raw json.RawMessage
			a.do("GET", "/user/1/api/object_info", nil, &raw)
			union = objectOf(t, raw)
			_, flip := union.Get("ImageFlip")
			_, own := union.Get("WorkshopPassThrough")
			return flip && own
		})
		newInfo, oldInfo := objectOf(t, get(t, newer.URL+"/object_info")), objectOf(t, get(t, older.URL+"/object_info"))
		if want := append(newInfo.Keys(), "WorkshopPassThrough"); !slices.Equal(union.Keys(), want) {
			t.Errorf("classes: %d, want 0.3.64's %d then WorkshopPassThrough", len(union), len(newInfo))
		}
		for _, c := range []struct {
			class string
			from  jsonobj.Object
		}{{"KSampler", newInfo}, {"SaveImage", newInfo}, {"ImageFlip", newInfo}, {"WorkshopPassThrough", oldInfo}} {
			if g, _ := union.Get(c.class); !bytes.Equal(g, mustGet(t, c.from, c.class)) {
				t.Errorf("%s is not the definition of the instance it should come from: %s", c.class, g)
			}
		}
		image := map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 64, "height": 48, "batch_size": 1, "color": 15}}
		save := func(from string) map[string]any {
			return map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{from, 0}, "filename_prefix": "only"}}
		}
		for _, c := range []struct {
			name, on, busy string
			node           map[string]any
		}{
			{"ImageFlip", "gpu/new", "gpu/old", map[string]any{"class_type": "ImageFlip", "inputs": map[string]any{"image": []any{"1", 0}, "flip_method": "x-axis: vertically"}}},
			{"WorkshopPassThrough", "gpu/old", "gpu/new", map[string]any{"class_type": "WorkshopPassThrough", "inputs": map[string]any{"image": []any{"1", 0}}}},
		} {
			only(t, a, c.on)
			busy := a.submit("user002", bigGraph("busy", len(c.name)))
			ev.waitStage(busy.ID, "executing", 60*time.Second)
			only(t, a, "")
			var queued struct {
				PromptID string `json:"prompt_id"`
			}
			graph := map[string]any{"1": image, "2": c.node, "3": save("2")}
			if st := a.do("POST", "/user/1/api/prompt", map[string]any{"prompt": graph, "client_id": "c1"}, &queued); st != 200 || queued.PromptID == "" {
				t.Fatalf("POST /user/1/api/prompt with %s: %d %+v", c.name, st, queued)
			}
			ev.waitDone(3*time.Minute, queued.PromptID, busy.ID)
			got := a.job(queued.PromptID)
			if got.Status != "completed" || got.Worker != c.on || len(got.Failures) != 0 || got.Attempts != 1 {
				t.Errorf("the %s job: %+v", c.name, got)
			}
			var hist map[string]struct {
				Status struct {
					StatusStr string `json:"status_str"`
				} `json:"status"`
			}
			a.do("GET", fmt.Sprintf("/user/1/api/history/%s", got.ID), nil, &hist)
			if hist[got.ID].Status.StatusStr != "success" {
				t.Errorf("the participant's history of the %s job: %+v", c.name, hist)
			}
		}
		if w := a.worker("gpu/old"); w.SetAside != nil || len(w.RecentFailures) != 0 {
			t.Errorf("the older instance was blamed: %+v", w)
		}
	})
}
