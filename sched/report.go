package sched

import (
	"slices"
	"strings"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// Report is the workshop's summary for the instructor: the store's running
// totals of finished jobs with the active jobs from memory added, so it
// costs the number of participants, instances, minutes and active jobs,
// never the number of jobs stored.
type Report struct {
	JobsDone, JobsFailed int
	// Wait is submission to start of every job that started; Run is start
	// to completion of every completed job.
	Wait, Run    store.Histogram
	First        time.Time // the oldest job's submission; zero without jobs
	Instances    []InstanceReport
	Participants []ParticipantReport
	Timeline     []TimelinePoint
}

// InstanceReport is one instance's completed jobs and their run time.
type InstanceReport struct {
	ID   string
	Jobs int
	Busy time.Duration
}

// ParticipantReport is one participant's jobs (any status) and the GPU
// time of the completed ones.
type ParticipantReport struct {
	UserID string
	Jobs   int
	GPU    time.Duration
}

// TimelinePoint is one step of the workshop: jobs completed in it, and
// pending and running at its end.
type TimelinePoint struct {
	T                           time.Time
	Completed, Pending, Running int
}

// maxTimeline bounds the timeline's points; steps double from a minute.
const maxTimeline = 720

// Report summarises every job up to now.
func (q *Queue) Report(now time.Time) (*Report, error) {
	var totals *store.Report
	var first *workshop.Job
	var counts map[workshop.JobStatus]int
	err := q.db.View(func(tx *store.Tx) (err error) {
		if totals, err = tx.Report(); err != nil {
			return err
		}
		counts = tx.JobCounts()
		first, err = tx.FirstJob()
		return err
	})
	if err != nil {
		return nil, err
	}
	r := &Report{JobsDone: counts[workshop.StatusCompleted], JobsFailed: counts[workshop.StatusFailed], Wait: totals.Wait, Run: totals.Run}
	if first != nil {
		r.First = first.CreatedAt
	}

	// The active jobs, from memory.
	users := totals.Users
	var created, started []time.Time
	q.mu.Lock()
	for _, e := range q.active {
		t := users[e.user]
		t.Jobs++
		users[e.user] = t
		created = append(created, e.created)
		if e.status == workshop.StatusRunning && !e.started.IsZero() {
			started = append(started, e.started)
			r.Wait.Add(max(e.started.Sub(e.created), 0))
		}
		if r.First.IsZero() || e.created.Before(r.First) {
			r.First = e.created
		}
	}
	q.mu.Unlock()

	for id, t := range totals.Workers {
		r.Instances = append(r.Instances, InstanceReport{ID: id, Jobs: t.Jobs, Busy: t.Time})
	}
	slices.SortFunc(r.Instances, func(a, b InstanceReport) int { return strings.Compare(a.ID, b.ID) })
	for u, t := range users {
		r.Participants = append(r.Participants, ParticipantReport{UserID: u, Jobs: t.Jobs, GPU: t.Time})
	}
	slices.SortFunc(r.Participants, func(a, b ParticipantReport) int { return strings.Compare(a.UserID, b.UserID) })
	if !r.First.IsZero() {
		r.Timeline = timeline(totals.Minutes, created, started, r.First, now)
	}
	return r, nil
}

// timeline walks the steps from first to now once, with running sums of
// the finished jobs' minutes and of the active jobs' times (each sorted).
// At a step's end e, a finished job created by e but not finished by e was
// running if it had started by e, else pending; an active job created by
// e is running if it started by e, else pending.
func timeline(minutes []store.MinuteTotals, created, started []time.Time, first, now time.Time) []TimelinePoint {
	slices.SortFunc(created, time.Time.Compare)
	slices.SortFunc(started, time.Time.Compare)
	start := first.Truncate(time.Minute)
	step := time.Minute
	for now.Sub(start)/step > maxTimeline {
		step *= 2
	}
	var out []TimelinePoint
	var mi, ci, si int
	var cr, st, fi, fs int // finished jobs created, started, finished, finished having started, before the edge
	for t := start; !t.After(now); t = t.Add(step) {
		edge := t.Add(step)
		edgeMin := edge.Unix() / 60
		completed := 0
		for ; mi < len(minutes) && minutes[mi].Minute < edgeMin; mi++ {
			m := minutes[mi]
			cr, st, fi, fs = cr+m.Created, st+m.Started, fi+m.Finished, fs+m.FinishedStarted
			if m.Minute >= t.Unix()/60 {
				completed += m.Completed
			}
		}
		for ; ci < len(created) && !created[ci].After(edge); ci++ {
		}
		for ; si < len(started) && !started[si].After(edge); si++ {
		}
		running := st - fs + si
		out = append(out, TimelinePoint{T: t.UTC(), Completed: completed, Running: running, Pending: cr - fi + ci - running})
	}
	return out
}
