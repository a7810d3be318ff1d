package dispatch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/sched"
)

// watchJobs follows the queue's events until the test ends.
type watchJobs struct {
	sub *sched.Subscription
	// finished jobs, and the ends that a participant's socket tells as the
	// instance's execution_error (from the job's record), by job id
	done, errors map[string]int
	final        map[string]*workshop.Job
}

func watchRig(t *testing.T, r *rig) *watchJobs {
	w := &watchJobs{sub: r.q.Events().Subscribe(4096, nil), done: map[string]int{}, errors: map[string]int{}, final: map[string]*workshop.Job{}}
	t.Cleanup(w.sub.Close)
	return w
}

// wait reads events until every id is finished.
func (w *watchJobs) wait(t *testing.T, ids ...string) {
	t.Helper()
	w.until(t, func() bool {
		for _, id := range ids {
			if w.done[id] == 0 {
				return false
			}
		}
		return true
	})
}

// until reads events until cond holds.
func (w *watchJobs) until(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case e, ok := <-w.sub.C:
			if !ok {
				t.Fatal("the event subscription fell behind")
			}
			if e.Type == sched.EventJobUpdated && e.Job.Status.Finished() {
				w.done[e.Job.ID]++
				w.final[e.Job.ID] = e.Job
				if j := e.Job; j.Status == workshop.StatusFailed && j.Error != nil && j.Error.Type == "execution_error" &&
					strings.Contains(string(j.Error.Details), `"exception_type"`) {
					w.errors[j.ID]++
				}
			}
		case <-deadline:
			t.Fatal("timed out waiting on the queue's events")
		}
	}
}

func workerStatus(t *testing.T, d *dispatch.Dispatcher, id string) dispatch.WorkerStatus {
	t.Helper()
	for _, w := range d.Workers() {
		if w.ID == id {
			return w
		}
	}
	t.Fatalf("no worker %s in %+v", id, d.Workers())
	return dispatch.WorkerStatus{}
}

func submitN(t *testing.T, q *sched.Queue, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		j, err := q.Submit(context.Background(), sched.Submission{UserID: "user" + string(rune('a'+i)), Workflow: graph(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	return ids
}

// An instance whose GPU is out of memory for every job does not eat the
// queue: each job it fails runs on the other instance, the participant
// never sees the failed attempt, and after three in a row the instance is
// set aside (kept across restarts) until it is put back.
func TestSickInstanceIsSetAside(t *testing.T) {
	ctx := context.Background()
	r := startRig(t, rigConfig{instances: 2, step: 100 * time.Millisecond, setAsideAfter: 3,
		faults: map[int]sim.Faults{0: {OOMNode: "*"}}})
	w := watchRig(t, r)
	ids := submitN(t, r.q, 8)
	w.wait(t, ids...)
	retried := 0
	for _, id := range ids {
		j, _ := r.q.Get(id)
		if j.Status != workshop.StatusCompleted || j.Worker != "bench/1" {
			t.Errorf("job %s: %s on %s: %+v", id, j.Status, j.Worker, j.Error)
		}
		if len(j.Failures) > 0 {
			retried++
			if f := j.Failures[0]; len(j.Failures) != 1 || f.Worker != "bench/0" || f.Reason != "out_of_memory" ||
				!strings.HasPrefix(f.Message, "torch.OutOfMemoryError: CUDA out of memory") || j.Attempts != 2 {
				t.Errorf("job %s failures: %+v (attempts %d)", id, j.Failures, j.Attempts)
			}
		}
		if w.errors[id] != 0 {
			t.Errorf("job %s: its owner was sent the failed attempt's execution_error", id)
		}
	}
	// Set aside once three failed there in a row and one of them ran on
	// the other instance.
	sick := workerStatus(t, r.d, "bench/0")
	if sick.SetAside == nil || sick.State != dispatch.StateSetAside || sick.TakesJobs() ||
		!strings.Contains(sick.SetAside.Reason, "jobs in a row failed here and ran elsewhere") ||
		!strings.Contains(sick.SetAside.Reason, "torch.OutOfMemoryError") || len(sick.SetAside.Failures) < 3 {
		t.Fatalf("the sick instance: %+v", sick)
	}
	given := r.sims[0].Stats().PromptsFailed
	if given < 3 || int(given) != retried {
		t.Errorf("the sick instance failed %d jobs, %d were retried", given, retried)
	}
	more := submitN(t, r.q, 3)
	w.wait(t, more...)
	if st := r.sims[0].Stats(); st.PromptsFailed != given || st.PromptsQueued != given {
		t.Errorf("the set-aside instance was given jobs: %+v", st)
	}

	// Stored: a dispatcher on the same store knows it, before it connects.
	again := dispatch.New(dispatch.Config{Queue: r.q, DB: r.db, Log: quiet})
	if st := workerStatus(t, again, "bench/0"); st.SetAside == nil || st.State != dispatch.StateDisconnected {
		t.Errorf("after a restart: %+v", st)
	}

	if _, err := r.d.PutBack(ctx, "bench/1"); workshop.ErrorCode(err) != workshop.ECONFLICT {
		t.Errorf("put back of a healthy instance: %v", err)
	}
	if _, err := r.d.PutBack(ctx, "bench/9"); workshop.ErrorCode(err) != workshop.ENOTFOUND {
		t.Errorf("put back of an unknown instance: %v", err)
	}
	// Fixed and put back, it runs jobs again.
	r.sims[0].SetFaults(sim.Faults{})
	back, err := r.d.PutBack(ctx, "bench/0")
	if err != nil || back.SetAside != nil || len(back.RecentFailures) != 0 || !back.TakesJobs() {
		t.Fatalf("put back: %+v %v", back, err)
	}
	if _, err := r.d.Drain(ctx, "bench/1", true); err != nil {
		t.Fatal(err)
	}
	next := submitN(t, r.q, 1)
	w.wait(t, next...)
	if j, _ := r.q.Get(next[0]); j.Status != workshop.StatusCompleted || j.Worker != "bench/0" {
		t.Errorf("after put back: %s on %s", j.Status, j.Worker)
	}
	again = dispatch.New(dispatch.Config{Queue: r.q, DB: r.db, Log: quiet})
	for _, st := range again.Workers() {
		if st.SetAside != nil {
			t.Errorf("a restart after put back still has it set aside: %+v", st)
		}
	}
}

// A job that runs out of memory everywhere is the job's fault (too big a
// batch): it fails once it was tried on every instance, with the engine's
// error and where it was tried, its owner gets that error, and no
// instance is held to blame.
func TestFailingEverywhereIsTheJobs(t *testing.T) {
	oom := sim.Faults{OOMNode: "*"}
	r := startRig(t, rigConfig{instances: 2, setAsideAfter: 2, faults: map[int]sim.Faults{0: oom, 1: oom}})
	w := watchRig(t, r)
	ids := submitN(t, r.q, 3)
	w.wait(t, ids...)
	w.until(t, func() bool { return w.errors[ids[0]]+w.errors[ids[1]]+w.errors[ids[2]] >= 3 })
	for _, id := range ids {
		j := w.final[id]
		if j.Status != workshop.StatusFailed || j.Error == nil || j.Error.Type != "execution_error" ||
			!strings.Contains(j.Error.Message, "torch.OutOfMemoryError") ||
			!strings.Contains(j.Error.Message, "failed on every GPU instance that can take jobs: bench/0, bench/1") ||
			len(j.Failures) != 2 || j.Attempts != 2 {
			t.Errorf("job %s: %+v %+v", id, j.Error, j.Failures)
		}
		if w.errors[id] != 1 {
			t.Errorf("job %s: its owner got %d execution_error frames, want 1", id, w.errors[id])
		}
	}
	for _, id := range []string{"bench/0", "bench/1"} {
		if st := workerStatus(t, r.d, id); st.SetAside != nil || len(st.RecentFailures) != 0 {
			t.Errorf("%s was blamed for the jobs' failures: %+v", id, st)
		}
	}
}

// A user-side failure (a node's own error) fails the job at once, on the
// one instance, as before.
func TestJobsOwnErrorFailsAtOnce(t *testing.T) {
	r := startRig(t, rigConfig{instances: 2, setAsideAfter: 1,
		faults: map[int]sim.Faults{0: {FailNode: "*", FailMessage: "bad seed"}, 1: {FailNode: "*", FailMessage: "bad seed"}}})
	w := watchRig(t, r)
	ids := submitN(t, r.q, 1)
	w.wait(t, ids...)
	if j := w.final[ids[0]]; j.Status != workshop.StatusFailed || j.Attempts != 1 || len(j.Failures) != 0 || !strings.Contains(j.Error.Message, "bad seed") {
		t.Errorf("job: %+v", j)
	}
	for _, st := range r.d.Workers() {
		if st.SetAside != nil {
			t.Errorf("%s set aside for a job's own error", st.ID)
		}
	}
}
