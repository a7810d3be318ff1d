package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitStage waits until the admin socket reports a job at a stage
// ("queued", "executing", "collecting").
func (e *events) waitStage(jobID, stage string, timeout time.Duration) {
	e.t.Helper()
	e.waitFor("job "+jobID+" to reach "+stage, timeout, func(_ map[string]string, all []map[string]any) bool {
		for _, m := range all {
			if p, ok := m["progress"].(map[string]any); ok && p["job_id"] == jobID && p["stage"] == stage {
				return true
			}
		}
		return false
	})
}

// slowGraph takes steps*step-ms on the simulator.
func slowGraph(name string, seed int) map[string]any { return samplerGraph(name, seed) }

func runs(t testing.TB, id string, sims ...*sim) int {
	n := 0
	for _, s := range sims {
		n += s.stats(t).Executions[id]
	}
	return n
}

// SIGKILL the agent mid-job and start it again within the grace period: the
// job completes once, without a second run on the simulator.
func TestAgentKilledAndBack(t *testing.T) {
	st, j := slowJobRunning(t, "20", "--grace", "30s")
	a, ev, s := st.a, st.ev, st.sim
	st.agent.kill9()
	st.addAgent("gpu-a", s.base)
	ev.waitDone(60*time.Second, j.ID)
	if got := a.job(j.ID); got.Status != "completed" || got.Attempts != 1 {
		t.Errorf("job after agent restart: %+v", got)
	}
	if n := runs(t, j.ID, s); n != 1 {
		t.Errorf("the job ran %d times", n)
	}
}

// slowJobRunning starts a job of steps sampler steps of 100 ms on a
// simulator (server flags: extra) and returns once it executes.
func slowJobRunning(t *testing.T, steps string, extra ...string) (*stack, job) {
	t.Helper()
	st := startGPUStack(t, extra...).withSim("--step-ms", "100", "--steps", steps)
	j := st.a.submit("user001", slowGraph("k", 1))
	st.ev.waitStage(j.ID, "executing", 30*time.Second)
	return st, j
}

// The instance takes a prompt but its answer is lost on the way back: the
// server asks the instance, finds the job there and follows it, instead of
// running it a second time. An instance that keeps the workshop's prompt
// id has it under that id; an older one, which made its own id that only
// the lost answer named, has it under the job's tag: still queued or
// running (legacy), or already run to its end (legacy, instant).
func TestLostPromptAnswer(t *testing.T) {
	st := startGPUStack(t, "--seats", "1")
	sims := map[string]*sim{
		"new":     startSim(t, "--step-ms", "20", "--steps", "10"),
		"legacy":  startSim(t, "--legacy", "--step-ms", "20", "--steps", "50"),
		"instant": startSim(t, "--legacy", "--instant"),
	}
	st.addAgent("gpu-a", "new="+sims["new"].base, "legacy="+sims["legacy"].base, "instant="+sims["instant"].base)
	p := st.join(1)
	ws := p.socket("lost")
	for i, name := range []string{"new", "legacy", "instant"} {
		t.Run(name, func(t *testing.T) {
			s := sims[name]
			only(t, st.a, "gpu-a/"+name)
			setFault(t, s, `{"drop_prompt_answers":1}`)
			id := p.prompt(slowGraph("lost", 10*i))
			ws.waitSuccess(t, 60*time.Second, id)
			got := st.a.job(id)
			if got.Status != "completed" || got.Attempts != 1 || got.Worker != "gpu-a/"+name || (name != "new") != (got.EngineID != "") {
				t.Errorf("job after a lost answer: %+v", got)
			}
			if n := s.stats(t).PromptsSucceeded; n != 1 {
				t.Errorf("the instance ran %d prompts, want 1", n)
			}
			// Its events on the way are not lost either (all of an instant
			// run's came before the answer; its end is told all the same).
			if name != "instant" {
				ws.waitFor(t, "execution_start of "+id, time.Second, func(evs []wsEvent) bool {
					return slices.ContainsFunc(evs, func(e wsEvent) bool { return e.Type == "execution_start" && e.PromptID == id })
				})
			}
			// The next job goes through as usual.
			next := p.prompt(imageGraph("after", 10*i+1))
			ws.waitSuccess(t, 30*time.Second, next)
		})
	}
	ws.onlyIDs(t, st.allIDs(p))
}

// relay is a loopback TCP relay that can stop forwarding without closing
// anything: a half-open network path.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	paused bool
	resume chan struct{}
	conns  []net.Conn
}

func newRelay(t testing.TB, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, resume: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.setPaused(false)
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, u)
			r.mu.Unlock()
			go r.pipe(c, u)
			go r.pipe(u, c)
		}
	}()
	return r
}

func (r *relay) addr() string { return "http://" + r.ln.Addr().String() }

func (r *relay) setPaused(p bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused == p {
		return
	}
	r.paused = p
	if !p {
		close(r.resume)
		r.resume = make(chan struct{})
	}
}

func (r *relay) gate() {
	r.mu.Lock()
	paused, wait := r.paused, r.resume
	r.mu.Unlock()
	if paused {
		<-wait
	}
}

func (r *relay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.gate() // held bytes are neither sent nor dropped
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			} else if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

// Cut the tunnel without closing it, restore it after 5 s: nothing is lost
// and nothing runs twice.
func TestTunnelCutAndRestored(t *testing.T) {
	st := startGPUStack(t, "--grace", "30s")
	a, ev, s := st.a, st.ev, startSim(t, "--step-ms", "50", "--steps", "20")
	r := newRelay(t, strings.TrimPrefix(st.base, "http://"))
	startAgent(t, r.addr(), "gpu-a", s)
	ev.waitWorkers(a, 1, 30*time.Second)

	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, a.submit("user00"+string(rune('1'+i)), slowGraph("cut", i)).ID)
	}
	ev.waitStage(ids[0], "executing", 30*time.Second)
	r.setPaused(true)
	restore := time.AfterFunc(5*time.Second, func() { r.setPaused(false) })
	defer restore.Stop()
	ev.waitDone(90*time.Second, ids...)
	for _, id := range ids {
		if j := a.job(id); j.Status != "completed" {
			t.Errorf("job %s: %+v", id, j)
		}
		if n := runs(t, id, s); n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
}

// An agent that never comes back: after the grace period its job is
// requeued onto the other agent and completes there.
func TestAgentGoneJobMoves(t *testing.T) {
	st := startGPUStack(t, "--grace", "3s", "--prefetch", "0").withSim("--step-ms", "200", "--steps", "50")
	a, ev := st.a, st.ev
	j := a.submit("user001", slowGraph("gone", 7))
	ev.waitStage(j.ID, "executing", 30*time.Second)
	st.agent.kill9()
	st.sim.kill9() // the whole host is gone

	st.addAgent("gpu-b", startSim(t).base)
	ev.waitDone(60*time.Second, j.ID)
	got := a.job(j.ID)
	if got.Status != "completed" || got.Attempts != 2 || !strings.HasPrefix(got.Worker, "gpu-b/") {
		t.Errorf("job after its host died: %+v", got)
	}
}

// kill -9 the server mid-job and restart it: the running job is reconciled
// with the instance and completes once.
func TestServerKilledMidJob(t *testing.T) {
	st := startGPUStack(t, "--grace", "30s").withSim("--step-ms", "100", "--steps", "20")
	s := st.sim
	j := st.a.submit("user001", slowGraph("srv", 3))
	st.ev.waitStage(j.ID, "executing", 30*time.Second)
	st.restart()
	a2, ev2 := st.a, st.ev
	if got := a2.job(j.ID); got.Status != "running" && got.Status != "completed" {
		t.Fatalf("after restart the job is %+v", got)
	}
	ev2.waitFor("the job to complete", 60*time.Second, func(map[string]string, []map[string]any) bool {
		return a2.job(j.ID).Status == "completed"
	})
	if n := runs(t, j.ID, s); n != 1 {
		t.Errorf("the job ran %d times", n)
	}
}

// A drained instance stays drained when the server restarts (the
// instructor took it out of service for a reason), and can be resumed
// while its agent is away.
func TestDrainSurvivesRestart(t *testing.T) {
	stk := startGPUStack(t).withSim()
	s, agent := stk.sim, stk.agent
	if st := stk.a.do("POST", "/api/workers/gpu-a/0/drain", nil, nil); st != 200 {
		t.Fatalf("drain: %d", st)
	}
	stk.restart()
	a2 := stk.a
	stk.ev.waitWorkers(a2, 1, 30*time.Second)
	if st := a2.worker("gpu-a/0").State; st != "draining" {
		t.Fatalf("after the restart gpu-a/0 is %s, want draining", st)
	}

	// Resumed while its agent is away, it takes jobs when it is back.
	agent.kill9()
	ev2 := stk.ev
	ev2.waitFor("gpu-a/0 to go", 30*time.Second, func(map[string]string, []map[string]any) bool {
		return a2.worker("gpu-a/0").State == "disconnected"
	})
	var w struct {
		State string `json:"state"`
	}
	if st := a2.do("POST", "/api/workers/gpu-a/0/undrain", nil, &w); st != 200 || w.State != "disconnected" {
		t.Fatalf("undrain while away: %d %+v", st, w)
	}
	if st := a2.do("POST", "/api/workers/gpu-a/0/drain", nil, nil); st != 404 {
		t.Errorf("drain of an absent instance: %d, want 404", st)
	}
	j := a2.submit("user001", imageGraph("back", 1))
	startAgent(t, stk.base, "gpu-a", s)
	ev2.waitDone(30*time.Second, j.ID)
	if got := a2.job(j.ID); got.Status != "completed" {
		t.Errorf("job after undrain: %+v", got)
	}
}

// The simulator crashes mid-job: the instance shows as unreachable, the job
// goes back to the queue, and runs when the instance is back.
func TestSimulatorCrash(t *testing.T) {
	st, j := crashedMidJob(t)
	a, ev, s := st.a, st.ev, st.sim
	ev.waitFor("the instance to show unreachable", 30*time.Second, func(map[string]string, []map[string]any) bool {
		return a.worker("gpu-a/0").State == "unreachable"
	})
	s2 := restartSim(t, s, "--step-ms", "5", "--steps", "4")
	ev.waitDone(60*time.Second, j.ID)
	got := a.job(j.ID)
	if got.Status != "completed" || got.Attempts != 2 {
		t.Errorf("job after the crash: %+v", got)
	}
	if n := runs(t, j.ID, s2); n != 1 {
		t.Errorf("ran %d times on the restarted simulator", n)
	}
}

// crashedMidJob submits a job to a simulator that crashes in its sampler
// (server flags: a 30 s grace and extra) and waits for the crash.
func crashedMidJob(t *testing.T, extra ...string) (*stack, job) {
	t.Helper()
	st := startGPUStack(t, append([]string{"--grace", "30s"}, extra...)...).withSim("--step-ms", "20", "--steps", "10")
	setFault(t, st.sim, `{"crash_node":"KSampler"}`)
	j := st.a.submit("user001", slowGraph("crash", 5))
	<-st.sim.done // it crashed
	return st, j
}

// With --max-attempts 1 a job whose instance crashes fails, saying why.
func TestSimulatorCrashOutOfAttempts(t *testing.T) {
	st, j := crashedMidJob(t, "--max-attempts", "1")
	restartSim(t, st.sim)
	st.ev.waitDone(60*time.Second, j.ID)
	got := st.a.job(j.ID)
	// It names the instance it last failed on.
	if got.Status != "failed" || got.Error == nil || got.Error.Type != "attempts_exhausted" || got.Worker != "gpu-a/0" {
		t.Errorf("job: %+v", got)
	}
}

// Cancel a pending, a prefetched and a running job; change a priority and
// switch the mode while jobs run.
func TestCancelAndReorderWhileRunning(t *testing.T) {
	st := startGPUStack(t, "--prefetch", "1").withSim("--step-ms", "100", "--steps", "30")
	a, ev, s := st.a, st.ev, st.sim

	running := a.submit("user001", slowGraph("run", 1))
	ev.waitStage(running.ID, "executing", 30*time.Second)
	prefetched := a.submit("user002", slowGraph("pre", 2))
	ev.waitStage(prefetched.ID, "queued", 30*time.Second)
	pending := a.submit("user003", slowGraph("pen", 3))

	for _, id := range []string{pending.ID, prefetched.ID, running.ID} {
		var j job
		if st := a.do("DELETE", "/api/jobs/"+id, nil, &j); st != 200 || j.Status != "cancelled" {
			t.Fatalf("cancel %s: %d %+v", id, st, j)
		}
	}
	ev.waitDone(30*time.Second, pending.ID, prefetched.ID, running.ID)

	// The running job was interrupted; the prefetched one never ran.
	d := s.stats(t)
	if d.Executions[prefetched.ID] != 0 || d.Executions[pending.ID] != 0 {
		t.Errorf("cancelled jobs ran: %+v", d.Executions)
	}
	ev.waitFor("the instance to go idle", 30*time.Second, func(map[string]string, []map[string]any) bool {
		return a.worker("gpu-a/0").State == "idle"
	})

	// Priority and mode while jobs run: the instructor's job jumps ahead of
	// the pending ones.
	first := a.submit("user001", samplerGraph("a", 10))
	ev.waitStage(first.ID, "executing", 30*time.Second)
	second := a.submit("user002", samplerGraph("b", 11)) // prefetched
	ev.waitStage(second.ID, "queued", 30*time.Second)
	x := a.submit("user003", samplerGraph("x", 12))
	y := a.submit("user004", samplerGraph("y", 13))
	if st := a.do("PUT", "/api/queue/mode", map[string]any{"mode": "fifo"}, nil); st != 200 {
		t.Fatal(st)
	}
	var moved job
	if st := a.do("PATCH", "/api/jobs/"+y.ID+"/priority", map[string]any{"priority": 0}, &moved); st != 200 {
		t.Fatal(st)
	}
	ev.waitDone(90*time.Second, first.ID, second.ID, x.ID, y.ID)
	var list struct {
		Jobs []struct {
			ID        string    `json:"id"`
			StartedAt time.Time `json:"started_at"`
		} `json:"jobs"`
	}
	a.do("GET", "/api/jobs?status=completed", nil, &list)
	started := map[string]time.Time{}
	for _, j := range list.Jobs {
		started[j.ID] = j.StartedAt
	}
	if !started[y.ID].Before(started[x.ID]) {
		t.Errorf("priority 0 job started at %v, after the earlier job at %v", started[y.ID], started[x.ID])
	}
}

// An agent with a wrong token is refused and gets no work.
func TestWrongAgentToken(t *testing.T) {
	srv := startGPUServer(t, t.TempDir())
	a := admin{t, srv.base}
	s := startSim(t)
	p := startProc(t, "gpu-agent", "--server", srv.base, "--token", "not-the-agent-token-at-all", "--name", "intruder", "--comfy", s.base)
	p.waitLine(`(?i)rejected`, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatal("the agent did not exit")
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.ExitStatus() == 0 {
		t.Errorf("agent exit status %v", p.cmd.ProcessState)
	}
	j := a.submit("user001", imageGraph("x", 1))
	var workers struct {
		Workers []any `json:"workers"`
	}
	a.do("GET", "/api/workers", nil, &workers)
	if len(workers.Workers) != 0 {
		t.Errorf("workers: %+v", workers)
	}
	if got := a.job(j.ID); got.Status != "pending" {
		t.Errorf("job %+v", got)
	}
	if st := s.stats(t); len(st.Executions) != 0 {
		t.Errorf("simulator ran %v", st.Executions)
	}
}

func setFault(t testing.TB, s *sim, fault string) {
	t.Helper()
	resp, err := http.Post(s.base+"/sim/fault", "application/json", strings.NewReader(fault))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// Drain holds new work back from an instance; engine errors fail jobs with
// ComfyUI's details; a job past --job-timeout is interrupted and failed.
func TestDrainErrorsAndTimeout(t *testing.T) {
	stk := startGPUStack(t, "--job-timeout", "2s").withSim()
	a, ev, s := stk.a, stk.ev, stk.sim

	// Drained: the job waits; undrained: it runs.
	var w struct {
		Draining bool   `json:"draining"`
		State    string `json:"state"`
	}
	if st := a.do("POST", "/api/workers/gpu-a/0/drain", nil, &w); st != 200 || !w.Draining {
		t.Fatalf("drain: %d %+v", st, w)
	}
	if st := a.do("POST", "/api/workers/gpu-x/9/drain", nil, nil); st != 404 {
		t.Errorf("drain of an unknown instance: %d", st)
	}
	held := a.submit("user001", imageGraph("held", 1))
	if got := a.job(held.ID); got.Status != "pending" {
		t.Fatalf("job on a drained instance: %+v", got)
	}
	a.do("POST", "/api/workers/gpu-a/0/undrain", nil, &w)
	ev.waitDone(30*time.Second, held.ID)
	if got := a.job(held.ID); got.Status != "completed" {
		t.Errorf("after undrain: %+v", got)
	}

	// ComfyUI refuses the graph: failed with its validation error.
	bad := a.submit("user001", map[string]any{"1": map[string]any{"class_type": "NoSuchNode", "inputs": map[string]any{}}})
	ev.waitDone(30*time.Second, bad.ID)
	if got := a.job(bad.ID); got.Status != "failed" || got.Error == nil || got.Error.Type != "validation_error" {
		t.Errorf("invalid graph: %+v", got)
	}

	// A node raises: failed with the exception.
	setFault(t, s, `{"fail_node":"SaveImage","fail_message":"disk full"}`)
	boom := a.submit("user002", imageGraph("boom", 2))
	ev.waitDone(30*time.Second, boom.ID)
	if got := a.job(boom.ID); got.Status != "failed" || got.Error == nil || got.Error.Type != "execution_error" || !strings.Contains(got.Error.Message, "disk full") {
		t.Errorf("failing node: %+v", got)
	}

	// A node hangs: interrupted and failed after the timeout.
	setFault(t, s, `{"hang_node":"SaveImage"}`)
	hung := a.submit("user003", imageGraph("hang", 3))
	ev.waitDone(30*time.Second, hung.ID)
	if got := a.job(hung.ID); got.Status != "failed" || got.Error == nil || got.Error.Type != "timeout" {
		t.Errorf("hanging node: %+v", got)
	}
	setFault(t, s, `{}`)
	ev.waitFor("the instance to be free again", 30*time.Second, func(map[string]string, []map[string]any) bool {
		return a.worker("gpu-a/0").State == "idle"
	})
	ok := a.submit("user004", imageGraph("after", 4))
	ev.waitDone(30*time.Second, ok.ID)
	if got := a.job(ok.ID); got.Status != "completed" {
		t.Errorf("after the faults: %+v", got)
	}
}
