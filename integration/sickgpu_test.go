package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// An instance that fails every job with CUDA out of memory does not eat
// the queue: its jobs run on the other instance, it is set aside with the
// reason (kept across a server restart, shown by `workshop status`), and
// the instructor puts it back.
func TestSickInstanceSetAsideAndPutBack(t *testing.T) {
	st := startGPUStack(t)
	a, ev := st.a, st.ev
	sick := startSim(t, "--oom-node", "*")
	healthy := startSim(t, "--step-ms", "30", "--steps", "10")
	st.addAgent("gpu-a", "sick="+sick.base, "ok="+healthy.base)

	for _, j := range untilSetAside(t, a, ev, "gpu-a/sick") {
		if j.Status != "completed" || j.Worker != "gpu-a/ok" {
			t.Errorf("job %s: %s on %s (%+v)", j.ID, j.Status, j.Worker, j.Error)
		}
	}
	w := a.worker("gpu-a/sick")
	if w.State != "set_aside" || w.SetAside == nil || !strings.Contains(w.SetAside.Reason, "torch.OutOfMemoryError") {
		t.Fatalf("the sick instance: %+v", w)
	}
	failedThere := sick.stats(t).Executions

	// Set aside across a restart of the server.
	st.restart()
	a, ev = st.a, st.ev
	ev.waitWorkers(a, 2, 30*time.Second)
	if w := a.worker("gpu-a/sick"); w.State != "set_aside" || w.SetAside == nil {
		t.Fatalf("after the restart: %+v", w)
	}
	out, err := runCLI(t, st.server, "status")
	if err != nil || !strings.Contains(out, "1 set aside") || !strings.Contains(out, "set aside, as ") || !strings.Contains(out, "torch.OutOfMemoryError") {
		t.Errorf("workshop status: %v\n%s", err, out)
	}
	j := a.submit("user001", samplerGraph("after", 400))
	ev.waitDone(30*time.Second, j.ID)
	if got := sick.stats(t).Executions; len(got) != len(failedThere) {
		t.Errorf("the set-aside instance was given a job: %v", got)
	}

	if st := a.do("POST", "/api/workers/gpu-a/ok/put-back", nil, nil); st != 409 {
		t.Errorf("put back of a healthy instance: %d, want 409", st)
	}
	if st := a.do("POST", "/api/workers/gpu-z/0/put-back", nil, nil); st != 404 {
		t.Errorf("put back of an unknown instance: %d, want 404", st)
	}
	setFault(t, sick, `{}`)
	var back workerInfo
	if st := a.do("POST", "/api/workers/gpu-a/sick/put-back", nil, &back); st != 200 || back.SetAside != nil || back.State != "idle" {
		t.Fatalf("put back: %d %+v", st, back)
	}
	a.do("POST", "/api/workers/gpu-a/ok/drain", nil, nil)
	j = a.submit("user002", samplerGraph("back", 401))
	ev.waitDone(30*time.Second, j.ID)
	if got := a.job(j.ID); got.Status != "completed" || got.Worker != "gpu-a/sick" {
		t.Errorf("after put back: %+v", got)
	}
}

// untilSetAside submits jobs, a few at a time, until the sick instance is
// set aside (it takes three failures there, one of those jobs completed
// elsewhere), and returns them finished.
func untilSetAside(t *testing.T, a admin, ev *events, sick string) []job {
	t.Helper()
	var jobs []job
	for round := 0; a.worker(sick).SetAside == nil; round++ {
		if round == 5 {
			t.Fatalf("%s is not set aside after %d jobs: %+v", sick, len(jobs), a.worker(sick))
		}
		var ids []string
		for i := range 4 {
			ids = append(ids, a.submit(fmt.Sprintf("user00%d", i+1), samplerGraph("sick", 10*round+i)).ID)
		}
		ev.waitDone(60*time.Second, ids...)
		for _, id := range ids {
			jobs = append(jobs, a.job(id))
		}
	}
	return jobs
}

// A GPU host whose agent is killed stays listed, disconnected, with the
// job it holds and its grace counting down (API and `workshop status`);
// removing it gives the job back to the queue at once.
func TestDisconnectedHostStaysListed(t *testing.T) {
	st, j := slowJobRunning(t, "100", "--grace", "2m")
	a, ev := st.a, st.ev
	if st := a.do("DELETE", "/api/workers/gpu-a/0", nil, nil); st != 409 {
		t.Errorf("removing a connected instance: %d, want 409", st)
	}
	st.agent.kill9()
	ev.waitFor("gpu-a to show as disconnected", 30*time.Second, func(map[string]string, []map[string]any) bool {
		return a.worker("gpu-a/0").State == "disconnected"
	})
	w := a.worker("gpu-a/0")
	if w.Connected || len(w.HeldJobs) != 1 || w.HeldJobs[0] != j.ID || w.LostAt == nil ||
		w.GraceRemainingS == nil || *w.GraceRemainingS < 60 || *w.GraceRemainingS > 120 {
		t.Fatalf("disconnected: %+v", w)
	}
	out, err := runCLI(t, st.server, "status")
	if err != nil || !strings.Contains(out, "1 disconnected") || !strings.Contains(out, "gpu-a/0") || !strings.Contains(out, "holds 1 job(s)") {
		t.Errorf("workshop status: %v\n%s", err, out)
	}

	if st := a.do("DELETE", "/api/workers/gpu-a/0", nil, nil); st != 204 {
		t.Fatalf("remove: %d", st)
	}
	if got := a.job(j.ID); got.Status != "pending" || len(got.Failures) != 1 || got.Failures[0].Worker != "gpu-a/0" {
		t.Errorf("the job it held: %+v", got)
	}
	if w := a.worker("gpu-a/0"); w.State != "absent" {
		t.Errorf("after removal: %+v", w)
	}
	if st := a.do("DELETE", "/api/workers/gpu-a/0", nil, nil); st != 404 {
		t.Errorf("removing it again: %d, want 404", st)
	}
}
