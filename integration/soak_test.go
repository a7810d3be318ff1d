package integration

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/procstat"
)

// The soak test: a two-hour, 200-participant workshop day with the clock
// compressed (simulator steps of milliseconds), on 3 GPU agents with 6
// instances, while one agent is killed with SIGKILL and started again and
// another's tunnel is cut (a relay that stops forwarding) until the server
// notices, then restored. The room is workshop-load: each participant
// joins by link, keeps their socket, submits through /user/{n}/api/prompt,
// follows progress and downloads outputs.
//
// It checks that no acknowledged job is lost (each ends completed, or
// failed with a reason that explains it), none has two results or ran more
// often than it was dispatched, each downloaded output is the file one
// simulator run wrote, and that the server's open files, goroutines and
// heap after the run are back at a baseline taken after a warm-up.
//
// The clock runs about 180 times fast: two hours in 40 s of submitting, a
// 50 ms job (10 steps of 5 ms) for a 9 s one. The number of jobs is what 2
// cores carry besides 6 simulators (about 500 by default), not the
// thousands a real room queues. Its size comes from the environment; the
// defaults take about a minute on 2 cores. The full day (about 2½ minutes,
// about 3,200 jobs):
//
//	SOAK_DURATION=120s SOAK_RATE=25 go test ./integration -run TestSoak -v -timeout 10m
//
// SOAK_PARTICIPANTS (200), SOAK_DURATION (40s of submitting), SOAK_RATE
// (submissions/s, all participants; 12), SOAK_STEP_MS (5), SOAK_STEPS (10),
// SOAK_GRAPH (sampler, or simple).
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak test takes a minute")
	}
	cfg := soakSettings(t)
	t.Logf("soak: %d participants, %.3g submissions/s for %s, jobs of %d steps x %s", cfg.participants, cfg.rate, cfg.duration, cfg.steps, cfg.stepMS)
	began := time.Now()

	data := t.TempDir()
	srv := startGPUServer(t, data, "--seats", strconv.Itoa(cfg.participants), "--grace", "30s",
		"--max-pending", "10", "--log-level", "warn")
	a := admin{t, srv.base}
	ev := watch(t, srv.base)
	var sims []*sim
	for i := 0; i < 6; i++ {
		sims = append(sims, startSim(t, "--step-ms", cfg.stepMS, "--steps", strconv.Itoa(cfg.steps), "--log-level", "warn"))
	}
	startAgent(t, srv.base, "gpu-a", sims[0], sims[1])
	agentB := startAgent(t, srv.base, "gpu-b", sims[2], sims[3])
	cut := newRelay(t, strings.TrimPrefix(srv.base, "http://"))
	startAgent(t, cut.addr(), "gpu-c", sims[4], sims[5])
	ev.waitWorkers(a, 6, 30*time.Second)

	// Warm-up: the same room for a few seconds, so caches, sessions and
	// pools exist before the baseline.
	warm := soakLoad(t, srv, cfg, "3s", "warm")
	<-warm.done
	warmRep := warm.report(t)
	if warmRep.Completed == 0 || warmRep.Unfinished != 0 {
		t.Fatalf("warm-up: %d completed, %d unfinished; errors %+v", warmRep.Completed, warmRep.Unfinished, warmRep.Errors)
	}
	base := soakSettle(t, srv)
	t.Logf("baseline after warm-up (%d jobs): %s", warmRep.Completed, base)

	// The day.
	ev.mu.Lock()
	doneBefore := len(ev.done)
	ev.mu.Unlock()
	expected := int(cfg.rate * cfg.duration.Seconds())
	day := soakLoad(t, srv, cfg, cfg.duration.String(), "day")
	completions := func(what string, n int) {
		ev.waitFor(fmt.Sprintf("%d completions (%s)", n, what), cfg.duration+60*time.Second, func(done map[string]string, _ []map[string]any) bool {
			return len(done)-doneBefore >= n
		})
	}

	// An agent dies mid-job (SIGKILL), the room keeps going on the others,
	// and it comes back within the grace period.
	completions("before the kill", expected/6)
	ev.waitExecuting(t, "gpu-b/", 30*time.Second)
	agentB.kill9()
	t.Logf("%.1fs: gpu-b killed", time.Since(began).Seconds())
	soakWaitWorkers(t, a, ev, "gpu-b gone", 30*time.Second, func(up map[string]bool) bool { return !up["gpu-b/0"] && !up["gpu-b/1"] })
	completions("while gpu-b is down", expected/3)
	startAgent(t, srv.base, "gpu-b", sims[2], sims[3])
	ev.waitWorkers(a, 6, 30*time.Second)
	t.Logf("%.1fs: gpu-b back", time.Since(began).Seconds())

	// A tunnel goes silent (nothing forwarded, nothing closed) until the
	// server notices, then the network comes back.
	completions("before the cut", expected/2)
	ev.waitExecuting(t, "gpu-c/", 30*time.Second)
	cut.setPaused(true)
	cutAt := time.Now()
	t.Logf("%.1fs: gpu-c's tunnel cut", time.Since(began).Seconds())
	soakWaitWorkers(t, a, ev, "the server to notice the cut", 60*time.Second, func(up map[string]bool) bool { return !up["gpu-c/0"] && !up["gpu-c/1"] })
	cut.setPaused(false)
	restoredAt := time.Now()
	t.Logf("%.1fs: gpu-c's tunnel restored", time.Since(began).Seconds())
	ev.waitWorkers(a, 6, 60*time.Second)
	t.Logf("%.1fs: gpu-c back", time.Since(began).Seconds())

	select {
	case <-day.done:
	case <-time.After(cfg.duration + 5*time.Minute):
		t.Fatal("workshop-load did not finish")
	}
	rep := day.report(t)
	t.Logf("%.1fs: the day: %d submitted, %d completed, %d failed, %d unfinished, %d answered 429; submit p50 %.1f ms p99 %.1f ms; end-to-end p50 %.0f ms p99 %.0f ms; %.1f jobs/s; Jain completed %.3f",
		time.Since(began).Seconds(), rep.Submitted, rep.Completed, rep.Failed, rep.Unfinished, rep.Rejected429,
		rep.SubmitLatency.P50, rep.SubmitLatency.P99, rep.EndToEnd.P50, rep.EndToEnd.P99, rep.ThroughputOverall, rep.Fairness.JainCompleted)
	// How Queue presses fared while a tunnel was silent, and otherwise
	// (reported, not asserted: see the report to the lead).
	slowBefore, _ := rep.slowestSubmit(rep.StartedAt, cutAt)
	slowDuring, _ := rep.slowestSubmit(cutAt, restoredAt)
	slowAfter, _ := rep.slowestSubmit(restoredAt, time.Now())
	t.Logf("slowest submission: %.0f ms before the cut, %.0f ms while the tunnel was silent, %.0f ms after", slowBefore, slowDuring, slowAfter)
	slow := slices.Clone(rep.Jobs)
	slices.SortFunc(slow, func(a, b soakJob) int { return cmp.Compare(b.SubmitMS, a.SubmitMS) })
	var worst []string
	for _, j := range slow[:min(5, len(slow))] {
		worst = append(worst, fmt.Sprintf("%.0f ms at %.1fs", j.SubmitMS, rep.StartedAt.Add(time.Duration(j.AtS*float64(time.Second))).Sub(began).Seconds()))
	}
	t.Logf("slowest submissions: %s", strings.Join(worst, ", "))
	if rep.Submitted < int64(expected/2) {
		t.Errorf("only %d of about %d submissions acknowledged", rep.Submitted, expected)
	}
	for _, e := range rep.Errors {
		t.Errorf("workshop-load error: %d x %s (%s)", e.Count, e.Kind, e.Example)
	}

	soakCheckJobs(t, a, data, sims, append(warmRep.Jobs, rep.Jobs...), warmRep.SubmitErrors+rep.SubmitErrors)

	after := soakSettleTo(t, srv, base)
	t.Logf("after the day: %s", after)
	soakCheckGrowth(t, base, after)
	t.Logf("soak took %.1fs", time.Since(began).Seconds())
}

type soakConfig struct {
	participants int
	rate         float64
	duration     time.Duration
	stepMS       string
	steps        int
	graph        string
}

func soakSettings(t *testing.T) soakConfig {
	c := soakConfig{participants: 200, rate: 12, duration: 40 * time.Second, stepMS: "5", steps: 10, graph: "sampler"}
	env := func(name string, parse func(string) error) {
		if v := os.Getenv(name); v != "" {
			if err := parse(v); err != nil {
				t.Fatalf("%s=%q: %v", name, v, err)
			}
		}
	}
	env("SOAK_PARTICIPANTS", func(v string) (err error) { c.participants, err = strconv.Atoi(v); return })
	env("SOAK_RATE", func(v string) (err error) { c.rate, err = strconv.ParseFloat(v, 64); return })
	env("SOAK_DURATION", func(v string) (err error) { c.duration, err = time.ParseDuration(v); return })
	env("SOAK_STEP_MS", func(v string) (err error) { _, err = strconv.ParseFloat(v, 64); c.stepMS = v; return })
	env("SOAK_STEPS", func(v string) (err error) { c.steps, err = strconv.Atoi(v); return })
	env("SOAK_GRAPH", func(v string) error { c.graph = v; return nil })
	if c.participants < 1 || c.rate <= 0 || c.duration < 10*time.Second || c.steps < 1 {
		t.Fatalf("soak settings out of range: %+v (SOAK_DURATION must be at least 10s)", c)
	}
	return c
}

// soakRun is workshop-load running against the server.
type soakRun struct {
	*proc
	out string
}

func soakLoad(t *testing.T, srv *server, cfg soakConfig, duration, name string) *soakRun {
	out := filepath.Join(t.TempDir(), name+".json")
	p := startProc(t, "workshop-load", "--server", srv.base, "--admin-token", adminToken,
		"--participants", strconv.Itoa(cfg.participants), "--rate", strconv.FormatFloat(cfg.rate, 'f', -1, 64),
		"--duration", duration, "--drain", "3m", "--graph", cfg.graph, "--steps", strconv.Itoa(cfg.steps),
		"--server-pid", strconv.Itoa(srv.cmd.Process.Pid), "--json", out, "--jobs", "--cleanup=false", "--seed", strconv.Itoa(len(name)))
	return &soakRun{proc: p, out: out}
}

// soakReport is the part of workshop-load's JSON report the test reads.
type soakReport struct {
	StartedAt         time.Time `json:"started_at"`
	Submitted         int64     `json:"submitted"`
	Rejected429       int64     `json:"rejected_429"`
	SubmitErrors      int64     `json:"submit_errors"`
	Completed         int64     `json:"completed"`
	Failed            int64     `json:"failed"`
	Unfinished        int       `json:"unfinished"`
	ThroughputOverall float64   `json:"throughput_overall_jobs_per_s"`
	SubmitLatency     struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"submit_latency"`
	EndToEnd struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"end_to_end"`
	Fairness struct {
		JainCompleted float64 `json:"jain_completed"`
	} `json:"fairness"`
	Errors []struct {
		Kind    string `json:"kind"`
		Count   int64  `json:"count"`
		Example string `json:"example"`
	} `json:"errors"`
	Jobs []soakJob `json:"jobs"`
}

type soakJob struct {
	ID       string  `json:"id"`
	Seat     int     `json:"seat"`
	Status   string  `json:"status"`
	Error    string  `json:"error"`
	AtS      float64 `json:"at_s"`
	SubmitMS float64 `json:"submit_ms"`
	Files    []struct {
		Filename  string `json:"filename"`
		Subfolder string `json:"subfolder"`
		Size      int64  `json:"size"`
		SHA256    string `json:"sha256"`
	} `json:"files"`
}

func (r *soakRun) report(t *testing.T) *soakReport {
	t.Helper()
	if r.err != nil {
		t.Fatalf("workshop-load: %v", r.err)
	}
	raw, err := os.ReadFile(r.out)
	if err != nil {
		t.Fatal(err)
	}
	var rep soakReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("workshop-load report: %v", err)
	}
	return &rep
}

// slowestSubmit is the slowest acknowledged submission made in [from, to).
func (r *soakReport) slowestSubmit(from, to time.Time) (ms float64, at time.Time) {
	for _, j := range r.Jobs {
		when := r.StartedAt.Add(time.Duration(j.AtS * float64(time.Second)))
		if !when.Before(from) && when.Before(to) && j.SubmitMS > ms {
			ms, at = j.SubmitMS, when
		}
	}
	return ms, at
}

// waitExecuting waits for the admin socket to report a job executing on a
// worker whose id starts with prefix.
func (e *events) waitExecuting(t *testing.T, prefix string, timeout time.Duration) {
	t.Helper()
	e.mu.Lock()
	i := len(e.all)
	e.mu.Unlock()
	e.waitFor("a job executing on "+prefix, timeout, func(_ map[string]string, all []map[string]any) bool {
		for ; i < len(all); i++ {
			if p, ok := all[i]["progress"].(map[string]any); ok && p["stage"] == "executing" {
				if w, _ := p["worker"].(string); strings.HasPrefix(w, prefix) {
					return true
				}
			}
		}
		return false
	})
}

// soakWaitWorkers waits until cond holds over the instances' connected
// state, checking at each admin event (at most every 200 ms).
func soakWaitWorkers(t *testing.T, a admin, ev *events, what string, timeout time.Duration, cond func(up map[string]bool) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	limit := time.NewTicker(200 * time.Millisecond)
	defer limit.Stop()
	for {
		up, _ := a.workersUp()
		if cond(up) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, up)
		}
		select {
		case <-ev.upd:
		case <-time.After(time.Second):
		}
		<-limit.C // at most five checks a second while events pour in
	}
}

// soakCheckJobs checks every acknowledged job against the server, the
// simulators and the output store.
func soakCheckJobs(t *testing.T, a admin, data string, sims []*sim, acked []soakJob, submitErrors int64) {
	t.Helper()
	runs := map[string]int{}
	for _, s := range sims {
		for id, n := range s.stats(t).Executions {
			runs[id] += n
		}
	}
	byID := map[string]soakJob{}
	for _, j := range acked {
		if _, dup := byID[j.ID]; dup {
			t.Errorf("job %s acknowledged twice", j.ID)
		}
		byID[j.ID] = j
	}
	completed, failed, requeued := 0, 0, 0
	for _, want := range acked {
		var got job
		if st := a.do("GET", "/api/jobs/"+want.ID, nil, &got); st != 200 {
			t.Errorf("acknowledged job %s lost: HTTP %d", want.ID, st)
			continue
		}
		n := runs[want.ID]
		if got.Attempts > 1 {
			requeued++
		}
		// A job runs on a simulator at most once per dispatch: more runs
		// than attempts is a duplicate.
		if n > max(got.Attempts, 1) {
			t.Errorf("job %s ran %d times in %d attempts", want.ID, n, got.Attempts)
		}
		switch got.Status {
		case "completed":
			completed++
			if n == 0 {
				t.Errorf("job %s completed without running on any simulator", want.ID)
			}
			if got.Result == nil || len(got.Result.Outputs) != 1 {
				t.Errorf("job %s: want exactly one output, got %+v", want.ID, got.Result)
				continue
			}
			o := got.Result.Outputs[0]
			// The participant downloaded that very file, once.
			if want.Status != "completed" || len(want.Files) != 1 || want.Files[0].SHA256 != o.SHA256 || want.Files[0].Size != o.Size {
				t.Errorf("job %s: server has output %s (%d bytes, sha %.12s); the participant got %s %+v", want.ID, o.Filename, o.Size, o.SHA256, want.Status, want.Files)
			}
			// It is the file one simulator run wrote.
			found := 0
			for _, s := range sims {
				p := filepath.Join(s.outDir, o.Subfolder, strings.TrimPrefix(o.Filename, strings.ReplaceAll(o.Subfolder, "/", "_")+"_"))
				if _, err := os.Stat(p); err == nil && sha(t, p) == o.SHA256 {
					found++
				}
			}
			if found != 1 {
				t.Errorf("job %s: output %s matches %d simulator files, want 1", want.ID, o.Filename, found)
			}
			// And the output store holds one result, not two.
			files, err := os.ReadDir(filepath.Join(data, "outputs", got.UserID, want.ID))
			if err != nil || len(files) != 1 {
				names := []string{}
				for _, f := range files {
					names = append(names, f.Name())
				}
				t.Errorf("job %s: output store holds %v (%v), want one file", want.ID, names, err)
			}
		case "failed":
			failed++
			// Failing is allowed only when the faults explain it: out of
			// attempts after losing its instances.
			if got.Error == nil || got.Error.Type != "attempts_exhausted" || got.Error.Message == "" {
				t.Errorf("job %s failed without a reason the faults explain: %+v", want.ID, got.Error)
			}
			if want.Status != "failed" {
				t.Errorf("job %s failed on the server, but its participant saw %s", want.ID, want.Status)
			}
		default:
			t.Errorf("job %s ended %s: %+v (the participant saw %s %s)", want.ID, got.Status, got, want.Status, want.Error)
		}
	}
	t.Logf("%d acknowledged jobs: %d completed, %d failed, %d requeued at least once", len(acked), completed, failed, requeued)

	// Nothing pending or running is left, and the server holds no job that
	// nobody was told about (unless a submission's answer was lost).
	var status struct {
		Counts map[string]int `json:"counts"`
	}
	a.do("GET", "/api/queue/status", nil, &status)
	if status.Counts["pending"] != 0 || status.Counts["running"] != 0 {
		t.Errorf("left in the queue: %v", status.Counts)
	}
	total := 0
	for _, n := range status.Counts {
		total += n
	}
	if submitErrors == 0 && total != len(acked) {
		t.Errorf("the server holds %d jobs (%v), %d were acknowledged", total, status.Counts, len(acked))
	}
}

// soakSample is what the server looks like at rest.
type soakSample struct {
	fds         int
	rssAnon     int64 // bytes: the heap and stacks, not the mapped store
	goroutines  int   // -1 when the server does not say
	heap        int64 // bytes; -1 when the server does not say
	heapAfterGC bool  // heap is the live heap right after a GC (pprof), not heap in use
	// goroutines leaves out idle pool workers (pprof); otherwise it is
	// the total from /metrics.
	goroutinesExact bool
	metricsErr      string // why GET /metrics gave nothing, when it did not
}

func (s soakSample) String() string {
	out := fmt.Sprintf("%d open files, %.1f MiB anonymous RSS", s.fds, float64(s.rssAnon)/(1<<20))
	if s.goroutines >= 0 {
		out += fmt.Sprintf(", %d goroutines", s.goroutines)
		if s.goroutinesExact {
			out += " (busy, from pprof)"
		}
	}
	switch {
	case s.heap >= 0 && s.heapAfterGC:
		out += fmt.Sprintf(", %.1f MiB live heap after GC", float64(s.heap)/(1<<20))
	case s.heap >= 0:
		out += fmt.Sprintf(", %.1f MiB heap in use", float64(s.heap)/(1<<20))
	}
	return out
}

// soakGet GETs an admin route of the server as text; "" and why unless
// it answers 200.
func soakGet(srv *server, path string) (string, string) {
	req, _ := http.NewRequest("GET", srv.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	if resp.StatusCode != 200 {
		msg := strings.Join(strings.Fields(b.String()), " ")
		if len(msg) > 400 {
			msg = msg[:200] + " ... " + msg[len(msg)-200:]
		}
		return "", fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg)
	}
	return b.String(), ""
}

// soakSampleNow reads /proc for open files and memory, and whatever the
// server tells about goroutines and heap: net/http/pprof if it serves it
// (a heap profile with gc=1 gives the live heap after a collection), else
// its Prometheus /metrics.
func soakSampleNow(t *testing.T, srv *server) soakSample {
	t.Helper()
	pid := srv.cmd.Process.Pid
	s := soakSample{goroutines: -1, heap: -1}
	st, err := procstat.Read(pid)
	if err != nil {
		t.Fatalf("the server's process: %v", err)
	}
	s.fds, s.rssAnon = st.FDs, st.Anon
	if prof, _ := soakGet(srv, "/debug/pprof/heap?gc=1&debug=1"); prof != "" {
		for _, l := range strings.Split(prof, "\n") {
			if v, ok := strings.CutPrefix(l, "# HeapAlloc = "); ok {
				s.heap, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				s.heapAfterGC = true
			}
		}
	}
	if g, _ := soakGet(srv, "/debug/pprof/goroutine?debug=1"); g != "" {
		s.goroutines, s.goroutinesExact = soakBusyGoroutines(g), true
	}
	metrics, why := soakGet(srv, "/metrics")
	s.metricsErr = why
	for _, l := range strings.Split(metrics, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch {
		case f[0] == "go_goroutines" && s.goroutines < 0:
			s.goroutines = int(v)
		case f[0] == "go_memstats_heap_inuse_bytes" && s.heap < 0:
			s.heap = int64(v)
		}
	}
	return s
}

// soakBusyGoroutines counts the goroutines of a pprof goroutine profile
// (debug=1) less the idle ones that pools keep for a while and then let go:
// fasthttp's workers (10 s) and HTTP keep-alive connections to the GPU
// instances.
func soakBusyGoroutines(profile string) int {
	total := 0
	for _, block := range strings.Split(profile, "\n\n") {
		var n int
		if _, err := fmt.Sscanf(block, "%d @", &n); err != nil {
			continue
		}
		if strings.Contains(block, "fasthttp.(*workerPool).workerFunc") && !strings.Contains(block, "fasthttp.(*Server).serveConn") ||
			strings.Contains(block, "net/http.(*persistConn).writeLoop") ||
			strings.Contains(block, "net/http.(*persistConn).readLoop") {
			continue
		}
		total += n
	}
	return total
}

// soakSettle samples the server once its open files and goroutines have
// stayed the same for a second (closed sockets take a moment to be
// noticed), or after 15 s.
func soakSettle(t *testing.T, srv *server) soakSample {
	t.Helper()
	prev := soakSampleNow(t, srv)
	stable := 0
	for i := 0; i < 60 && stable < 4; i++ {
		time.Sleep(250 * time.Millisecond)
		cur := soakSampleNow(t, srv)
		if cur.fds == prev.fds && (cur.goroutines < 0 || cur.goroutines == prev.goroutines) {
			stable++
		} else {
			stable = 0
		}
		prev = cur
	}
	return prev
}

// Room over the baseline after the day. The total goroutine count (from
// /metrics) also counts the HTTP client's idle connections to the GPU
// instances (two goroutines each, up to two per instance), which pprof's
// profile lets the test leave out.
const (
	soakRoomFiles           = 2
	soakRoomGoroutines      = 5
	soakRoomGoroutinesTotal = 30
)

func soakGoroutineRoom(base, after soakSample) int {
	if base.goroutinesExact && after.goroutinesExact {
		return soakRoomGoroutines
	}
	return soakRoomGoroutinesTotal
}

// soakSettleTo samples the server after the day: settled as the baseline
// was, then, while it still has more open files or goroutines than the
// baseline allows, again until it has not or 25 s have passed. The total
// goroutine count from /metrics includes the idle workers fasthttp keeps
// for 10-20 s after a burst; they go, a leak stays.
func soakSettleTo(t *testing.T, srv *server, base soakSample) soakSample {
	t.Helper()
	s := soakSettle(t, srv)
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) && (s.fds > base.fds+soakRoomFiles ||
		base.goroutines >= 0 && s.goroutines > base.goroutines+soakGoroutineRoom(base, s)) {
		time.Sleep(500 * time.Millisecond)
		s = soakSampleNow(t, srv)
	}
	return s
}

// soakCheckGrowth compares the server after the day with the baseline.
// Files and goroutines must come back. Memory gets room: without a
// collection forced (pprof's heap?gc=1) heap in use includes garbage, and
// Go returns freed memory to the system lazily.
func soakCheckGrowth(t *testing.T, base, after soakSample) {
	t.Helper()
	if after.fds > base.fds+soakRoomFiles {
		t.Errorf("open files grew from %d to %d", base.fds, after.fds)
	}
	// A server without /metrics is let off the goroutine check; one whose
	// /metrics fails is not.
	for _, sm := range []soakSample{base, after} {
		if sm.metricsErr != "" && !strings.HasPrefix(sm.metricsErr, "HTTP 404") {
			t.Errorf("GET /metrics fails (%s): goroutines and heap cannot be checked", sm.metricsErr)
			break
		}
	}
	switch {
	case base.goroutines >= 0 && after.goroutines >= 0:
		if after.goroutines > base.goroutines+soakGoroutineRoom(base, after) {
			t.Errorf("goroutines grew from %d to %d", base.goroutines, after.goroutines)
		}
	default:
		t.Logf("no goroutine count at the baseline and after the day (neither /debug/pprof nor go_goroutines in /metrics): not checked")
	}
	if base.heap >= 0 && after.heap >= 0 {
		// Heap in use (from /metrics) holds garbage until the next
		// collection: up to about as much again as what is live, so only
		// gross growth shows. The live heap after a forced collection
		// (pprof heap?gc=1) allows a tight check.
		room := max(base.heap, 64<<20)
		if base.heapAfterGC && after.heapAfterGC {
			room = max(base.heap/5, 8<<20)
		}
		if after.heap > base.heap+room {
			t.Errorf("heap grew from %.1f MiB to %.1f MiB", float64(base.heap)/(1<<20), float64(after.heap)/(1<<20))
		}
	} else {
		t.Logf("the server reports no heap figure: only its RSS is checked")
	}
	if after.rssAnon > base.rssAnon*2+64<<20 {
		t.Errorf("anonymous RSS grew from %.1f MiB to %.1f MiB", float64(base.rssAnon)/(1<<20), float64(after.rssAnon)/(1<<20))
	}
}
