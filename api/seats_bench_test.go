package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/internal/benchkit"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// BenchmarkSeatsList measures what the participants view asks the server
// for with 2,000 seats and 40,000 finished jobs (20 each): one page of 50,
// a search, and, for comparison, the whole list (the CLI's call), which
// counts every seat's jobs.
//
//	go test -run '^$' -bench SeatsList -benchtime 20x ./api
func BenchmarkSeatsList(b *testing.B) {
	ctx := context.Background()
	var db *store.DB
	e := startWith(b, sched.Config{}, func(c *api.Config, d *store.DB, _ string) {
		db = d
		sv := seats.New(d)
		if err := sv.Ensure(ctx, 2000); err != nil {
			b.Fatal(err)
		}
		c.Seats = sv
	})
	err := db.Write(ctx, func(tx *store.Tx) error {
		at := time.Now().Add(-time.Hour)
		for i := range 40000 {
			j := &workshop.Job{ID: uuid.Must(uuid.NewV7()).String(), Seq: uint64(i + 1), UserID: workshop.UserID(i%2000 + 1),
				Workflow: []byte(graph), Status: workshop.StatusCompleted, CreatedAt: at, CompletedAt: &at,
				Result: &workshop.Result{Outputs: []workshop.Output{{Name: "ComfyUI_00001_.png", Size: 1}}}}
			if err := tx.PutJob(j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	hc := benchkit.NewClient(1, token)
	for _, q := range []string{"limit=50&offset=1000", "q=alice&limit=50", "live=0", ""} {
		name := q
		if name == "" {
			name = "all"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if st, err := hc.Do("GET", e.base+"/api/seats?"+q, nil, nil); err != nil || st != 200 {
					b.Fatalf("GET /api/seats?%s: %d %v", q, st, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/request")
		})
	}
}
