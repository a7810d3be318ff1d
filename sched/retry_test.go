package sched_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
)

var oom = workshop.Failure{Reason: "out_of_memory", Message: "torch.OutOfMemoryError: CUDA out of memory"}

func lease(t *testing.T, q *sched.Queue, worker string) *workshop.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, err := q.Lease(ctx, worker, time.Minute)
	if err != nil {
		t.Fatalf("lease by %s: %v", worker, err)
	}
	return j
}

// noLease checks that worker gets nothing: it waits until ctx is done.
func noLease(t *testing.T, q *sched.Queue, worker string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if j, err := q.Lease(ctx, worker, time.Minute); err == nil {
		t.Fatalf("%s leased %s (%s)", worker, label(j), j.ID)
	}
}

// A job that failed on one instance for the instance's reason goes to
// another; the instance that failed it takes the next job instead; a job
// that failed on every usable instance fails, saying where it was tried.
func TestRetryElsewhere(t *testing.T) {
	for _, mode := range []workshop.QueueMode{workshop.ModeFIFO, workshop.ModeRoundRobin} {
		t.Run(string(mode), func(t *testing.T) {
			ctx := context.Background()
			q, _ := openQueue(t, t.TempDir(), sched.Config{Mode: mode, MaxAttempts: 5})
			q.SetWorkers([]string{"a", "b"})
			j1 := submit(t, q, "A", "j1")
			j2 := submit(t, q, "B", "j2")
			if got := lease(t, q, "a"); got.ID != j1.ID {
				t.Fatalf("a leased %s first", label(got))
			}
			back, err := q.RetryElsewhere(ctx, j1.ID, "a", oom, &workshop.JobError{Type: "execution_error", Message: "out of memory"})
			if err != nil || back.Status != workshop.StatusPending || len(back.Failures) != 1 || back.Failures[0].Worker != "a" ||
				back.Error == nil || !strings.Contains(back.Error.Message, "trying another GPU instance") {
				t.Fatalf("after the first failure: %+v %v", back, err)
			}
			// a skips j1 (still first in line) for j2; b takes j1.
			if got := lease(t, q, "a"); got.ID != j2.ID {
				t.Fatalf("a leased %s, want j2", label(got))
			}
			noLease(t, q, "a")
			if got := lease(t, q, "b"); got.ID != j1.ID || got.Attempts != 2 {
				t.Fatalf("b leased %+v, want j1 at its second attempt", got)
			}
			failed, err := q.RetryElsewhere(ctx, j1.ID, "b", oom, &workshop.JobError{Type: "execution_error", Message: "out of memory"})
			if err != nil || failed.Status != workshop.StatusFailed || failed.Error.Type != "execution_error" ||
				!strings.Contains(failed.Error.Message, "every GPU instance") || !strings.Contains(failed.Error.Message, "a, b") ||
				len(failed.Failures) != 2 || failed.Failures[1].Worker != "b" || failed.Failures[1].At.IsZero() {
				t.Fatalf("after failing everywhere: %+v %v", failed, err)
			}
			if _, err := q.RetryElsewhere(ctx, j1.ID, "b", oom, &workshop.JobError{}); code(err) != workshop.ECONFLICT {
				t.Errorf("retry of a failed job: %v", err)
			}
		})
	}
}

// Avoiding is a preference: with no other usable worker the job goes back
// to the one it failed on (a lost job after a restart of the instance), and
// a worker waiting for a job it avoids wakes when the others go.
func TestAvoidOnlyWhileAnotherCanTake(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{MaxAttempts: 5})
	q.SetWorkers([]string{"a"})
	j := submit(t, q, "A", "j")
	lease(t, q, "a")
	if _, err := q.Requeue(ctx, j.ID, "a", "the GPU instance lost the job"); err != nil {
		t.Fatal(err)
	}
	if got := lease(t, q, "a"); got.ID != j.ID {
		t.Fatalf("a leased %s", label(got))
	}
	got, _ := q.Get(j.ID)
	if len(got.Failures) != 1 || got.Failures[0].Reason != sched.FailureLost || got.Failures[0].Worker != "a" {
		t.Errorf("failures: %+v", got.Failures)
	}

	// Failed on a with b there: a waits; when b goes, a takes it.
	q.SetWorkers([]string{"a", "b"})
	if _, err := q.RetryElsewhere(ctx, j.ID, "a", oom, &workshop.JobError{Type: "execution_error"}); err != nil {
		t.Fatal(err)
	}
	// The avoidance is stored with the job: it holds after a restart.
	db.Close()
	q, _ = openQueue(t, dir, sched.Config{MaxAttempts: 5})
	q.SetWorkers([]string{"a", "b"})
	noLease(t, q, "a")
	leased := make(chan *workshop.Job, 1)
	go func() {
		j, _ := q.Lease(ctx, "a", time.Minute)
		leased <- j
	}()
	q.SetWorkers([]string{"a"})
	select {
	case got := <-leased:
		if got == nil || got.ID != j.ID || got.Attempts != 3 {
			t.Fatalf("a leased %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a was not woken when b went")
	}
	// Alone, a failure on the only worker fails the job at once.
	failed, err := q.RetryElsewhere(ctx, j.ID, "a", oom, &workshop.JobError{Type: "execution_error", Message: "out of memory"})
	if err != nil || failed.Status != workshop.StatusFailed || !strings.Contains(failed.Error.Message, "out of memory (failed on every GPU instance that can take jobs: a)") {
		t.Fatalf("alone: %+v %v", failed, err)
	}
}

// Retries count as attempts: a job never bounces forever.
func TestRetryElsewhereBoundedByAttempts(t *testing.T) {
	ctx := context.Background()
	q, _ := openQueue(t, t.TempDir(), sched.Config{MaxAttempts: 2})
	q.SetWorkers([]string{"a", "b", "c"})
	j := submit(t, q, "A", "j")
	lease(t, q, "a")
	q.RetryElsewhere(ctx, j.ID, "a", oom, &workshop.JobError{Type: "execution_error"})
	lease(t, q, "b")
	got, err := q.RetryElsewhere(ctx, j.ID, "b", oom, &workshop.JobError{Type: "execution_error"})
	if err != nil || got.Status != workshop.StatusFailed || got.Error.Type != "attempts_exhausted" || len(got.Failures) != 2 {
		t.Fatalf("after two attempts: %+v %v", got, err)
	}
	// The instance it last failed on stays on the job, for the instructor.
	if stored, _ := q.Get(j.ID); stored.Worker != "b" || got.Worker != "b" {
		t.Errorf("a job out of attempts names worker %q (stored %q), want b", got.Worker, stored.Worker)
	}
}

// A job goes to an instance that has every node class it uses while one
// is there, or away for a while (it waits for that one); with none that
// has them, any instance takes it and says what it lacks.
func TestJobsGoWhereTheirNodesAre(t *testing.T) {
	ctx := context.Background()
	q, _ := openQueue(t, t.TempDir(), sched.Config{MaxAttempts: 5})
	basic := map[string]bool{"EmptyImage": true, "SaveImage": true}
	more := map[string]bool{"EmptyImage": true, "SaveImage": true, "ImageFlip": true}
	q.SetWorkers([]string{"old", "new"})
	q.SetNodes(map[string]map[string]bool{"old": basic, "new": more})
	flip := json.RawMessage(`{"1":{"class_type":"EmptyImage","inputs":{}},"2":{"class_type":"ImageFlip","inputs":{"image":["1",0]}},"3":{"class_type":"SaveImage","inputs":{"images":["2",0]}}}`)
	submitGraph := func(label string, g json.RawMessage) *workshop.Job {
		j, err := q.Submit(ctx, sched.Submission{UserID: "A", Workflow: g, Metadata: json.RawMessage(fmt.Sprintf(`{"label":%q}`, label))})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	f1 := submitGraph("flip1", flip)
	plain := submit(t, q, "A", "plain")
	// old passes the flip job by for the next one; new takes it.
	if got := lease(t, q, "old"); got.ID != plain.ID {
		t.Fatalf("old leased %s, want plain", label(got))
	}
	noLease(t, q, "old")
	if got := lease(t, q, "new"); got.ID != f1.ID {
		t.Fatalf("new leased %s, want flip1", label(got))
	}
	// new is away but listed (within its grace): the job waits for it.
	f2 := submitGraph("flip2", flip)
	q.SetWorkers([]string{"old"})
	noLease(t, q, "old")
	// No instance with ImageFlip any more: old takes it, and a failure
	// there for the missing node ends it, there being no other to try.
	q.SetNodes(map[string]map[string]bool{"old": basic})
	if got := lease(t, q, "old"); got.ID != f2.ID {
		t.Fatalf("old leased %s, want flip2", label(got))
	}
	missing := workshop.Failure{Reason: "missing_node", Message: "Node 'ImageFlip' not found"}
	if got, err := q.RetryElsewhere(ctx, f2.ID, "old", missing, &workshop.JobError{Type: "validation_error", Message: "missing node"}); err != nil || got.Status != workshop.StatusFailed {
		t.Fatalf("after the missing node: %+v %v", got, err)
	}
	// An instance whose classes are not known yet may run anything, so a
	// job that fails on new for its own reason goes there, not to old.
	f3 := submitGraph("flip3", flip)
	q.SetWorkers([]string{"old", "new", "fresh"})
	q.SetNodes(map[string]map[string]bool{"old": basic, "new": more})
	lease(t, q, "new")
	if got, err := q.RetryElsewhere(ctx, f3.ID, "new", oom, &workshop.JobError{Type: "execution_error"}); err != nil || got.Status != workshop.StatusPending {
		t.Fatalf("after failing on new: %+v %v", got, err)
	}
	noLease(t, q, "old")
	if got := lease(t, q, "fresh"); got.ID != f3.ID {
		t.Fatalf("fresh leased %s, want flip3", label(got))
	}
}
