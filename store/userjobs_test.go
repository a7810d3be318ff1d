package store_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// A participant's jobs are chosen, counted, sorted and paged from their
// index, which follows every change of status; the page's jobs come
// without their graph parts, which the job itself keeps.
func TestUserJobs(t *testing.T) {
	db := open(t, t.TempDir())
	// u0 gets jobs 3, 6, ... 30: job i ran for i seconds when finished.
	write(t, db, func(tx *store.Tx) error {
		for i := 1; i <= 30; i++ {
			j := job(i)
			j.ExtraData = json.RawMessage(`{"extra_pnginfo": {"workflow": {"nodes": []}}}`)
			j.WorkflowID = fmt.Sprintf("wf-%d", i%2)
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	// Jobs 3..15 of u0 finish: completed, but 9 failed and 12 cancelled
	// before it started.
	for i := 3; i <= 15; i += 3 {
		write(t, db, func(tx *store.Tx) error {
			_, err := tx.UpdateJob(job(i).ID, func(j *workshop.Job) error {
				started, ended := j.CreatedAt, j.CreatedAt.Add(time.Duration(i)*time.Second)
				j.Status, j.StartedAt, j.CompletedAt = workshop.StatusCompleted, &started, &ended
				switch i {
				case 9:
					j.Status = workshop.StatusFailed
				case 12:
					j.Status, j.StartedAt = workshop.StatusCancelled, nil
				}
				return nil
			})
			return err
		})
	}
	seqs := func(jobs []*workshop.Job) []uint64 {
		var out []uint64
		for _, j := range jobs {
			if j.Workflow != nil || j.ExtraData != nil {
				t.Errorf("job %d listed with its graph", j.Seq)
			}
			out = append(out, j.Seq)
		}
		return out
	}
	finished := func(e store.UserJob) bool {
		return e.Status.Finished() && (e.Started != 0 || e.Status != workshop.StatusCancelled)
	}
	for _, c := range []struct {
		q     store.UserJobsQuery
		want  []uint64
		total int
	}{
		{store.UserJobsQuery{Limit: 3}, []uint64{30, 27, 24}, 10},
		{store.UserJobsQuery{Limit: 3, Offset: 8}, []uint64{6, 3}, 10},
		{store.UserJobsQuery{Asc: true, Limit: 2, Offset: 1}, []uint64{6, 9}, 10},
		{store.UserJobsQuery{Offset: 20}, nil, 10},
		{store.UserJobsQuery{Match: finished}, []uint64{15, 9, 6, 3}, 4},
		{store.UserJobsQuery{Match: finished, ByDuration: true}, []uint64{15, 9, 6, 3}, 4},
		{store.UserJobsQuery{Match: finished, ByDuration: true, Asc: true, Limit: 2}, []uint64{3, 6}, 4},
		// Jobs that never ran count 0 and keep submission order.
		{store.UserJobsQuery{ByDuration: true, Limit: 4}, []uint64{15, 9, 6, 3}, 10},
		{store.UserJobsQuery{ByDuration: true, Offset: 4, Limit: 3}, []uint64{30, 27, 24}, 10},
		{store.UserJobsQuery{Match: func(e store.UserJob) bool { return e.Status == workshop.StatusPending }}, []uint64{30, 27, 24, 21, 18}, 5},
		{store.UserJobsQuery{Match: func(e store.UserJob) bool { return e.WorkflowID == "wf-1" }}, []uint64{27, 21, 15, 9, 3}, 5},
	} {
		c.q.UserID = "u0"
		// The queue names the active jobs (18 to 30); 15 finished since
		// it looked, 1 is another participant's, 99 is not stored.
		c.q.Active = []string{job(30).ID, job(15).ID, job(18).ID, job(21).ID, job(24).ID, job(27).ID, job(1).ID, job(99).ID}
		var got []*workshop.Job
		var total int
		db.View(func(tx *store.Tx) (err error) {
			got, total, err = tx.UserJobs(c.q)
			return err
		})
		if s := seqs(got); !slices.Equal(s, c.want) || total != c.total {
			t.Errorf("%+v: %v of %d, want %v of %d", c.q, s, total, c.want, c.total)
		}
	}
	db.View(func(tx *store.Tx) error {
		j, err := tx.Job(job(9).ID)
		if err != nil || string(j.Workflow) != string(job(9).Workflow) || string(j.ExtraData) != `{"extra_pnginfo": {"workflow": {"nodes": []}}}` || j.Status != workshop.StatusFailed {
			t.Errorf("job 9 read back as %+v, %v", j, err)
		}
		return nil
	})
	// A deleted job leaves the index and takes its graph parts along.
	write(t, db, func(tx *store.Tx) error { return tx.DeleteJob(job(30).ID) })
	write(t, db, func(tx *store.Tx) error {
		j := job(30) // the same id again, with no graph of its own
		j.Workflow = nil
		return tx.PutJob(j)
	})
	db.View(func(tx *store.Tx) error {
		if j, err := tx.Job(job(30).ID); err != nil || j.Workflow != nil || j.ExtraData != nil {
			t.Errorf("a job put again after its delete: %+v %v", j, err)
		}
		_, total, _ := tx.UserJobs(store.UserJobsQuery{UserID: "u0", Active: []string{job(18).ID, job(21).ID, job(24).ID, job(27).ID, job(30).ID}})
		if total != 10 {
			t.Errorf("u0 has %d jobs", total)
		}
		return nil
	})
}

// The participant's index holds finished jobs only, so that submissions
// and dispatches do not write to it; a listing merges in the active jobs
// the queue names, by time, once each, with what their records say.
func TestUserIndexHoldsFinishedJobs(t *testing.T) {
	db := open(t, t.TempDir())
	for i := 1; i <= 9; i += 3 { // u1's jobs 1, 4 and 7
		write(t, db, func(tx *store.Tx) error { return tx.PutJob(job(i)) })
	}
	set := func(i int, fn func(j *workshop.Job)) {
		write(t, db, func(tx *store.Tx) error {
			_, err := tx.UpdateJob(job(i).ID, func(j *workshop.Job) error { fn(j); return nil })
			return err
		})
	}
	list := func(f store.JobFilter) string {
		f.UserID = "u1"
		var out []string
		db.View(func(tx *store.Tx) error {
			jobs, next, err := tx.ListJobs(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				out = append(out, fmt.Sprintf("%d:%s", j.Seq, j.Status))
			}
			if next != "" {
				out = append(out, "more")
			}
			return nil
		})
		return fmt.Sprint(out)
	}
	all := []string{job(1).ID, job(4).ID, job(7).ID}
	check := func(what string, f store.JobFilter, want string) {
		t.Helper()
		if got := list(f); got != want {
			t.Errorf("%s: %s, want %s", what, got, want)
		}
	}
	check("pending, unnamed", store.JobFilter{}, "[]")
	check("pending, named", store.JobFilter{Active: all}, "[7:pending 4:pending 1:pending]")
	set(4, func(j *workshop.Job) { j.Status = workshop.StatusCompleted })
	check("one finished, unnamed", store.JobFilter{}, "[4:completed]")
	check("named before it finished", store.JobFilter{Active: all}, "[7:pending 4:completed 1:pending]")
	check("paged", store.JobFilter{Active: all, Limit: 1}, "[7:pending more]")
	check("from a cursor", store.JobFilter{Active: all, Before: job(7).ID, Limit: 1}, "[4:completed more]")
	check("past the index", store.JobFilter{Active: all, Before: job(4).ID}, "[1:pending]")
	// Put back to pending (a repair tool): out of the index again.
	set(4, func(j *workshop.Job) { j.Status = workshop.StatusPending })
	check("put back, unnamed", store.JobFilter{}, "[]")
	// A finished job given to another participant leaves u1's index.
	set(7, func(j *workshop.Job) { j.Status = workshop.StatusFailed })
	set(7, func(j *workshop.Job) { j.UserID = "u2" })
	check("moved away", store.JobFilter{Active: all}, "[4:pending 1:pending]")
	db.View(func(tx *store.Tx) error {
		jobs, _, _ := tx.ListJobs(store.JobFilter{UserID: "u2"})
		if len(jobs) != 1 || jobs[0].Seq != 7 {
			t.Errorf("u2's jobs %+v", jobs)
		}
		// Oldest first, through UserJobs.
		page, total, _ := tx.UserJobs(store.UserJobsQuery{UserID: "u1", Active: all, Asc: true})
		if total != 2 || len(page) != 2 || page[0].Seq != 1 || page[1].Seq != 4 {
			t.Errorf("u1 oldest first: %d %+v", total, page)
		}
		return nil
	})
}
