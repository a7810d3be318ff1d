package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// finish makes job i finished with status st, started a second and ended
// three seconds after it was created, on worker w.
func finish(i int, st workshop.JobStatus, w string) *workshop.Job {
	j := job(i)
	started, ended := j.CreatedAt.Add(time.Second), j.CreatedAt.Add(3*time.Second)
	j.Status, j.StartedAt, j.CompletedAt, j.Worker = st, &started, &ended, w
	return j
}

func write(t *testing.T, db *store.DB, fn func(*store.Tx) error) {
	t.Helper()
	if err := db.Write(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// Counters, the finished index and the report follow every change of
// status, including deletes, and survive a reopen.
func TestCountersFollowJobs(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	write(t, db, func(tx *store.Tx) error {
		for i := 1; i <= 6; i++ {
			if err := tx.PutJob(job(i)); err != nil {
				return err
			}
		}
		return nil
	})
	write(t, db, func(tx *store.Tx) error {
		for i, st := range map[int]workshop.JobStatus{1: workshop.StatusCompleted, 2: workshop.StatusCompleted, 3: workshop.StatusFailed, 4: workshop.StatusRunning} {
			if _, err := tx.UpdateJob(job(i).ID, func(j *workshop.Job) error { *j = *finish(i, st, "gpu/0"); return nil }); err != nil {
				return err
			}
		}
		return tx.DeleteJob(job(2).ID)
	})
	check := func(db *store.DB) {
		t.Helper()
		db.View(func(tx *store.Tx) error {
			want := map[workshop.JobStatus]int{workshop.StatusPending: 2, workshop.StatusRunning: 1, workshop.StatusCompleted: 1, workshop.StatusFailed: 1, workshop.StatusCancelled: 0}
			if got := tx.JobCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("counts %v, want %v", got, want)
			}
			for st, want := range map[workshop.JobStatus][]uint64{workshop.StatusCompleted: {1}, workshop.StatusFailed: {3}, workshop.StatusRunning: {4}, workshop.StatusPending: {6, 5}} {
				got, _, err := tx.ListJobs(store.JobFilter{Status: st})
				var seqs []uint64
				for _, j := range got {
					seqs = append(seqs, j.Seq)
				}
				if err != nil || fmt.Sprint(seqs) != fmt.Sprint(want) {
					t.Errorf("%s jobs %v (%v), want %v", st, seqs, err, want)
				}
			}
			r, _ := tx.Report()
			// Job 1 completed on gpu/0 after 2 s of running; job 3 failed
			// (its participant counts it, the instance does not).
			if w := r.Workers["gpu/0"]; w.Jobs != 1 || w.Time != 2*time.Second || len(r.Workers) != 1 {
				t.Errorf("workers %v", r.Workers)
			}
			if u1, u0 := r.Users["u1"], r.Users["u0"]; u1.Jobs != 1 || u1.Completed != 1 || u1.Time != 2*time.Second ||
				u0.Jobs != 1 || u0.Completed != 0 || u0.Time != 0 || len(r.Users) != 2 {
				t.Errorf("users %v", r.Users)
			}
			if ut := tx.UserTotals(); fmt.Sprint(ut) != fmt.Sprint(r.Users) {
				t.Errorf("user totals %v, report's %v", ut, r.Users)
			}
			if r.Wait.Len() != 2 || r.Run.Len() != 1 {
				t.Errorf("histograms: %d waits, %d runs", r.Wait.Len(), r.Run.Len())
			}
			if d, _ := r.Run.Quantile(0.5); d < 1980*time.Millisecond || d > 2020*time.Millisecond {
				t.Errorf("run p50 %s, want 2s", d)
			}
			return nil
		})
	}
	check(db)
	db.Close()
	check(open(t, dir))
}

// The activity log keeps its newest entries, trims the oldest in batches,
// and its count comes from the counter.
func TestActivityTrimmedInBatches(t *testing.T) {
	db := open(t, t.TempDir())
	const keep = 100 // batches of keep/50 = 2
	for i := range 160 {
		write(t, db, func(tx *store.Tx) error {
			return tx.PutActivity(fmt.Sprintf("%08d", i), fmt.Appendf(nil, `{"n":%d}`, i), keep)
		})
		db.View(func(tx *store.Tx) error {
			n := 0
			tx.Activity(func([]byte) bool { n++; return true })
			if c := tx.ActivityCount(); c != n || n < min(i+1, keep) || n >= keep+2 {
				t.Fatalf("after %d entries: %d kept, counter %d", i+1, n, c)
			}
			return nil
		})
	}
	db.View(func(tx *store.Tx) error {
		var newest []byte
		tx.Activity(func(e []byte) bool { newest = e; return false })
		if string(newest) != `{"n":159}` {
			t.Errorf("newest entry %s", newest)
		}
		return nil
	})
}

// A store written by schema 1 (no counters, no finished index, no report)
// is migrated when it is opened: everything schema 2 keeps is built from
// its jobs and activity log.
func TestMigrateFromSchema1(t *testing.T) {
	dir := t.TempDir()
	b, err := bolt.Open(filepath.Join(dir, "workshop.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	const jobs = 24999 // more than one migration chunk, a multiple of 3
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", "jobs", "active", "user_jobs", "settings", "served", "seats", "codes", "sessions", "announcements", "activity"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("1"))
		for i := 1; i <= jobs; i++ {
			j := job(i)
			if i%3 != 0 {
				j = finish(i, workshop.StatusCompleted, fmt.Sprintf("gpu/%d", i%2))
			}
			v, _ := json.Marshal(j)
			tx.Bucket([]byte("jobs")).Put([]byte(j.ID), v)
			tx.Bucket([]byte("user_jobs")).Put([]byte(j.UserID+"\x00"+j.ID), nil)
			if !j.Status.Finished() {
				tx.Bucket([]byte("active")).Put([]byte(j.ID), nil)
			}
		}
		for i := range 160 {
			tx.Bucket([]byte("activity")).Put(binary.BigEndian.AppendUint32(nil, uint32(i)), []byte(`{}`))
		}
		return nil
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	db := open(t, dir)
	t.Logf("%d jobs migrated in %s", jobs, time.Since(began))
	db.View(func(tx *store.Tx) error {
		counts := tx.JobCounts()
		if counts[workshop.StatusPending] != jobs/3 || counts[workshop.StatusCompleted] != jobs-jobs/3 {
			t.Errorf("counts after migration %v", counts)
		}
		if n := tx.ActivityCount(); n != 160 {
			t.Errorf("activity count %d", n)
		}
		done, next, _ := tx.ListJobs(store.JobFilter{Status: workshop.StatusCompleted, Limit: 2})
		if len(done) != 2 || done[0].Seq != jobs-1 || done[1].Seq != jobs-2 || next == "" {
			t.Errorf("newest completed jobs %+v", done)
		}
		r, _ := tx.Report()
		if w := r.Workers["gpu/1"]; w.Jobs != jobs/3 || r.Run.Len() != jobs-jobs/3 {
			t.Errorf("report after migration: gpu/1 %+v, %d runs", w, r.Run.Len())
		}
		// Schema 3: the graph moved out of the record, intact; the
		// participant's index knows each job's status.
		var want bytes.Buffer
		json.Compact(&want, job(7).Workflow) // as schema 1's writer wrote it
		if j, err := tx.Job(job(7).ID); err != nil || string(j.Workflow) != want.String() {
			t.Errorf("job 7 after migration: %v %s", err, j.Workflow)
		}
		// Schema 4: the index holds u0's finished jobs only (every third
		// job is pending, and u0's are all of them).
		page, total, _ := tx.UserJobs(store.UserJobsQuery{UserID: "u1", Limit: 1})
		if total != jobs/3 || len(page) != 1 || page[0].Seq != jobs-2 || page[0].Status != workshop.StatusCompleted || page[0].Workflow != nil {
			t.Errorf("u1's jobs after migration: %d, %+v", total, page)
		}
		if _, total, _ := tx.UserJobs(store.UserJobsQuery{UserID: "u0"}); total != 0 {
			t.Errorf("u0's pending jobs are in the index after migration: %d", total)
		}
		return nil
	})
	db.Close()
	if v, err := store.Check(filepath.Join(dir, "workshop.db")); err != nil || v != store.SchemaVersion {
		t.Errorf("schema after migration %d, %v", v, err)
	}
}

// A store of schema 3, whose participants' index held active jobs too,
// loses those entries when it is opened; the finished jobs keep theirs.
func TestMigrateFromSchema3(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	write(t, db, func(tx *store.Tx) error {
		for i := 1; i <= 6; i++ {
			j := job(i)
			if i%2 == 0 {
				j = finish(i, workshop.StatusCompleted, "gpu/1")
			}
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	b, err := bolt.Open(filepath.Join(dir, "workshop.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		// What schema 3 wrote for a pending job: status code 1, no times.
		for i := 1; i <= 6; i += 2 {
			j, entry := job(i), make([]byte, 17)
			entry[0] = 1
			if err := tx.Bucket([]byte("user_jobs")).Put([]byte(j.UserID+"\x00"+j.ID), entry); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("3"))
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	db = open(t, dir)
	db.View(func(tx *store.Tx) error {
		for u, want := range map[string]int{"u0": 1, "u1": 1, "u2": 1} { // 6, 4 and 2: the finished jobs
			if _, total, _ := tx.UserJobs(store.UserJobsQuery{UserID: u}); total != want {
				t.Errorf("%s has %d jobs in the index after migration, want %d", u, total, want)
			}
		}
		return nil
	})
	db.Close()
	if v, err := store.Check(filepath.Join(dir, "workshop.db")); err != nil || v != store.SchemaVersion {
		t.Errorf("schema after migration %d, %v", v, err)
	}
}

// A store whose file is mostly free pages (after deleting most jobs) is
// compacted when it is opened: a smaller file, every kept job intact.
func TestSparseStoreCompactedAtOpen(t *testing.T) {
	defer store.SetCompactMinFree(1 << 20)()
	dir := t.TempDir()
	db := open(t, dir)
	write(t, db, func(tx *store.Tx) error {
		for i := 1; i <= 5000; i++ {
			j := finish(i, workshop.StatusCompleted, "gpu/0")
			j.Metadata = json.RawMessage(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 600)))
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	write(t, db, func(tx *store.Tx) error {
		for i := 1; i <= 4900; i++ {
			if err := tx.DeleteJob(job(i).ID); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	path := filepath.Join(dir, "workshop.db")
	before := size(t, path)
	db = open(t, dir)
	if after := size(t, path); after > before/2 {
		t.Errorf("file %d bytes after compaction, %d before", after, before)
	}
	db.View(func(tx *store.Tx) error {
		if c := tx.JobCounts()[workshop.StatusCompleted]; c != 100 {
			t.Errorf("%d completed jobs after compaction", c)
		}
		if j, err := tx.Job(job(5000).ID); err != nil || j.Status != workshop.StatusCompleted {
			t.Errorf("job 5000 after compaction: %+v %v", j, err)
		}
		return nil
	})
	write(t, db, func(tx *store.Tx) error { return tx.PutJob(job(6000)) })
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
