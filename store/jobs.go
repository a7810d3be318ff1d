package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	workshop "github.com/comfy-workshop/workshop"
)

// PutJob writes j, with its graph parts (workflow and extra_data) as j
// has them, keeping the indexes, counters and report totals in step with
// its status.
func (tx *Tx) PutJob(j *workshop.Job) error {
	var prev *workshop.Job
	if old := tx.tx.Bucket(bucketJobs).Get([]byte(j.ID)); old != nil {
		var err error
		if prev, err = decodeJobSummary(old); err != nil {
			return err
		}
	}
	if err := tx.putGraphs(j); err != nil {
		return err
	}
	return tx.putJob(j, prev)
}

// putJob writes j's record over prev (nil for a new job); its graph parts
// are written apart (putGraphs). Only what changed is touched: every index
// Put dirties a page the commit must write.
func (tx *Tx) putJob(j, prev *workshop.Job) error {
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
	var was workshop.JobStatus
	if prev != nil {
		was = prev.Status
		if was.Finished() {
			// Rewriting a finished job (finished jobs never change in the
			// queue; a repair tool might): take its old share out.
			if err := tx.unfinish(prev); err != nil {
				return err
			}
		}
	}
	if err := tx.indexUserJob(j, prev); err != nil {
		return err
	}
	tx.countJob(was, j.Status)
	active := tx.tx.Bucket(bucketActive)
	if !j.Status.Finished() {
		if prev == nil || was.Finished() {
			return active.Put(id, nil)
		}
		return nil
	}
	if prev != nil && !was.Finished() {
		if err := active.Delete(id); err != nil {
			return err
		}
	}
	if err := tx.tx.Bucket(bucketFinished).Put(finishedKey(j.Status, j.ID), nil); err != nil {
		return err
	}
	return tx.reportJob(j, 1)
}

// unfinish takes a finished job out of the finished index and the report;
// the participant's index is putJob's (indexUserJob).
func (tx *Tx) unfinish(j *workshop.Job) error {
	if err := tx.tx.Bucket(bucketFinished).Delete(finishedKey(j.Status, j.ID)); err != nil {
		return err
	}
	return tx.reportJob(j, -1)
}

// indexUserJob keeps j's entry in its participant's index, which holds
// finished jobs only: the queue knows the active ones, and names them to
// a listing (see walkUser). Submissions and dispatches of many
// participants would otherwise dirty a leaf of the index each, scattered
// over the file, in every commit: measured, a fifth of a submission's
// cost.
func (tx *Tx) indexUserJob(j, prev *workshop.Job) error {
	index := tx.tx.Bucket(bucketUserJobs)
	if prev != nil && prev.Status.Finished() && (prev.UserID != j.UserID || !j.Status.Finished()) {
		if err := index.Delete(userJobKey(prev.UserID, j.ID)); err != nil {
			return err
		}
	}
	if !j.Status.Finished() {
		return nil
	}
	entry := userEntry(j)
	if prev != nil && prev.Status.Finished() && prev.UserID == j.UserID && bytes.Equal(entry, userEntry(prev)) {
		return nil
	}
	return index.Put(userJobKey(j.UserID, j.ID), entry)
}

// finishedKey orders the finished index by status, then by time.
func finishedKey(s workshop.JobStatus, id string) []byte {
	k := make([]byte, 0, len(s)+1+len(id))
	k = append(k, s...)
	k = append(k, 0)
	return append(k, id...)
}

// Job reads one job with its graph parts; a missing job is a workshop
// ENOTFOUND error.
func (tx *Tx) Job(id string) (*workshop.Job, error) {
	v := tx.tx.Bucket(bucketJobs).Get([]byte(id))
	if v == nil {
		return nil, workshop.Errorf(workshop.ENOTFOUND, "job %s not found", id)
	}
	return tx.fullJob(v)
}

// fullJob decodes a job record and adds its graph parts.
func (tx *Tx) fullJob(v []byte) (*workshop.Job, error) {
	j, err := decodeJobSummary(v)
	if err != nil {
		return nil, err
	}
	j.Workflow, j.ExtraData = splitGraphs(tx.tx.Bucket(bucketGraphs).Get([]byte(j.ID)))
	return j, nil
}

// UpdateJob reads job id, lets fn change it, and writes it back. The graph
// parts are rewritten only if fn replaced them: they never change in the
// queue, and a graph is most of a job's bytes.
func (tx *Tx) UpdateJob(id string, fn func(*workshop.Job) error) (*workshop.Job, error) {
	j, err := tx.Job(id)
	if err != nil {
		return nil, err
	}
	prev := *j // fn assigns fields, never writes through them
	if err := fn(j); err != nil {
		return nil, err
	}
	if !sameBytes(prev.Workflow, j.Workflow) || !sameBytes(prev.ExtraData, j.ExtraData) {
		if err := tx.putGraphs(j); err != nil {
			return nil, err
		}
	}
	return j, tx.putJob(j, &prev)
}

// sameBytes reports whether a and b are the same slice (not just equal
// bytes): whether fn left a field as it was.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// DeleteJob removes a job, its graph parts and its index entries.
func (tx *Tx) DeleteJob(id string) error {
	v := tx.tx.Bucket(bucketJobs).Get([]byte(id))
	if v == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "job %s not found", id)
	}
	j, err := decodeJobSummary(v)
	if err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketUserJobs).Delete(userJobKey(j.UserID, id)); err != nil {
		return err
	}
	if j.Status.Finished() {
		if err := tx.unfinish(j); err != nil {
			return err
		}
	} else if err := tx.tx.Bucket(bucketActive).Delete([]byte(id)); err != nil {
		return err
	}
	tx.countJob(j.Status, "")
	if err := tx.tx.Bucket(bucketGraphs).Delete([]byte(id)); err != nil {
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
		j, err := tx.fullJob(v)
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
	j, err := decodeJobSummary(v)
	if err != nil {
		return 0, err
	}
	return j.Seq, nil
}

// JobFilter selects jobs for ListJobs.
type JobFilter struct {
	UserID string
	// Active names the participant's active jobs, which their index does
	// not hold (see walkUser); with UserID only.
	Active []string
	Status workshop.JobStatus // empty: any
	Before string             // cursor: only jobs with ids before this one
	Limit  int
}

// ListJobs returns jobs newest first, without their workflows (lists stay
// small), and the cursor for the next page ("" at the end). It reads
// through the narrowest index: the participant's jobs, the finished jobs
// of one status, or the active ones, so a page costs its own size, not
// the store's.
func (tx *Tx) ListJobs(f JobFilter) ([]*workshop.Job, string, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	jobs := tx.tx.Bucket(bucketJobs)
	var out []*workshop.Job
	add := func(id, _ []byte) (bool, error) {
		v := jobs.Get(id)
		if v == nil {
			return true, nil
		}
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
	var err error
	switch {
	case f.UserID != "":
		err = tx.walkUser(f.UserID, f.Active, false, f.Before, add)
	case f.Status.Finished():
		err = walkBack(tx.tx.Bucket(bucketFinished).Cursor(), finishedKey(f.Status, ""), f.Before, add)
	case f.Status != "":
		err = walkBack(tx.tx.Bucket(bucketActive).Cursor(), nil, f.Before, add)
	default:
		err = walkBack(jobs.Cursor(), nil, f.Before, add)
	}
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// walkBack calls fn with the job id and value of each key under prefix,
// newest first, starting before the job id before ("" from the newest),
// until fn returns false.
func walkBack(c *bolt.Cursor, prefix []byte, before string, fn func(id, v []byte) (bool, error)) error {
	var from []byte
	if before != "" {
		from = append(append([]byte(nil), prefix...), before...)
	} else if len(prefix) > 0 {
		// Just past the prefix: the same bytes with the last one raised.
		from = append([]byte(nil), prefix...)
		from[len(from)-1]++
	}
	var k, v []byte
	switch {
	case from == nil:
		k, v = c.Last()
	default:
		if k, _ = c.Seek(from); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		more, err := fn(k[len(prefix):], v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// The user id cannot contain NUL (ids are validated), so this key orders by
// user, then by time.
func userJobKey(user, id string) []byte {
	k := make([]byte, 0, len(user)+1+len(id))
	k = append(k, user...)
	k = append(k, 0)
	return append(k, id...)
}

// encodeJob writes the job's record: JSON without its graph parts, which
// are kept apart (putGraphs), so the record of a Flux or LTX job is a
// kilobyte or two, not hundreds, to write on each change and to read in
// each listing.
func encodeJob(j *workshop.Job) ([]byte, error) {
	saved := *j
	saved.Position, saved.ETASeconds = 0, nil // computed, never stored
	saved.Workflow, saved.ExtraData = nil, nil
	return saved.AppendJSON(make([]byte, 0, 512))
}

// decodeJobSummary decodes a job's record: everything but its graph parts.
// The bytes belong to the transaction, so nothing may alias them after it
// ends: DecodeJob copies.
func decodeJobSummary(v []byte) (*workshop.Job, error) {
	j, err := workshop.DecodeJob(v)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return j, nil
}

// putGraphs stores j's graph parts as they are (the graph was checked when
// it was submitted; re-encoding it would be most of a write's cost):
// uvarint length of the workflow, the workflow, then extra_data.
func (tx *Tx) putGraphs(j *workshop.Job) error {
	b := tx.tx.Bucket(bucketGraphs)
	if len(j.Workflow) == 0 && len(j.ExtraData) == 0 {
		return b.Delete([]byte(j.ID))
	}
	buf := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(j.Workflow)+len(j.ExtraData)), uint64(len(j.Workflow)))
	buf = append(append(buf, j.Workflow...), j.ExtraData...)
	return b.Put([]byte(j.ID), buf)
}

// splitGraphs copies a job's workflow and extra_data out of the stored
// value (nil, nil for none).
func splitGraphs(v []byte) (workflow, extra json.RawMessage) {
	n, k := binary.Uvarint(v)
	if k <= 0 || uint64(len(v)-k) < n {
		return nil, nil
	}
	v = v[k:]
	if n > 0 {
		workflow = bytes.Clone(v[:n])
	}
	if len(v) > int(n) {
		extra = bytes.Clone(v[n:])
	}
	return workflow, extra
}

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
