package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	bolt "go.etcd.io/bbolt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func job(i int) *workshop.Job {
	return &workshop.Job{
		ID: fmt.Sprintf("01a00000-0000-7000-8000-%012d", i), Seq: uint64(i), UserID: fmt.Sprintf("u%d", i%3),
		Workflow: json.RawMessage(`{"1": {"class_type": "EmptyImage", "inputs": {}}}`),
		Status:   workshop.StatusPending, CreatedAt: time.Unix(int64(i), 0).UTC(),
	}
}

// A failing write in a batch fails alone; the others in its batch commit.
func TestFailingWriteFailsAlone(t *testing.T) {
	db := open(t, t.TempDir())
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = db.Write(ctx, func(tx *store.Tx) error {
				if err := tx.PutJob(job(i)); err != nil {
					return err
				}
				if i == 7 {
					return workshop.Errorf(workshop.ECONFLICT, "no")
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 7) != (err != nil) {
			t.Errorf("write %d: %v", i, err)
		}
	}
	db.View(func(tx *store.Tx) error {
		for i := range errs {
			_, err := tx.Job(job(i).ID)
			if (i == 7) != (err != nil) {
				t.Errorf("job %d stored: %v", i, err)
			}
		}
		return nil
	})
}

func TestIndexesFollowStatus(t *testing.T) {
	db := open(t, t.TempDir())
	ctx := context.Background()
	for i := 1; i <= 4; i++ {
		if err := db.Write(ctx, func(tx *store.Tx) error { return tx.PutJob(job(i)) }); err != nil {
			t.Fatal(err)
		}
	}
	db.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.UpdateJob(job(2).ID, func(j *workshop.Job) error { j.Status = workshop.StatusCompleted; return nil })
		return err
	})
	db.View(func(tx *store.Tx) error {
		active, _ := tx.ActiveJobs()
		if len(active) != 3 {
			t.Errorf("active %d", len(active))
		}
		seq, _ := tx.MaxSeq()
		if seq != 4 {
			t.Errorf("max seq %d", seq)
		}
		mine, _, _ := tx.ListJobs(store.JobFilter{UserID: "u1"})
		if len(mine) != 2 || mine[0].Seq != 4 || mine[1].Seq != 1 || mine[0].Workflow != nil {
			t.Errorf("user list %+v", mine)
		}
		full, _ := tx.Job(job(4).ID)
		if string(full.Workflow) != string(job(4).Workflow) {
			t.Errorf("workflow stored as %s", full.Workflow)
		}
		counts := tx.JobCounts()
		if counts[workshop.StatusPending] != 3 || counts[workshop.StatusCompleted] != 1 {
			t.Errorf("counts %v", counts)
		}
		return nil
	})
}

func TestSecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	// A second open while the first holds the lock says so instead of hanging.
	_, err := store.Open(dir, quiet)
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("second open of a locked store: %v", err)
	}
	db.Close()
}

// A store written by a newer build is refused, not misread.
func TestSchemaFromTheFuture(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	b, err := bolt.Open(filepath.Join(dir, "workshop.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("99")) })
	b.Close()
	if _, err := store.Open(dir, quiet); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("open of a future schema: %v", err)
	}
}

// BenchmarkCommitSerial is one job per transaction, one after another: the
// rate a store without group commit would have on this disk.
func BenchmarkCommitSerial(b *testing.B) {
	db := open(b, b.TempDir())
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := db.Write(ctx, func(tx *store.Tx) error { return tx.PutJob(job(i)) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkCommitGrouped is the same writes from 256 goroutines at once.
func BenchmarkCommitGrouped(b *testing.B) {
	db := open(b, b.TempDir())
	ctx := context.Background()
	b.SetParallelism(128)
	var n int64
	var mu sync.Mutex
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			i := int(n)
			mu.Unlock()
			if err := db.Write(ctx, func(tx *store.Tx) error { return tx.PutJob(job(i)) }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
