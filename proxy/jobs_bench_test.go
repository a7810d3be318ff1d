package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/proxy"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// BenchmarkJobsList measures GET /user/1/api/jobs as the frontend's Job
// Queue and Assets panels ask it, again at every change of the queue from
// every open page: the history page (the newest 200 finished jobs) and the
// queue (running and pending); and GET /user/1/api/history as the legacy
// frontend's History panel asks it (the newest 200 entries, each with its
// prompt and extra_data). For a participant with 1,000 jobs of the Flux.2
// fixture (its 71 KB UI graph in each job's extra_data) in a store of
// 2,000. Time and allocations are per call, in the server's handler (no
// network).
//
//	go test -run '^$' -bench JobsList -benchmem ./proxy
func BenchmarkJobsList(b *testing.B) {
	ui, err := os.ReadFile("../../shared/fixtures/workflows/flux2_klein_4b_text_to_image.json")
	if err != nil {
		b.Skipf("fixtures not present at ../shared/fixtures: %v", err)
	}
	prompt, err := os.ReadFile("../../shared/fixtures/workflows/example_workflow.json")
	if err != nil {
		b.Skip(err)
	}
	extra, _ := json.Marshal(map[string]any{"extra_pnginfo": map[string]json.RawMessage{"workflow": ui}})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(b.TempDir(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	at := time.Now().Add(-10 * time.Hour)
	for batch := range 20 {
		err := db.Write(ctx, func(tx *store.Tx) error {
			for i := batch * 100; i < (batch+1)*100; i++ {
				at = at.Add(time.Second)
				user := 1 + i%2*(1+i%7) // half the jobs are seat 1's
				j := &workshop.Job{ID: uuid.Must(uuid.NewV7()).String(), Seq: uint64(i + 1), UserSeq: uint64(i/2 + 1),
					UserID: workshop.UserID(user), Workflow: prompt, ExtraData: extra, WorkflowID: "92112d97-bb64-4b44-86f2-ea5691ef8f6e",
					Status: workshop.StatusPending, CreatedAt: at}
				if i < 1980 {
					started, ended := at.Add(time.Second), at.Add(time.Duration(3+i%5)*time.Second)
					j.Status, j.StartedAt, j.CompletedAt = workshop.StatusCompleted, &started, &ended
					name := fmt.Sprintf("ComfyUI_%05d_.png", i)
					j.Result = &workshop.Result{
						Outputs: []workshop.Output{{Node: "9", Name: name, Filename: name, Type: "output", Size: 1 << 20}},
						Raw:     json.RawMessage(`{"9": {"images": [{"filename": "` + name + `", "subfolder": "", "type": "output"}]}}`),
					}
					if i%25 == 0 {
						j.Status, j.Result = workshop.StatusFailed, nil
						j.Error = &workshop.JobError{Type: "execution_error", Message: "CUDA out of memory"}
					}
				}
				if err := tx.PutJob(j); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	q, err := sched.Open(db, sched.Config{Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	sv := seats.New(db)
	if err := sv.Ensure(ctx, 8); err != nil {
		b.Fatal(err)
	}
	const token = "bench-admin-token-0123456789"
	app := fiber.New()
	proxy.New(proxy.Config{Queue: q, Seats: sv, DB: db, AdminTokenHash: auth.HashToken(token), Log: quiet}).Register(app)
	h := app.Handler()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for _, c := range []struct{ name, query string }{
		{"history", "jobs?status=completed,failed,cancelled&limit=200&offset=0"},
		{"queue", "jobs?status=in_progress,pending&limit=200&offset=0"},
		{"by-duration", "jobs?sort_by=execution_duration&limit=50"},
		{"legacy-history", "history?max_items=200"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var req fasthttp.Request
			req.SetRequestURI("/user/1/api/" + c.query)
			req.Header.Set(fiber.HeaderAuthorization, "Bearer "+token)
			var listed struct {
				Jobs []json.RawMessage `json:"jobs"`
			}
			var history map[string]json.RawMessage
			size := 0
			b.ReportAllocs()
			for b.Loop() {
				var rc fasthttp.RequestCtx
				rc.Init(&req, addr, nil)
				h(&rc)
				if rc.Response.StatusCode() != 200 {
					b.Fatalf("%s: %d %s", c.query, rc.Response.StatusCode(), rc.Response.Body())
				}
				size = len(rc.Response.Body())
				if listed.Jobs == nil && history == nil {
					json.Unmarshal(rc.Response.Body(), &listed)
					json.Unmarshal(rc.Response.Body(), &history)
				}
			}
			b.ReportMetric(float64(max(len(listed.Jobs), len(history))), "jobs/call")
			b.ReportMetric(float64(size)/1024, "KiB/call")
		})
	}
}
