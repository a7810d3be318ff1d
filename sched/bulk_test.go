package sched_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
)

// Cancelling everything of one participant, or every pending job, takes
// exactly those, says what they were, publishes each change and survives a
// reopen; a selector that names nothing valid changes nothing.
func TestCancelSelected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q, db := openQueue(t, dir, sched.Config{Mode: workshop.ModeFIFO})
	a1 := submit(t, q, "A", "a1")
	submit(t, q, "B", "b1")
	submit(t, q, "A", "a2")
	submit(t, q, "C", "c1")
	submit(t, q, "A", "a3")
	run, err := q.Lease(ctx, "w", time.Minute) // a1 runs
	if err != nil || run.ID != a1.ID {
		t.Fatalf("lease: %v %v", run, err)
	}

	if _, err := q.Select(sched.Selector{Status: workshop.StatusCompleted}); workshop.ErrorCode(err) != workshop.EINVALID {
		t.Errorf("select completed: %v", err)
	}
	if _, err := q.CancelSelected(ctx, sched.Selector{UserID: "no/one"}, ""); workshop.ErrorCode(err) != workshop.EINVALID {
		t.Errorf("bad user: %v", err)
	}
	preview, err := q.Select(sched.Selector{UserID: "A"})
	if err != nil {
		t.Fatal(err)
	}
	if got := picked(preview); got != "1:running 3:pending 5:pending" {
		t.Errorf("select A: %s", got)
	}
	if q.Status().Counts[workshop.StatusPending] != 4 {
		t.Fatal("Select changed something")
	}

	sub := q.Events().Subscribe(16, nil)
	defer sub.Close()
	got, err := q.CancelSelected(ctx, sched.Selector{UserID: "A"}, "cancelled by the instructor")
	if err != nil {
		t.Fatal(err)
	}
	if picked(got) != picked(preview) {
		t.Errorf("cancelled %s, selected %s", picked(got), picked(preview))
	}
	for range got {
		e := <-sub.C
		if e.Type != sched.EventJobUpdated || e.Job.Status != workshop.StatusCancelled || e.Job.UserID != "A" || e.Job.Error.Message != "cancelled by the instructor" {
			t.Errorf("event %+v", e)
		}
	}
	if got := strings.Join(pendingOrder(t, q), " "); got != "b1 c1" {
		t.Errorf("left pending: %s", got)
	}
	if err := q.Extend(ctx, a1.ID, "w", time.Minute); workshop.ErrorCode(err) != workshop.ECONFLICT {
		t.Errorf("the worker still holds the cancelled job: %v", err)
	}

	// Clear pending: everyone's waiting jobs, not the running ones.
	b2 := submit(t, q, "B", "b2")
	if _, err := q.Lease(ctx, "w", time.Minute); err != nil { // b1 runs
		t.Fatal(err)
	}
	got, err = q.CancelSelected(ctx, sched.Selector{Status: workshop.StatusPending}, "")
	if err != nil {
		t.Fatal(err)
	}
	if s := picked(got); s != "4:pending "+itoa(b2.Seq)+":pending" {
		t.Errorf("clear pending cancelled %s", s)
	}
	st := q.Status().Counts
	if st[workshop.StatusPending] != 0 || st[workshop.StatusRunning] != 1 || st[workshop.StatusCancelled] != 5 {
		t.Errorf("counts %v", st)
	}
	if got, _ := q.CancelSelected(ctx, sched.Selector{Status: workshop.StatusPending}, ""); len(got) != 0 {
		t.Errorf("nothing left, yet cancelled %v", got)
	}

	// On disk too.
	db.Close()
	q2, _ := openQueue(t, dir, sched.Config{})
	st = q2.Status().Counts
	if st[workshop.StatusPending] != 0 || st[workshop.StatusRunning] != 1 || st[workshop.StatusCancelled] != 5 {
		t.Errorf("after reopen: %v", st)
	}
}

func picked(ps []sched.Picked) string {
	var out []string
	for _, p := range ps {
		out = append(out, itoa(p.Number)+":"+string(p.Status))
	}
	return strings.Join(out, " ")
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
