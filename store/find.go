package store

import (
	"encoding/json"
	"fmt"
	"strconv"

	workshop "github.com/comfy-workshop/workshop"
)

// JobByNumber finds the job with submission number n without reading
// every job: ids are UUIDv7, so keys sort by creation time, and numbers are
// handed out in that same order (both under the queue's lock; a restart
// continues from the newest job). It bisects on the millisecond in the key,
// reading one job per step. A missing number (pruned, or never given) is
// ENOTFOUND.
func (tx *Tx) JobByNumber(n uint64) (*workshop.Job, error) {
	c := tx.tx.Bucket(bucketJobs).Cursor()
	notFound := workshop.Errorf(workshop.ENOTFOUND, "no job #%d", n)
	seqAt := func(k, v []byte) (uint64, bool) {
		if k == nil {
			return 0, false
		}
		var s struct {
			Seq uint64 `json:"number"`
		}
		return s.Seq, json.Unmarshal(v, &s) == nil
	}
	firstK, _ := c.First()
	lastK, _ := c.Last()
	lo, ok1 := keyMillis(firstK)
	hi, ok2 := keyMillis(lastK)
	if !ok1 || !ok2 {
		return nil, notFound
	}
	// The first millisecond whose first job has a number >= n.
	for lo < hi {
		mid := lo + (hi-lo)/2
		s, ok := seqAt(c.Seek(millisKey(mid)))
		if !ok || s >= n {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	// Job n is in that millisecond or at the end of the one before.
	start := lo
	if start > 0 {
		start--
	}
	for k, v := c.Seek(millisKey(start)); k != nil; k, v = c.Next() {
		s, ok := seqAt(k, v)
		if !ok || s > n {
			break
		}
		if s == n {
			return tx.fullJob(v)
		}
	}
	return nil, notFound
}

// keyMillis reads the creation millisecond of a UUIDv7 job key
// ("xxxxxxxx-xxxx-7...").
func keyMillis(k []byte) (uint64, bool) {
	if len(k) < 13 || k[8] != '-' {
		return 0, false
	}
	hi, err1 := strconv.ParseUint(string(k[:8]), 16, 64)
	lo, err2 := strconv.ParseUint(string(k[9:13]), 16, 64)
	return hi<<16 | lo, err1 == nil && err2 == nil
}

// millisKey is the smallest key of millisecond ms.
func millisKey(ms uint64) []byte {
	return fmt.Appendf(nil, "%08x-%04x", ms>>16, ms&0xffff)
}

// EachJobAfter walks jobs oldest first, without workflows, starting after
// the job with id after ("" from the first), until fn returns false.
func (tx *Tx) EachJobAfter(after string, fn func(*workshop.Job) bool) error {
	c := tx.tx.Bucket(bucketJobs).Cursor()
	k, v := c.First()
	if after != "" {
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		j, err := decodeJobSummary(v)
		if err != nil {
			return err
		}
		if !fn(j) {
			return nil
		}
	}
	return nil
}
