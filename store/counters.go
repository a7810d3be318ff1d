package store

import (
	"encoding/binary"

	workshop "github.com/comfy-workshop/workshop"
)

// Counters kept in meta, so that nothing has to count a bucket: how many
// jobs are in each status, and how many activity entries there are.
// bbolt can only count by walking every page (Bucket.Stats), which at a
// day's size is most of a commit.
var (
	keyActivityCount = []byte("count/activity")
	statuses         = [...]workshop.JobStatus{workshop.StatusPending, workshop.StatusRunning, workshop.StatusCompleted, workshop.StatusFailed, workshop.StatusCancelled}
)

func countKey(s workshop.JobStatus) []byte { return []byte("count/jobs/" + string(s)) }

// counters are a write transaction's view of the meta counters: read on
// first use, changed in memory by every write in the batch, and written
// back once when the batch commits (flush).
type counters struct {
	loaded   bool
	dirty    bool
	jobs     [len(statuses)]uint64
	activity uint64
}

func statusIndex(s workshop.JobStatus) int {
	for i, st := range statuses {
		if st == s {
			return i
		}
	}
	return -1
}

func (tx *Tx) counters() *counters {
	c := &tx.count
	if c.loaded {
		return c
	}
	meta := tx.tx.Bucket(bucketMeta)
	for i, s := range statuses {
		c.jobs[i] = getUint(meta, countKey(s))
	}
	c.activity = getUint(meta, keyActivityCount)
	c.loaded = true
	return c
}

// countJob moves one job from status from to status to; "" is none.
func (tx *Tx) countJob(from, to workshop.JobStatus) {
	if from == to {
		return
	}
	c := tx.counters()
	if i := statusIndex(from); i >= 0 && c.jobs[i] > 0 {
		c.jobs[i]--
	}
	if i := statusIndex(to); i >= 0 {
		c.jobs[i]++
	}
	c.dirty = true
}

// flush writes the counters back; the writer calls it once per batch.
func (tx *Tx) flush() error {
	c := &tx.count
	if !c.dirty {
		return nil
	}
	meta := tx.tx.Bucket(bucketMeta)
	for i, s := range statuses {
		if err := meta.Put(countKey(s), binary.BigEndian.AppendUint64(nil, c.jobs[i])); err != nil {
			return err
		}
	}
	if err := meta.Put(keyActivityCount, binary.BigEndian.AppendUint64(nil, c.activity)); err != nil {
		return err
	}
	c.dirty = false
	return nil
}

// JobCounts returns how many stored jobs are in each status, from the
// counters: no job is read.
func (tx *Tx) JobCounts() map[workshop.JobStatus]int {
	c := tx.counters()
	out := make(map[workshop.JobStatus]int, len(statuses))
	for i, s := range statuses {
		out[s] = int(c.jobs[i])
	}
	return out
}

// ActivityCount is the number of activity entries kept.
func (tx *Tx) ActivityCount() int { return int(tx.counters().activity) }

type getter interface{ Get([]byte) []byte }

func getUint(b getter, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
