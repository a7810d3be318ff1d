package store

import (
	"bytes"
	"encoding/binary"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	workshop "github.com/comfy-workshop/workshop"
)

// The workshop's report (jobs done, wait and run times, busy instances,
// GPU time per participant, the timeline) is kept as running totals of
// finished jobs, updated in the transaction that finishes or deletes a
// job: a finished job never changes, so its share of every total is known
// once. Reading the report then costs the number of participants,
// instances and minutes, not the number of jobs. Jobs still active are
// the queue's to add.
var bucketReport = []byte("report")

// Key prefixes in the report bucket.
const (
	repUser    = 'u' // user -> jobs, GPU milliseconds, jobs completed
	repWorker  = 'w' // worker -> jobs completed, busy milliseconds
	repMinute  = 'm' // unix minute (uint32) -> minuteTotals
	repWaitHis = 'a' // histogram bucket (uint16) -> count: submission to start
	repRunHist = 'r' // histogram bucket (uint16) -> count: start to completion
)

// Totals of one participant or one instance.
type Totals struct {
	Jobs      int           // finished jobs (participant), completed jobs (instance)
	Time      time.Duration // GPU time of completed jobs (participant), busy time (instance)
	Completed int           // completed jobs (participant)
}

// MinuteTotals count finished jobs by the minute things happened to them,
// from which the timeline's pending, running and completed at any minute
// follow by prefix sums.
type MinuteTotals struct {
	Minute          int64 // unix time / 60
	Created         int   // finished jobs created in this minute
	Started         int   // ... that started in it
	Finished        int   // ... that finished in it
	FinishedStarted int   // ... that finished in it having started
	Completed       int   // ... that completed (succeeded) in it
}

// Report is the running totals of every finished job.
type Report struct {
	Users     map[string]Totals
	Workers   map[string]Totals
	Minutes   []MinuteTotals // oldest first
	Wait, Run Histogram
}

// Histogram counts durations in buckets 2% wide, so its quantiles are
// within 1% of the true ones whatever the number of jobs.
type Histogram struct {
	counts map[int]uint64
	n      uint64
}

const histBase = 1.02

// histBucket is the bucket of d: 0 below a millisecond, then logarithmic.
func histBucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 1 {
		return 0
	}
	return 1 + int(math.Log(ms)/math.Log(histBase))
}

// histValue is a bucket's middle.
func histValue(b int) time.Duration {
	if b == 0 {
		return 0
	}
	return time.Duration(math.Pow(histBase, float64(b-1)+0.5) * float64(time.Millisecond))
}

// Add counts one duration.
func (h *Histogram) Add(d time.Duration) { h.add(histBucket(d), 1) }

func (h *Histogram) add(b int, n uint64) {
	if h.counts == nil {
		h.counts = map[int]uint64{}
	}
	h.counts[b] += n
	h.n += n
}

// Len is how many durations it holds.
func (h *Histogram) Len() int { return int(h.n) }

// Quantile is the duration at rank q (0 to 1) of the sorted durations,
// as the rank int(q*(n-1)); false when empty.
func (h *Histogram) Quantile(q float64) (time.Duration, bool) {
	if h.n == 0 {
		return 0, false
	}
	rank := uint64(q * float64(h.n-1))
	var seen uint64
	for b := 0; ; b++ {
		seen += h.counts[b]
		if seen > rank {
			return histValue(b), true
		}
	}
}

// reportKey is a prefix byte, then the name or number.
func reportKey(prefix byte, name []byte) []byte {
	return append([]byte{prefix, 0}, name...)
}

func minuteKey(t time.Time) []byte {
	return reportKey(repMinute, binary.BigEndian.AppendUint32(nil, uint32(t.Unix()/60)))
}

func histKey(prefix byte, d time.Duration) []byte {
	return reportKey(prefix, binary.BigEndian.AppendUint16(nil, uint16(histBucket(d))))
}

// addUints adds delta[i] to the i-th big-endian uint64 of key's value
// (missing ones count as 0, later ones are kept), and deletes the key when
// all are 0.
func addUints(b *bolt.Bucket, key []byte, delta ...int64) error {
	old := b.Get(key)
	v := make([]byte, max(len(old)/8, len(delta))*8)
	copy(v, old)
	zero := true
	for i := 0; i < len(v)/8; i++ {
		n := int64(binary.BigEndian.Uint64(v[8*i:]))
		if i < len(delta) {
			n = max(n+delta[i], 0) // a total never goes below 0, whatever is deleted
		}
		binary.BigEndian.PutUint64(v[8*i:], uint64(n))
		zero = zero && n == 0
	}
	if zero {
		return b.Delete(key)
	}
	return b.Put(key, v)
}

// reportJob adds (sign 1) or removes (sign -1) a finished job's share of
// the totals.
func (tx *Tx) reportJob(j *workshop.Job, sign int64) error {
	b := tx.tx.Bucket(bucketReport)
	var run time.Duration
	ran := j.Status == workshop.StatusCompleted && j.StartedAt != nil && j.CompletedAt != nil
	if ran {
		run = max(j.CompletedAt.Sub(*j.StartedAt), 0)
	}
	var completed int64
	if j.Status == workshop.StatusCompleted {
		completed = sign
	}
	if err := addUints(b, reportKey(repUser, []byte(j.UserID)), sign, sign*run.Milliseconds(), completed); err != nil {
		return err
	}
	if ran {
		if err := addUints(b, reportKey(repWorker, []byte(j.Worker)), sign, sign*run.Milliseconds()); err != nil {
			return err
		}
		if err := addUints(b, histKey(repRunHist, run), sign); err != nil {
			return err
		}
	}
	// Minutes in order even if the clock stepped back: created, started,
	// finished; else the timeline's running sums would not cancel out.
	created, finished := j.CreatedAt, j.CreatedAt
	if j.CompletedAt != nil && j.CompletedAt.After(created) {
		finished = *j.CompletedAt
	}
	var doneStarted int64
	if j.StartedAt != nil {
		if err := addUints(b, histKey(repWaitHis, max(j.StartedAt.Sub(created), 0)), sign); err != nil {
			return err
		}
		started := min(max(j.StartedAt.UnixNano(), created.UnixNano()), finished.UnixNano())
		if err := addUints(b, minuteKey(time.Unix(0, started)), 0, sign); err != nil {
			return err
		}
		doneStarted = sign
	}
	if err := addUints(b, minuteKey(created), sign); err != nil {
		return err
	}
	return addUints(b, minuteKey(finished), 0, 0, sign, doneStarted, completed)
}

// Report reads the running totals of every finished job.
func (tx *Tx) Report() (*Report, error) {
	r := &Report{Users: map[string]Totals{}, Workers: map[string]Totals{}}
	err := tx.tx.Bucket(bucketReport).ForEach(func(k, v []byte) error {
		if len(k) < 2 {
			return nil
		}
		name := k[2:]
		switch k[0] {
		case repUser:
			r.Users[string(name)] = userTotals(v)
		case repWorker:
			r.Workers[string(name)] = Totals{Jobs: int(uintAt(v, 0)), Time: time.Duration(uintAt(v, 1)) * time.Millisecond}
		case repMinute:
			if len(name) == 4 {
				r.Minutes = append(r.Minutes, MinuteTotals{Minute: int64(binary.BigEndian.Uint32(name)),
					Created: int(uintAt(v, 0)), Started: int(uintAt(v, 1)), Finished: int(uintAt(v, 2)), FinishedStarted: int(uintAt(v, 3)), Completed: int(uintAt(v, 4))})
			}
		case repWaitHis, repRunHist:
			if len(name) == 2 {
				h := &r.Wait
				if k[0] == repRunHist {
					h = &r.Run
				}
				h.add(int(binary.BigEndian.Uint16(name)), uintAt(v, 0))
			}
		}
		return nil
	})
	return r, err
}

func userTotals(v []byte) Totals {
	return Totals{Jobs: int(uintAt(v, 0)), Time: time.Duration(uintAt(v, 1)) * time.Millisecond, Completed: int(uintAt(v, 2))}
}

// uintAt is the i-th big-endian uint64 of a totals value (addUints), 0
// past its end.
func uintAt(v []byte, i int) uint64 {
	if len(v) >= 8*(i+1) {
		return binary.BigEndian.Uint64(v[8*i:])
	}
	return 0
}

// UserTotals reads every participant's totals only (finished and completed
// jobs, GPU time), without the rest of the report.
func (tx *Tx) UserTotals() map[string]Totals {
	out := map[string]Totals{}
	prefix := reportKey(repUser, nil)
	c := tx.tx.Bucket(bucketReport).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		out[string(k[len(prefix):])] = userTotals(v)
	}
	return out
}

// FirstJob is the oldest stored job (any status), without its workflow;
// nil when there is none. Ids sort by time, so it is the first key.
func (tx *Tx) FirstJob() (*workshop.Job, error) {
	_, v := tx.tx.Bucket(bucketJobs).Cursor().First()
	if v == nil {
		return nil, nil
	}
	return decodeJobSummary(v)
}
