package sched_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// reportJobs makes n jobs over a few hours before now: finished ones of
// every kind, some still pending or running, at random times (not on
// minute boundaries).
func reportJobs(n int, now time.Time) []*workshop.Job {
	rng := rand.New(rand.NewPCG(7, 11))
	var jobs []*workshop.Job
	for i := range n {
		created := now.Add(-time.Duration(rng.Int64N(int64(5 * time.Hour))))
		j := &workshop.Job{ID: idAt(created), Seq: uint64(i + 1), UserID: fmt.Sprintf("user%03d", 1+rng.IntN(9)),
			Workflow: graph, Priority: 2, CreatedAt: created}
		// Things happen in order, and before now.
		started := created.Add(time.Duration(rng.Int64N(int64(20 * time.Minute))))
		started = time.Unix(0, min(started.UnixNano(), now.UnixNano()))
		ended := started.Add(time.Duration(rng.Int64N(int64(10 * time.Minute))))
		ended = time.Unix(0, min(ended.UnixNano(), now.UnixNano())).UTC()
		switch k := rng.IntN(10); {
		case k < 6:
			j.Status, j.StartedAt, j.CompletedAt, j.Worker = workshop.StatusCompleted, &started, &ended, fmt.Sprintf("gpu-%d/0", rng.IntN(3))
		case k == 6:
			j.Status, j.StartedAt, j.CompletedAt = workshop.StatusFailed, &started, &ended
		case k == 7:
			j.Status, j.CompletedAt = workshop.StatusCancelled, &ended
		case k == 8:
			j.Status, j.StartedAt, j.Worker = workshop.StatusRunning, &started, "gpu-0/0"
		default:
			j.Status = workshop.StatusPending
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// idAt is a UUIDv7 id of a job submitted at t, as the queue makes them.
func idAt(t time.Time) string {
	id := uuid.Must(uuid.NewRandom())
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = id[6]&0x0f | 0x70
	return id.String()
}

// oracle computes the report by reading every job, as the server did
// before it kept running totals.
func oracle(jobs []*workshop.Job, now time.Time) (waits, runs []float64, timeline []sched.TimelinePoint, users map[string]int) {
	users = map[string]int{}
	first := jobs[0].CreatedAt
	for _, j := range jobs {
		users[j.UserID]++
		if j.CreatedAt.Before(first) {
			first = j.CreatedAt
		}
		if j.StartedAt != nil {
			waits = append(waits, j.StartedAt.Sub(j.CreatedAt).Seconds())
		}
		if j.Status == workshop.StatusCompleted {
			runs = append(runs, j.CompletedAt.Sub(*j.StartedAt).Seconds())
		}
	}
	start := first.Truncate(time.Minute)
	step := time.Minute
	for now.Sub(start)/step > 720 {
		step *= 2
	}
	for t := start; !t.After(now); t = t.Add(step) {
		edge := t.Add(step)
		p := sched.TimelinePoint{T: t.UTC()}
		for _, j := range jobs {
			if j.CreatedAt.After(edge) {
				continue
			}
			switch {
			case j.CompletedAt != nil && !j.CompletedAt.After(edge):
				if j.Status == workshop.StatusCompleted && j.CompletedAt.After(t) {
					p.Completed++
				}
			case j.StartedAt != nil && !j.StartedAt.After(edge):
				p.Running++
			default:
				p.Pending++
			}
		}
		timeline = append(timeline, p)
	}
	return waits, runs, timeline, users
}

func exactQuantile(v []float64, q float64) float64 {
	slices.Sort(v)
	return v[int(q*float64(len(v)-1))]
}

// The report from running totals matches one computed from every job:
// the same timeline and counts, quantiles within 1%; and pruning takes the
// pruned jobs' share out again.
func TestReportMatchesEveryJob(t *testing.T) {
	now := time.Now().UTC()
	jobs := reportJobs(3000, now)
	dir := t.TempDir()
	db, err := store.Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		for _, j := range jobs {
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	q, _ := openQueue(t, dir, sched.Config{})
	check := func(jobs []*workshop.Job) {
		t.Helper()
		r, err := q.Report(now)
		if err != nil {
			t.Fatal(err)
		}
		waits, runs, timeline, users := oracle(jobs, now)
		if !slices.Equal(r.Timeline, timeline) {
			for i := range min(len(r.Timeline), len(timeline)) {
				if r.Timeline[i] != timeline[i] {
					t.Fatalf("timeline point %d of %d: %+v, want %+v", i, len(timeline), r.Timeline[i], timeline[i])
				}
			}
			t.Fatalf("timeline has %d points, want %d", len(r.Timeline), len(timeline))
		}
		for _, c := range []struct {
			name string
			h    *store.Histogram
			v    []float64
		}{{"wait", &r.Wait, waits}, {"run", &r.Run, runs}} {
			for _, p := range []float64{0.5, 0.9} {
				got, _ := c.h.Quantile(p)
				want := exactQuantile(c.v, p)
				if math.Abs(got.Seconds()-want) > 0.011*want+0.001 {
					t.Errorf("%s p%.0f: %.3fs, want %.3fs", c.name, p*100, got.Seconds(), want)
				}
			}
			if c.h.Len() != len(c.v) {
				t.Errorf("%s holds %d, want %d", c.name, c.h.Len(), len(c.v))
			}
		}
		got := map[string]int{}
		for _, p := range r.Participants {
			got[p.UserID] = p.Jobs
		}
		if fmt.Sprint(got) != fmt.Sprint(users) {
			t.Errorf("jobs per participant %v, want %v", got, users)
		}
	}
	check(jobs)

	cutoff := now.Add(-3 * time.Hour)
	pruned, err := q.Prune(context.Background(), cutoff)
	if err != nil || len(pruned) == 0 {
		t.Fatalf("prune: %d, %v", len(pruned), err)
	}
	kept := slices.DeleteFunc(slices.Clone(jobs), func(j *workshop.Job) bool {
		return j.CreatedAt.Before(cutoff) && j.Status.Finished()
	})
	if len(kept) != len(jobs)-len(pruned) {
		t.Fatalf("pruned %d, want %d", len(pruned), len(jobs)-len(kept))
	}
	check(kept)
}
