package store

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sort"
	"time"

	workshop "github.com/comfy-workshop/workshop"
)

// A participant's index (user_jobs) holds, beside each of their finished
// job ids, what their listings filter and sort by: the status, when it
// started and ended, and its UI workflow's id. So a participant's page of
// jobs is chosen, counted and sorted from the index and their few active
// jobs (walkUser), and only the page's own records are read.

// UserJob is one entry of a participant's index.
type UserJob struct {
	ID         string
	Status     workshop.JobStatus
	Started    int64 // Unix milliseconds; 0: it never started
	Ended      int64 // Unix milliseconds; 0: not finished
	WorkflowID string
}

// Duration is how long the job ran, 0 if it did not run to an end.
func (e UserJob) Duration() int64 {
	if e.Started == 0 || e.Ended == 0 {
		return 0
	}
	return e.Ended - e.Started
}

// statusCodes are the statuses' one-byte codes in the index.
var statusCodes = []workshop.JobStatus{"", workshop.StatusPending, workshop.StatusRunning,
	workshop.StatusCompleted, workshop.StatusFailed, workshop.StatusCancelled}

const userEntryFixed = 1 + 8 + 8 // status, started, ended

// userEntry is j's value in the participant's index.
func userEntry(j *workshop.Job) []byte {
	b := make([]byte, 0, userEntryFixed+len(j.WorkflowID))
	code := 0
	for i, s := range statusCodes {
		if s == j.Status {
			code = i
		}
	}
	b = append(b, byte(code))
	b = binary.BigEndian.AppendUint64(b, uint64(unixMilli(j.StartedAt)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixMilli(j.CompletedAt)))
	return append(b, j.WorkflowID...)
}

func unixMilli(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
}

// decodeUserEntry reads an index value; false for one that is not (an
// empty value, as schema 2 wrote).
func decodeUserEntry(id, v []byte) (UserJob, bool) {
	if len(v) < userEntryFixed || int(v[0]) >= len(statusCodes) || v[0] == 0 {
		return UserJob{}, false
	}
	return UserJob{
		ID: string(id), Status: statusCodes[v[0]],
		Started:    int64(binary.BigEndian.Uint64(v[1:9])),
		Ended:      int64(binary.BigEndian.Uint64(v[9:17])),
		WorkflowID: string(v[userEntryFixed:]),
	}, true
}

// walkUser calls fn with the id and index value of each of user's jobs,
// newest first (oldest first with asc), from before the job id before
// ("" from the newest; desc only). The index holds their finished jobs
// (indexUserJob); active, the ids of their active jobs, which the caller
// (the queue) has in memory, are merged in by id, which orders by time,
// with values made from their records. A job in both finished after the
// caller looked, before this transaction: its record's value is this
// transaction's truth. Ids of jobs not stored, or not user's, are skipped.
func (tx *Tx) walkUser(user string, active []string, asc bool, before string, fn func(id, v []byte) (bool, error)) error {
	type extra struct{ id, v []byte }
	var extras []extra
	jobs := tx.tx.Bucket(bucketJobs)
	for _, id := range active {
		if before != "" && id >= before {
			continue
		}
		rec := jobs.Get([]byte(id))
		if rec == nil {
			continue
		}
		j, err := decodeJobSummary(rec)
		if err != nil {
			return err
		}
		if j.UserID == user {
			extras = append(extras, extra{[]byte(id), userEntry(j)})
		}
	}
	first := func(a, b extra) int { return bytes.Compare(a.id, b.id) }
	if !asc {
		first = func(a, b extra) int { return bytes.Compare(b.id, a.id) }
	}
	slices.SortFunc(extras, first)
	extras = slices.CompactFunc(extras, func(a, b extra) bool { return bytes.Equal(a.id, b.id) })
	stopped := false
	merged := func(id, v []byte) (bool, error) {
		for len(extras) > 0 && first(extras[0], extra{id: id}) <= 0 {
			e := extras[0]
			extras = extras[1:]
			if more, err := fn(e.id, e.v); err != nil || !more {
				stopped = true
				return false, err
			}
			if bytes.Equal(e.id, id) {
				return true, nil // the record's value went out for it
			}
		}
		more, err := fn(id, v)
		stopped = !more
		return more, err
	}
	prefix := userJobKey(user, "")
	var err error
	if asc {
		c := tx.tx.Bucket(bucketUserJobs).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && !stopped && err == nil; k, v = c.Next() {
			_, err = merged(k[len(prefix):], v)
		}
	} else {
		err = walkBack(tx.tx.Bucket(bucketUserJobs).Cursor(), prefix, before, merged)
	}
	for _, e := range extras {
		if err != nil || stopped {
			break
		}
		var more bool
		more, err = fn(e.id, e.v)
		stopped = !more
	}
	return err
}

// UserJobsQuery asks for one page of a participant's jobs.
type UserJobsQuery struct {
	UserID string
	// Active names the participant's active jobs, which their index does
	// not hold (see walkUser).
	Active []string
	// Match picks the jobs listed (nil: all); total counts them.
	Match func(UserJob) bool
	// ByDuration sorts by run time (jobs that did not run count 0), else
	// by submission; ties keep submission order in the same direction.
	ByDuration bool
	Asc        bool // oldest (shortest) first; else newest first
	Offset     int
	Limit      int // <= 0: to the end
}

// UserJobs returns the page of user's jobs that q asks for, without their
// graph parts, and how many jobs match in all. It walks the participant's
// index and the active jobs q names (walkUser), and reads the records of
// the page.
func (tx *Tx) UserJobs(q UserJobsQuery) ([]*workshop.Job, int, error) {
	jobs := tx.tx.Bucket(bucketJobs)
	var (
		matched []UserJob // when sorting by duration: every match
		page    []string
		total   int
	)
	visit := func(id, v []byte) (bool, error) {
		e, ok := decodeUserEntry(id, v)
		if !ok {
			// No entry yet: read it from the record.
			rec := jobs.Get(id)
			if rec == nil {
				return true, nil
			}
			j, err := decodeJobSummary(rec)
			if err != nil {
				return false, err
			}
			e, _ = decodeUserEntry(id, userEntry(j))
		}
		if q.Match != nil && !q.Match(e) {
			return true, nil
		}
		switch {
		case q.ByDuration:
			matched = append(matched, e)
		case total >= q.Offset && (q.Limit <= 0 || len(page) < q.Limit):
			page = append(page, e.ID)
		}
		total++
		return true, nil
	}
	if err := tx.walkUser(q.UserID, q.Active, q.Asc, "", visit); err != nil {
		return nil, 0, err
	}
	if q.ByDuration {
		sort.SliceStable(matched, func(a, b int) bool {
			if q.Asc {
				return matched[a].Duration() < matched[b].Duration()
			}
			return matched[a].Duration() > matched[b].Duration()
		})
		matched = matched[min(q.Offset, len(matched)):]
		if q.Limit > 0 && q.Limit < len(matched) {
			matched = matched[:q.Limit]
		}
		for _, e := range matched {
			page = append(page, e.ID)
		}
	}
	out := make([]*workshop.Job, 0, len(page))
	for _, id := range page {
		v := jobs.Get([]byte(id))
		if v == nil {
			continue
		}
		j, err := decodeJobSummary(v)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, j)
	}
	return out, total, nil
}
