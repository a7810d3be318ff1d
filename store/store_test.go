package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	bolt "go.etcd.io/bbolt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
		mine, _, _ := tx.ListJobs(store.JobFilter{UserID: "u1", Active: []string{job(1).ID, job(4).ID}})
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

// BenchmarkSerialFsync is the machine's rate of small write+fsync pairs: the
// ceiling a store without group commit would have.
func BenchmarkSerialFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
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

// BenchmarkCommitWhileSaving times small commits, one after another, while
// a large output (1 GiB) is saved into the file store on the same disk,
// with the saved file's writeback paced (as shipped) and left to the
// kernel: the commits' fsyncs queue behind a large flush in the second
// case. b.N is ignored: one save per sub-benchmark.
//
//	go test ./store -run '^$' -bench CommitWhileSaving -benchtime 1x
func BenchmarkCommitWhileSaving(b *testing.B) {
	const saveBytes = 1 << 30
	for _, paced := range []bool{true, false} {
		b.Run(fmt.Sprintf("paced=%t", paced), func(b *testing.B) {
			defer store.SetPaceWrites(paced)()
			dir := b.TempDir()
			db := open(b, dir)
			files, err := store.NewFiles(dir)
			if err != nil {
				b.Fatal(err)
			}
			saved := make(chan error, 1)
			began := time.Now()
			go func() {
				_, err := files.Save(store.Outputs, "user001", "job", "big.mp4", io.LimitReader(zeros{}, saveBytes), 0)
				saved <- err
			}()
			var lat []time.Duration
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case err := <-saved:
					if err != nil {
						b.Fatal(err)
					}
					took := time.Since(began)
					slices.Sort(lat)
					q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
					b.ReportMetric(q(0.5), "commit-p50-ms")
					b.ReportMetric(q(0.99), "commit-p99-ms")
					b.ReportMetric(q(1), "commit-max-ms")
					b.ReportMetric(float64(saveBytes>>20)/took.Seconds(), "save-MiB/s")
					return
				default:
				}
				t0 := time.Now()
				if err := db.Write(ctx, func(tx *store.Tx) error { return tx.PutJob(job(i + 1)) }); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A lazy write joins the next commit, ahead of the writes in it; alone,
// it is committed after a short delay; and Close commits what is pending.
func TestLazyWrites(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	has := func(db *store.DB, i int) bool {
		return db.View(func(tx *store.Tx) error { _, err := tx.Job(job(i).ID); return err }) == nil
	}
	db.Lazy(func(tx *store.Tx) error { return tx.PutJob(job(1)) })
	if err := db.Write(context.Background(), func(tx *store.Tx) error {
		if _, err := tx.Job(job(1).ID); err != nil {
			return fmt.Errorf("the lazy write did not go first: %w", err)
		}
		return tx.PutJob(job(2))
	}); err != nil {
		t.Fatal(err)
	}
	if !has(db, 1) || !has(db, 2) {
		t.Fatal("the lazy write did not join the commit")
	}
	db.Lazy(func(tx *store.Tx) error { return tx.PutJob(job(3)) })
	for deadline := time.Now().Add(10 * time.Second); !has(db, 3); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a lazy write alone was never committed")
		}
	}
	// After a lazy write committed alone, a lazy and a plain write again.
	db.Lazy(func(tx *store.Tx) error { return tx.PutJob(job(5)) })
	wrote := make(chan error, 1)
	go func() { wrote <- db.Write(context.Background(), func(tx *store.Tx) error { return tx.PutJob(job(6)) }) }()
	select {
	case err := <-wrote:
		if err != nil || !has(db, 5) || !has(db, 6) {
			t.Fatalf("lazy then plain write after a lazy commit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer hung on a lazy write and a plain one")
	}
	db.Lazy(func(tx *store.Tx) error { return tx.PutJob(job(4)) })
	db.Close()
	db = open(t, dir)
	if !has(db, 4) {
		t.Error("Close dropped a pending lazy write")
	}
	// Flush commits the lazy writes queued, and makes no commit without.
	var commits atomic.Int64
	db.OnCommit(func(store.CommitStats) { commits.Add(1) })
	if err := db.Flush(context.Background()); err != nil || commits.Load() != 0 {
		t.Errorf("a flush with nothing queued: %v, %d commits", err, commits.Load())
	}
	db.Lazy(func(tx *store.Tx) error { return tx.PutJob(job(7)) })
	if err := db.Flush(context.Background()); err != nil || !has(db, 7) || commits.Load() != 1 {
		t.Errorf("a flush of a lazy write: %v, stored %v, %d commits", err, has(db, 7), commits.Load())
	}
	if err := db.Flush(context.Background()); err != nil || commits.Load() != 1 {
		t.Errorf("a flush after the lazy write committed: %v, %d commits", err, commits.Load())
	}
}
