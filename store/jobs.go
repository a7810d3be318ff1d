package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	workshop "github.com/comfy-workshop/workshop"
)

// PutJob writes j, keeping the active and per-user indexes in step with its
// status.
func (tx *Tx) PutJob(j *workshop.Job) error {
	if j.ID == "" || j.UserID == "" {
		return fmt.Errorf("store: job without id or user")
	}
	buf, err := encodeJob(j)
	if err != nil {
		return fmt.Errorf("store: encode job %s: %w", j.ID, err)
	}
	id := []byte(j.ID)
	if err := tx.tx.Bucket(bucketJobs).Put(id, buf); err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketUserJobs).Put(userJobKey(j.UserID, j.ID), nil); err != nil {
		return err
	}
	active := tx.tx.Bucket(bucketActive)
	if j.Status.Finished() {
		return active.Delete(id)
	}
	return active.Put(id, nil)
}

// Job reads one job; a missing job is a workshop ENOTFOUND error.
func (tx *Tx) Job(id string) (*workshop.Job, error) {
	v := tx.tx.Bucket(bucketJobs).Get([]byte(id))
	if v == nil {
		return nil, workshop.Errorf(workshop.ENOTFOUND, "job %s not found", id)
	}
	return decodeJob(v)
}

// UpdateJob reads job id, lets fn change it, and writes it back.
func (tx *Tx) UpdateJob(id string, fn func(*workshop.Job) error) (*workshop.Job, error) {
	j, err := tx.Job(id)
	if err != nil {
		return nil, err
	}
	if err := fn(j); err != nil {
		return nil, err
	}
	return j, tx.PutJob(j)
}

// DeleteJob removes a job and its index entries.
func (tx *Tx) DeleteJob(id string) error {
	j, err := tx.Job(id)
	if err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketUserJobs).Delete(userJobKey(j.UserID, id)); err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketActive).Delete([]byte(id)); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketJobs).Delete([]byte(id))
}

// ActiveJobs returns every pending and running job, for rebuilding the
// in-memory queue at start.
func (tx *Tx) ActiveJobs() ([]*workshop.Job, error) {
	var out []*workshop.Job
	jobs := tx.tx.Bucket(bucketJobs)
	err := tx.tx.Bucket(bucketActive).ForEach(func(k, _ []byte) error {
		v := jobs.Get(k)
		if v == nil {
			return nil // index ahead of data cannot happen in one tx; be lenient
		}
		j, err := decodeJob(v)
		if err != nil {
			return err
		}
		out = append(out, j)
		return nil
	})
	return out, err
}

// MaxSeq returns the highest submission number ever stored, so numbering
// continues after a restart. Job ids are time-ordered, so the last key holds
// the newest job.
func (tx *Tx) MaxSeq() (uint64, error) {
	_, v := tx.tx.Bucket(bucketJobs).Cursor().Last()
	if v == nil {
		return 0, nil
	}
	j, err := decodeJob(v)
	if err != nil {
		return 0, err
	}
	return j.Seq, nil
}

// JobFilter selects jobs for ListJobs.
type JobFilter struct {
	UserID string
	Status workshop.JobStatus // empty: any
	Before string             // cursor: only jobs with ids before this one
	Limit  int
}

// ListJobs returns jobs newest first, without their workflows (lists stay
// small), and the cursor for the next page ("" at the end).
func (tx *Tx) ListJobs(f JobFilter) ([]*workshop.Job, string, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	jobs := tx.tx.Bucket(bucketJobs)
	var out []*workshop.Job
	// Each branch walks its keys newest first and calls add until it is full.
	add := func(v []byte) (bool, error) {
		j, err := decodeJobSummary(v)
		if err != nil {
			return false, err
		}
		if f.Status != "" && j.Status != f.Status {
			return true, nil
		}
		out = append(out, j)
		return len(out) <= f.Limit, nil
	}
	if f.UserID != "" {
		prefix := userJobKey(f.UserID, "")
		c := tx.tx.Bucket(bucketUserJobs).Cursor()
		var k []byte
		if f.Before != "" {
			k, _ = c.Seek(userJobKey(f.UserID, f.Before))
			k, _ = c.Prev()
		} else {
			// Seek past the user's last key, then step back.
			k, _ = c.Seek(append(append([]byte(nil), prefix[:len(prefix)-1]...), 1))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			v := jobs.Get(k[len(prefix):])
			if v == nil {
				continue
			}
			more, err := add(v)
			if err != nil || !more {
				break
			}
		}
	} else {
		c := jobs.Cursor()
		var k, v []byte
		if f.Before != "" {
			c.Seek([]byte(f.Before))
			k, v = c.Prev()
		} else {
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			more, err := add(v)
			if err != nil {
				return nil, "", err
			}
			if !more {
				break
			}
		}
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// The user id cannot contain NUL (ids are validated), so this key orders by
// user, then by time.
func userJobKey(user, id string) []byte {
	k := make([]byte, 0, len(user)+1+len(id))
	k = append(k, user...)
	k = append(k, 0)
	return append(k, id...)
}

// encodeJob writes the job as JSON with its workflow spliced in as is: the
// graph was checked when it was submitted, and re-encoding a large graph on
// every state change would be most of the cost of a write.
func encodeJob(j *workshop.Job) ([]byte, error) {
	saved := *j
	saved.Position, saved.ETASeconds = 0, nil // computed, never stored
	saved.Workflow = nil
	rest, err := json.Marshal(&saved)
	if err != nil || len(j.Workflow) == 0 {
		return rest, err
	}
	buf := make([]byte, 0, len(rest)+len(j.Workflow)+16)
	buf = append(buf, `{"workflow":`...)
	buf = append(buf, j.Workflow...)
	buf = append(buf, ',')
	return append(buf, rest[1:]...), nil
}

func decodeJob(v []byte) (*workshop.Job, error) {
	j := new(workshop.Job)
	if err := json.Unmarshal(v, j); err != nil {
		return nil, fmt.Errorf("store: decode job: %w", err)
	}
	return j, nil
}

// decodeJobSummary decodes a job without its workflow. The bytes belong to the
// transaction, so nothing may alias them after it ends: Unmarshal copies.
func decodeJobSummary(v []byte) (*workshop.Job, error) {
	// The outer Workflow field shadows the job's, so the graph is skipped
	// instead of copied.
	var s struct {
		*workshop.Job
		Workflow skipJSON `json:"workflow"`
	}
	s.Job = new(workshop.Job)
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("store: decode job: %w", err)
	}
	return s.Job, nil
}

type skipJSON struct{}

func (skipJSON) UnmarshalJSON([]byte) error { return nil }

// Setting reads a named JSON setting into v; it reports false when unset.
func (tx *Tx) Setting(name string, v any) (bool, error) {
	raw := tx.tx.Bucket(bucketSettings).Get([]byte(name))
	if raw == nil {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

// PutSetting stores v as JSON under name.
func (tx *Tx) PutSetting(name string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.tx.Bucket(bucketSettings).Put([]byte(name), raw)
}

// PutServed records when (on the scheduler's own clock) a participant was
// last served, so round-robin order survives a restart.
func (tx *Tx) PutServed(user string, clock uint64) error {
	return tx.tx.Bucket(bucketServed).Put([]byte(user), binary.BigEndian.AppendUint64(nil, clock))
}

// Served returns every participant's last-served clock.
func (tx *Tx) Served() (map[string]uint64, error) {
	out := map[string]uint64{}
	err := tx.tx.Bucket(bucketServed).ForEach(func(k, v []byte) error {
		if len(v) == 8 {
			out[string(k)] = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return out, err
}

// CountByStatus counts every stored job by status. It reads each record, so
// it is for start-up, not for hot paths.
func (tx *Tx) CountByStatus() (map[workshop.JobStatus]int, error) {
	out := map[workshop.JobStatus]int{}
	err := tx.tx.Bucket(bucketJobs).ForEach(func(_, v []byte) error {
		var s struct {
			Status   workshop.JobStatus `json:"status"`
			Workflow skipJSON           `json:"workflow"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		out[s.Status]++
		return nil
	})
	return out, err
}

// EachJob walks every job oldest first, without workflows, until fn
// returns false. It reads every record: for reports, not hot paths.
func (tx *Tx) EachJob(fn func(*workshop.Job) bool) error {
	return tx.EachJobAfter("", fn)
}
