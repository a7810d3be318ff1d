package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/comfy-workshop/workshop/comfy"
)

// testGraph needs no model weights: it proves an instance executes and saves.
const testGraph = `{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":0}},
"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"workshop_preflight"}}}`

// PreflightReport is one instance's readiness.
type PreflightReport struct {
	Worker    string                 `json:"worker"`
	TestGraph string                 `json:"test_graph"` // "ok" or what went wrong
	Workflows []WorkflowCheck        `json:"workflows"`
	OK        bool                   `json:"ok"`
	Duration  float64                `json:"seconds"`
	Needs     map[string]comfy.Needs `json:"-"`
}

// WorkflowCheck is what one workflow lacks on one instance.
type WorkflowCheck struct {
	Name          string   `json:"name"`
	MissingNodes  []string `json:"missing_nodes"`
	MissingModels []string `json:"missing_models"`
}

// Preflight checks every connected instance, in parallel: it runs the
// model-free test graph (directly, outside the queue) and checks each
// workflow's node types and model files against the instance's object_info.
func (d *Dispatcher) Preflight(ctx context.Context, workflows map[string]comfy.Needs) []PreflightReport {
	d.mu.Lock()
	ws := make([]*worker, 0, len(d.workers))
	for _, w := range d.workers {
		ws = append(ws, w)
	}
	d.mu.Unlock()
	out := make([]PreflightReport, len(ws))
	done := make(chan struct{}, len(ws))
	for i, w := range ws {
		go func() {
			out[i] = w.preflight(ctx, workflows)
			done <- struct{}{}
		}()
	}
	for range ws {
		<-done
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Worker < out[b].Worker })
	return out
}

func (w *worker) preflight(ctx context.Context, workflows map[string]comfy.Needs) PreflightReport {
	start := time.Now()
	r := PreflightReport{Worker: w.id, TestGraph: "ok", Workflows: []WorkflowCheck{}}
	if err := w.runTestGraph(ctx); err != nil {
		r.TestGraph = err.Error()
	}
	info, err := w.client.ObjectInfo(ctx)
	names := make([]string, 0, len(workflows))
	for n := range workflows {
		names = append(names, n)
	}
	sort.Strings(names)
	r.OK = r.TestGraph == "ok" && err == nil
	for _, name := range names {
		c := WorkflowCheck{Name: name, MissingNodes: []string{}, MissingModels: []string{}}
		if err != nil {
			c.MissingNodes = []string{"(object_info unreadable: " + err.Error() + ")"}
		} else {
			nodes, models := info.Missing(workflows[name])
			c.MissingNodes = append(c.MissingNodes, nodes...)
			c.MissingModels = append(c.MissingModels, models...)
		}
		if len(c.MissingNodes)+len(c.MissingModels) > 0 {
			r.OK = false
		}
		r.Workflows = append(r.Workflows, c)
	}
	r.Duration = time.Since(start).Seconds()
	return r
}

// runTestGraph queues the test graph on the instance and waits for its
// history entry.
func (w *worker) runTestGraph(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := w.client.QueuePrompt(ctx, comfy.PromptRequest{Prompt: json.RawMessage(testGraph), PromptID: uuid.NewString(), ClientID: w.clientID + "-preflight"})
	if err != nil {
		return fmt.Errorf("queue the test graph: %w", err)
	}
	for attempt := 0; ; attempt++ {
		e, ok, err := w.client.PromptHistory(ctx, resp.PromptID)
		if err != nil {
			return fmt.Errorf("read its history: %w", err)
		}
		if ok && e.Status != nil && e.Status.Completed {
			if !e.Succeeded() || len(e.Files()) == 0 {
				return fmt.Errorf("the test graph failed: %s", historyMessages(e))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the test graph did not finish: %w", ctx.Err())
		case <-time.After(backoff(attempt)):
		}
	}
}
