package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// comfyError answers in the /prompt error shape of current ComfyUI, keys
// in its order.
func comfyError(c *fiber.Ctx, status int, typ, msg, details string) error {
	b, _ := jsonobj.Of(
		"error", jsonobj.Of("type", typ, "message", msg, "details", details, "extra_info", jsonobj.Object{}),
		"node_errors", jsonobj.Object{},
	).MarshalJSON()
	return c.Status(status).Type("json").Send(b)
}

// promptInfo is GET /prompt: the participant's own queue count.
func (p *Proxy) promptInfo(c *fiber.Ctx) error {
	pending, running := p.cfg.Queue.Counts(userOf(c))
	return c.JSON(fiber.Map{"exec_info": fiber.Map{"queue_remaining": pending + running}})
}

// postPrompt is POST /prompt: validate like ComfyUI against the GPU hosts'
// object_info (as this participant sees it), then queue durably.
func (p *Proxy) postPrompt(c *fiber.Ctx) error {
	user := userOf(c)
	var req struct {
		Prompt    json.RawMessage `json:"prompt"`
		ClientID  string          `json:"client_id"`
		ExtraData json.RawMessage `json:"extra_data"`
		Front     bool            `json:"front"`
	}
	// ComfyUI parses the body whatever the Content-Type says.
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return comfyError(c, 400, "invalid_prompt", "Invalid prompt", "the body is not JSON: "+err.Error())
	}
	if len(bytes.TrimSpace(req.Prompt)) == 0 || bytes.Equal(bytes.TrimSpace(req.Prompt), []byte("null")) {
		return comfyError(c, 400, "no_prompt", "No prompt provided", "No prompt provided")
	}
	// The size before any decoding or validation: the work of both grows
	// with the graph, and no real workflow comes near the cap.
	if n := comfy.CountNodes(req.Prompt, p.maxNodes()); n > p.maxNodes() {
		return comfyError(c, 400, "invalid_prompt", "Invalid prompt", fmt.Sprintf("the graph has more than %d nodes, the most this workshop takes", p.maxNodes()))
	}
	prompt, err := comfy.ParsePrompt(req.Prompt)
	if err != nil {
		return comfyError(c, 400, "invalid_prompt", "Invalid prompt", err.Error())
	}
	// Without the node list (no GPU host has connected yet) nothing can be
	// checked, not even which uploads a graph reads: refuse, as a ComfyUI
	// that is starting does.
	view, known := p.viewFor(c.UserContext(), user)
	if !known {
		c.Set(fiber.HeaderRetryAfter, "10")
		return comfyError(c, 503, "server_unavailable", "The GPUs are not connected yet", "no GPU host has sent its node list yet: try again in a moment")
	}
	if _, nodeErrors, perr := comfy.ValidatePrompt(prompt, view.info, view.validateOptions()); perr != nil {
		body := perr.Body
		if len(body) == 0 {
			body, _ = json.Marshal(struct {
				Error      comfy.ErrorInfo            `json:"error"`
				NodeErrors map[string]comfy.NodeError `json:"node_errors"`
			}{perr.Info, nodeErrorsOr(perr.NodeErrors, nodeErrors)})
		}
		return c.Status(400).Type("json").Send(body)
	}
	inputs := view.rewriteInputs(prompt, user)
	workflow, err := json.Marshal(prompt)
	if err != nil {
		return comfyError(c, 400, "invalid_prompt", "Invalid prompt", err.Error())
	}
	extra := req.ExtraData
	if len(bytes.TrimSpace(extra)) == 0 || extra[0] != '{' {
		extra = nil
	}
	sub := sched.Submission{UserID: user, Workflow: workflow, ExtraData: extra, WorkflowID: workflowID(extra), Inputs: inputs}
	job, err := p.cfg.Queue.Submit(c.UserContext(), sub)
	if err != nil {
		if workshop.ErrorCode(err) == workshop.ETOOMANY {
			return comfyError(c, 429, "queue_full", workshop.ErrorMessage(err), "")
		}
		if code := workshop.ErrorCode(err); code == workshop.EINVALID || code == workshop.ETOOLARGE {
			return comfyError(c, 400, "invalid_prompt", "Invalid prompt", workshop.ErrorMessage(err))
		}
		return err
	}
	b, _ := jsonobj.Of("prompt_id", job.ID, "number", number(job), "node_errors", jsonobj.Object{}).MarshalJSON()
	return c.Type("json").Send(b)
}

func (p *Proxy) maxNodes() int {
	if p.cfg.MaxNodes > 0 {
		return p.cfg.MaxNodes
	}
	return workshop.DefaultMaxNodes
}

func nodeErrorsOr(a, b map[string]comfy.NodeError) map[string]comfy.NodeError {
	if len(a) > 0 {
		return a
	}
	if b == nil {
		return map[string]comfy.NodeError{}
	}
	return b
}

// number is a job's number as its participant sees it: theirs alone, not
// the room's (which would tell them how many jobs everyone queued).
func number(j *workshop.Job) uint64 {
	if j.UserSeq > 0 {
		return j.UserSeq
	}
	return j.Seq
}

// queueItem is ComfyUI's [number, prompt_id, prompt, extra_data, outputs].
// The stored prompt and extra_data (valid JSON, checked at submission) are
// written as they are: json.Marshal would compact them again, the most of
// a history answer's cost (hundreds of KB of UI graph a job).
func queueItem(j *workshop.Job, outputs []string) json.RawMessage {
	prompt, extra := j.Workflow, j.ExtraData
	if len(prompt) == 0 {
		prompt = json.RawMessage("{}")
	}
	if len(extra) == 0 {
		extra = json.RawMessage("{}")
	}
	if outputs == nil {
		outputs = []string{}
	}
	head, _ := json.Marshal([]any{number(j), j.ID})
	tail, _ := json.Marshal(outputs)
	b := make([]byte, 0, len(head)+len(prompt)+len(extra)+len(tail)+3)
	b = append(append(append(b, head[:len(head)-1]...), ','), prompt...)
	b = append(append(append(b, ','), extra...), ',')
	return append(append(b, tail...), ']')
}

// jsonArray joins JSON values into an array, as they are.
func jsonArray(items []json.RawMessage) json.RawMessage {
	b := []byte{'['}
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, ']')
}

// outputNodes lists a graph's output nodes, per the object_info known.
func (p *Proxy) outputNodes(c *fiber.Ctx, workflow json.RawMessage) []string {
	view, ok := p.viewFor(c.UserContext(), userOf(c))
	prompt, err := comfy.ParsePrompt(workflow)
	if err != nil {
		return nil
	}
	var out []string
	for id, n := range prompt {
		if ok {
			if info, known := view.info[n.ClassType]; known && info.OutputNode {
				out = append(out, id)
			}
		}
	}
	comfy.SortNodeIDs(out)
	return out
}

// executing reports whether a job runs on a GPU now: leased and started.
// A prefetched job waits in the instance's queue, as a pending prompt does
// in ComfyUI's.
func executing(j *workshop.Job) bool {
	return j.Status == workshop.StatusRunning && j.StartedAt != nil
}

// getQueue is GET /queue: the participant's own running and pending jobs.
func (p *Proxy) getQueue(c *fiber.Ctx) error {
	var running, pending []json.RawMessage
	for _, j := range p.cfg.Queue.Mine(userOf(c), true) {
		item := queueItem(j, p.outputNodes(c, j.Workflow))
		if executing(j) {
			running = append(running, item)
		} else {
			pending = append(pending, item)
		}
	}
	b, _ := jsonobj.Of("queue_running", jsonArray(running), "queue_pending", jsonArray(pending)).MarshalJSON()
	return c.Type("json").Send(b)
}

// postQueue is POST /queue: delete or clear the participant's own pending
// jobs. As in ComfyUI, running jobs are not touched and unknown ids are
// ignored; so are other participants' ids.
func (p *Proxy) postQueue(c *fiber.Ctx) error {
	var req struct {
		Delete []string `json:"delete"`
		Clear  bool     `json:"clear"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return c.Status(400).SendString("invalid JSON")
	}
	user := userOf(c)
	want := map[string]bool{}
	for _, id := range req.Delete {
		want[id] = true
	}
	for _, j := range p.cfg.Queue.Mine(user, false) {
		if j.Status == workshop.StatusPending && (req.Clear || want[j.ID]) {
			if _, err := p.cfg.Queue.Cancel(c.UserContext(), j.ID, "removed from the queue by its owner"); err != nil && workshop.ErrorCode(err) != workshop.ECONFLICT {
				return err
			}
		}
	}
	return c.SendStatus(200)
}

// interrupt is POST /interrupt: as in ComfyUI, stop what runs, here the
// participant's executing job (with a prompt_id, only that one, if it is
// executing; one waiting in the queue is left alone, as ComfyUI leaves
// it). The job is cancelled (the queue records the node it was at); its
// end is told as ComfyUI tells an interrupt. Always 200, as ComfyUI.
func (p *Proxy) interrupt(c *fiber.Ctx) error {
	var req struct {
		PromptID string `json:"prompt_id"`
	}
	json.Unmarshal(c.Body(), &req)
	for _, j := range p.cfg.Queue.Mine(userOf(c), true) {
		if !executing(j) || req.PromptID != "" && req.PromptID != j.ID {
			continue
		}
		if _, err := p.cfg.Queue.Cancel(c.UserContext(), j.ID, "interrupted by its owner"); err != nil && workshop.ErrorCode(err) != workshop.ECONFLICT {
			return err
		}
	}
	return c.SendStatus(200)
}

// historyLimit bounds what one history answer holds, as ComfyUI's own
// history holds at most 10,000 items.
const historyLimit = 1000

// inHistory reports whether ComfyUI would keep a history entry of the
// job: it ran to its end, failed, or was interrupted while it ran (one
// taken out of the queue before it started leaves none).
func inHistory(j *workshop.Job) bool {
	return historyEntryOf(j.Status, j.StartedAt != nil)
}

// historyEntryOf is inHistory from what a job's index entry holds.
func historyEntryOf(s workshop.JobStatus, started bool) bool {
	return s == workshop.StatusCompleted || s == workshop.StatusFailed || s == workshop.StatusCancelled && started
}

// historyEntry is the ComfyUI history entry of a finished job, with its
// outputs named as this server serves them (subfolder = job id), in
// ComfyUI's key order.
func (p *Proxy) historyEntry(c *fiber.Ctx, j *workshop.Job) jsonobj.Object {
	full, err := p.cfg.Queue.Get(j.ID)
	if err == nil {
		j = full
	}
	outputs, meta := json.RawMessage("{}"), json.RawMessage(nil)
	if j.Result != nil && len(j.Result.Raw) > 0 {
		outputs = rewriteOutputs(j.Result.Raw, j.ID)
		meta = j.Result.Meta
	}
	if meta == nil {
		meta = metaOf(outputs)
	}
	return jsonobj.Of("prompt", queueItem(j, p.outputNodes(c, j.Workflow)), "outputs", outputs, "status", historyStatus(j), "meta", meta)
}

// historyStatus is a finished job's history "status", in ComfyUI's order.
func historyStatus(j *workshop.Job) jsonobj.Object {
	done := j.Status == workshop.StatusCompleted
	status := jsonobj.Of("status_str", "error", "completed", done, "messages", historyMessages(j))
	if done {
		status.Set("status_str", jsonobj.Raw("success"))
	}
	return status
}

// getHistory is GET /history?max_items=&offset=: the newest historyLimit
// entries, oldest first; with max_items and no offset, the newest
// max_items (as ComfyUI). The page is chosen from the participant's index.
func (p *Proxy) getHistory(c *fiber.Ctx) error {
	max, offset := -1, -1
	if v := c.Query("max_items"); v != "" {
		max, _ = strconv.Atoi(v)
	}
	if v := c.Query("offset"); v != "" {
		offset, _ = strconv.Atoi(v)
	}
	q := store.UserJobsQuery{UserID: userOf(c), Match: func(e store.UserJob) bool { return historyEntryOf(e.Status, e.Started != 0) }, Limit: 1}
	_, total, err := p.cfg.Queue.UserJobs(q)
	if err != nil {
		return err
	}
	kept := min(total, historyLimit)
	if offset < 0 && max > 0 {
		offset = kept - max
	}
	offset = min(max0(offset), kept)
	q.Asc, q.Offset, q.Limit = true, total-kept+offset, kept-offset
	if max >= 0 {
		q.Limit = min(q.Limit, max)
	}
	var jobs []*workshop.Job
	if q.Limit > 0 {
		if jobs, _, err = p.cfg.Queue.UserJobs(q); err != nil {
			return err
		}
	}
	// Sent as built: c.JSON would compact the whole answer again (each
	// entry holds its prompt and UI graph, megabytes in all).
	return c.Type("json").Send(orderedHistory(c, p, jobs))
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}

// orderedHistory writes {id: entry} keeping the jobs' order (a Go map would
// lose it, and the frontend shows history in key order).
func orderedHistory(c *fiber.Ctx, p *Proxy, jobs []*workshop.Job) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, j := range jobs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(j.ID)
		v, _ := p.historyEntry(c, j).MarshalJSON()
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func (p *Proxy) getHistoryOne(c *fiber.Ctx) error {
	j, err := p.cfg.Queue.Get(c.Params("id"))
	if err != nil || j.UserID != userOf(c) || !inHistory(j) {
		return c.JSON(fiber.Map{}) // ComfyUI answers {} for an unknown id
	}
	return c.Type("json").Send(orderedHistory(c, p, []*workshop.Job{j}))
}

// postHistory is POST /history {delete|clear}: the participant's history
// is their jobs; removing entries hides nothing in the workshop's records,
// so it is accepted and does nothing.
func (p *Proxy) postHistory(c *fiber.Ctx) error { return c.SendStatus(200) }
