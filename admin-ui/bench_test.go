package adminui

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// BenchmarkAdminPage measures, in the browser, what one admin page costs:
//
//   - load: from navigation to the first full render with live data (a
//     signed-in reload of /admin against the fake, 500 pending jobs);
//
//   - render500: building the pending list of 500 jobs from scratch once the
//     data has arrived (performance.now around the render, layout included);
//
//   - ws: how many WebSocket messages per second the page handles, pushing
//     job_progress events (one in ten with a preview image) as fast as the
//     fake can write them and timing, in the page, the first to the last.
//
//     go test -run '^$' -bench AdminPage -benchtime 5x ./admin-ui/
func BenchmarkAdminPage(b *testing.B) {
	ctx := browser(b)
	f := newFake(b, 500)
	signIn(b, ctx, f)
	do(b, ctx, "500 rows", until(`document.querySelectorAll("#pending-list .job-row").length === 500`))

	b.Run("load", func(b *testing.B) {
		var total float64
		for b.Loop() {
			do(b, ctx, "reload",
				chromedp.Reload(),
				until(`document.body.dataset.ready === "1" && document.querySelectorAll("#pending-list .job-row").length === 500`))
			total += eval[float64](b, ctx, `window.__adminStats.readyAt`)
		}
		b.ReportMetric(total/float64(b.N), "ms-to-live-page")
	})

	b.Run("render500", func(b *testing.B) {
		var total float64
		for b.Loop() {
			ms := eval[float64](b, ctx, `(async () => {
				const l = document.querySelector("#pending-list");
				l.replaceChildren(); l.__keyed = null;
				await window.__admin.views.get("queue").reloadPending();
				if (window.__adminStats.renders.pendingRows !== 500) throw new Error("rows: " + window.__adminStats.renders.pendingRows);
				return window.__adminStats.renders.pending;
			})()`)
			total += ms
		}
		b.ReportMetric(total/float64(b.N), "ms/render")
		b.ReportMetric(0, "ns/op")
	})

	b.Run("ws", func(b *testing.B) {
		const n = 20000
		f.mu.Lock()
		var running []*fjob
		for _, j := range f.jobs {
			if j.Status == "running" {
				running = append(running, j)
			}
		}
		f.mu.Unlock()
		msgs := make([][]byte, n)
		for i := range n {
			j := running[i%len(running)]
			p := map[string]any{"job_id": j.ID, "user_id": j.UserID, "worker": j.Worker, "stage": "executing",
				"node": fmt.Sprint(3 + i%5), "value": i % 1000, "max": 1000}
			if i%10 == 0 {
				p["preview"] = previewURL(i % 7)
			}
			msgs[i], _ = json.Marshal(map[string]any{"type": "job_progress", "progress": p})
		}
		// The last message of each job says 999/1000: the page must show it.
		for k := range running {
			j := running[k]
			last, _ := json.Marshal(map[string]any{"type": "job_progress", "progress": map[string]any{
				"job_id": j.ID, "user_id": j.UserID, "worker": j.Worker, "stage": "executing", "node": "9", "value": 999, "max": 1000}})
			msgs[n-1-k] = last
		}
		var rate float64
		for b.Loop() {
			do(b, ctx, "reset", js(`Object.assign(window.__adminStats, {messages: 0, firstMessageAt: 0, lastMessageAt: 0, progressFrames: 0, handleMs: 0}); window.__admin.live().parseMs = 0`),
				js(`document.querySelectorAll("#running-list .bar").forEach(b => b.setAttribute("aria-valuenow", "0"))`))
			f.mu.Lock()
			for _, m := range msgs {
				f.pushLocked(m)
			}
			f.mu.Unlock()
			do(b, ctx, "all handled",
				until(fmt.Sprintf(`window.__adminStats.messages >= %d`, n)),
				until(`[...document.querySelectorAll("#running-list .run-card:not([data-stage=queued]) .bar")].every(b => b.getAttribute("aria-valuenow") === "100")`))
			ms := eval[float64](b, ctx, `window.__adminStats.lastMessageAt - window.__adminStats.firstMessageAt`)
			frames := eval[float64](b, ctx, `window.__adminStats.progressFrames`)
			rate += float64(n) / (ms / 1000)
			busy := eval[float64](b, ctx, `window.__adminStats.handleMs + window.__admin.live().parseMs`)
			b.Logf("%d messages in %.0f ms: %.0f/s; the page's handlers were busy %.0f ms (%.1f µs each); %v frames",
				n, ms, float64(n)/(ms/1000), busy, busy*1000/n, frames)
		}
		b.ReportMetric(rate/float64(b.N), "msgs/s")
		b.ReportMetric(0, "ns/op")
	})
	if f.socketCount() != 1 {
		b.Errorf("%d sockets open, want 1 (the page was dropped as too slow?)", f.socketCount())
	}
}
