package activity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// BenchmarkJobHistory is the instructor opening one job on the admin
// page: its five entries among a full log (50,000 entries of 10,000 jobs,
// one every 100 ms), found by the job's id the way the job desk asked
// before (a text search, every entry decoded) and the way it asks now
// (OfJob, from the job's creation): for any job, and for one of the
// newest hundred.
//
//	go test ./activity -run '^$' -bench JobHistory
func BenchmarkJobHistory(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(b.TempDir(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const each = 5
	jobs := make([]string, activity.Keep/each)
	created := make([]time.Time, len(jobs))
	for i := range jobs {
		jobs[i] = uuid.NewString()
	}
	began := time.Now().Add(-activity.Keep * 100 * time.Millisecond)
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		for i := range activity.Keep {
			at := began.Add(time.Duration(i) * 100 * time.Millisecond)
			if i%each == 0 {
				created[i/each] = at
			}
			e := activity.Entry{ID: idAt(at), Time: at, Actor: "system", Kind: "job",
				Action: "completed", Detail: "1 output(s) on gpu-3/1", JobID: jobs[i/each], UserID: fmt.Sprintf("user%04d", i%2000+1)}
			raw, _ := json.Marshal(e)
			if err := tx.PutActivity(e.ID, raw, activity.Keep); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	log := activity.New(db, sched.NewBus(), quiet)
	for _, c := range []struct {
		name   string
		newest int // pick among the newest jobs (0: any)
		list   func(job int) ([]activity.Entry, error)
	}{
		{"text-search", 0, func(k int) ([]activity.Entry, error) { return log.List("", jobs[k], 200) }},
		{"of-job", 0, func(k int) ([]activity.Entry, error) { return log.OfJob(jobs[k], created[k], 200) }},
		{"of-job-newest-100", 100, func(k int) ([]activity.Entry, error) { return log.OfJob(jobs[k], created[k], 200) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := range b.N {
				k := i * 7919 % len(jobs)
				if c.newest > 0 {
					k = len(jobs) - 1 - i%c.newest
				}
				got, err := c.list(k)
				if err != nil || len(got) != each {
					b.Fatalf("%d entries, %v", len(got), err)
				}
			}
		})
	}
}

// idAt is a UUIDv7 made at t, as Record would have made it then.
func idAt(t time.Time) string {
	u := uuid.Must(uuid.NewV7())
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	return u.String()
}
