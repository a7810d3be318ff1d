package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/benchkit"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// BenchmarkRealComfyUI measures, on the newest real ComfyUI here, in one
// run: the time from submit to completion posting straight to ComfyUI
// (its execution_success on the socket) and through the workshop (a
// participant's post to /user/1/ to execution_success on their socket,
// which the server sends once the outputs are home), one job at a time;
// and the idle gap between jobs on the instance, with and without
// prefetch, from ComfyUI's own timestamps (milliseconds).
func BenchmarkRealComfyUI(b *testing.B) {
	var newest realcomfy.Version
	for _, v := range realcomfy.Versions(b) {
		if v.AcceptsPromptID {
			newest = v
		}
	}
	if newest.Name == "" {
		b.Skip("no ComfyUI here keeps the workshop's prompt ids (needed to read the gaps from its history)")
	}
	in := realcomfy.Start(b, newest, realcomfy.Options{})
	n := max(b.N, 40)
	graph := func(i int) map[string]any {
		// A new colour every time: run, not served from ComfyUI's cache.
		return imageGraph("bench", int(time.Now().UnixNano()%0xffffff)+i)
	}
	b.ResetTimer()

	// Straight to ComfyUI.
	c, err := comfy.New(in.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f := c.Follow(ctx, "bench-direct")
	defer f.Close()
	if _, err := f.WaitFor(ctx, func(ev comfy.Event) bool { return ev.Type == comfy.EventStatus }); err != nil {
		b.Fatal(err)
	}
	var direct []time.Duration
	for i := 0; i < n; i++ {
		raw, _ := json.Marshal(graph(i))
		id := uuid.NewString()
		t0 := time.Now()
		if _, err := c.QueuePrompt(ctx, comfy.PromptRequest{Prompt: json.RawMessage(raw), ClientID: "bench-direct", PromptID: id}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.WaitFor(ctx, func(ev comfy.Event) bool {
			m, ok := ev.Msg.(*comfy.ExecutionSuccess)
			return ok && m.PromptID == id
		}); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(t0))
	}

	// Through the workshop, and the gaps with each prefetch.
	var via []time.Duration
	for _, prefetch := range []int{1, 0} {
		srv := startGPUServer(b, b.TempDir(), "--seats", "2", "--prefetch", fmt.Sprint(prefetch))
		s := &stack{server: srv, a: admin{b, srv.base}, ev: watch(b, srv.base)}
		agent := startAgentFor(b, srv.base, "gpu-bench", in.URL)
		s.ev.waitWorkers(s.a, 1, 60*time.Second)
		p := s.join(1)
		ws := p.socket("bench")
		if prefetch == 1 {
			for i := 0; i < n; i++ {
				t0 := time.Now()
				id := p.prompt(graph(i))
				ws.waitSuccess(b, time.Minute, id)
				via = append(via, time.Since(t0))
			}
		}
		// A full queue, released at once.
		s.a.do("POST", "/api/queue/pause", nil, nil)
		var ids []string
		for i := 0; i < 20; i++ {
			ids = append(ids, p.prompt(graph(i)))
		}
		s.a.do("POST", "/api/queue/resume", nil, nil)
		ws.waitSuccess(b, 5*time.Minute, ids...)
		gaps := idleGaps(b, in.URL, ids)
		b.ReportMetric(benchkit.MS(benchkit.Pct(gaps, 0.5)), fmt.Sprintf("gap-prefetch%d-p50-ms", prefetch))
		b.ReportMetric(benchkit.MS(benchkit.Pct(gaps, 0.9)), fmt.Sprintf("gap-prefetch%d-p90-ms", prefetch))
		agent.stop(context.Background())
		srv.stop(context.Background())
	}
	b.ReportMetric(benchkit.MS(benchkit.Pct(direct, 0.5)), "direct-p50-ms")
	b.ReportMetric(benchkit.MS(benchkit.Pct(direct, 0.9)), "direct-p90-ms")
	b.ReportMetric(benchkit.MS(benchkit.Pct(via, 0.5)), "workshop-p50-ms")
	b.ReportMetric(benchkit.MS(benchkit.Pct(via, 0.9)), "workshop-p90-ms")
	b.ReportMetric(benchkit.MS(benchkit.Pct(via, 0.5)-benchkit.Pct(direct, 0.5)), "added-p50-ms")
}

// idleGaps reads the jobs' runs from the instance's history (the workshop
// gives them their own ids) and returns the time from each job's
// execution_success to the next one's execution_start.
func idleGaps(b *testing.B, instance string, ids []string) []time.Duration {
	type run struct{ start, end int64 }
	var runs []run
	for _, id := range ids {
		var h map[string]struct {
			Status struct {
				Messages [][]json.RawMessage `json:"messages"`
			} `json:"status"`
		}
		json.Unmarshal(get(b, instance+"/history/"+id), &h)
		var r run
		for _, m := range h[id].Status.Messages {
			var ev string
			var data struct {
				Timestamp int64 `json:"timestamp"`
			}
			if len(m) != 2 || json.Unmarshal(m[0], &ev) != nil || json.Unmarshal(m[1], &data) != nil {
				continue
			}
			switch ev {
			case "execution_start":
				r.start = data.Timestamp
			case "execution_success":
				r.end = data.Timestamp
			}
		}
		if r.start == 0 || r.end == 0 {
			b.Fatalf("job %s has no run in the instance's history", id)
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].start < runs[j].start })
	var gaps []time.Duration
	for i := 1; i < len(runs); i++ {
		gaps = append(gaps, time.Duration(runs[i].start-runs[i-1].end)*time.Millisecond)
	}
	return gaps
}
