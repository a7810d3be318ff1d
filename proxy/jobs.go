package proxy

import (
	"bytes"
	"encoding/json"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// ComfyUI's newer jobs API (GET /api/jobs, /api/jobs/{id} and the two
// cancel routes), which the current frontend's Job Queue and Assets panels
// read. Upstream lists the whole server's history; here it is the
// participant's own jobs only, numbered as theirs.

// jobStatusName maps a job's status to the jobs API's words.
var jobStatusName = map[workshop.JobStatus]string{
	workshop.StatusPending: "pending", workshop.StatusRunning: "in_progress",
	workshop.StatusCompleted: "completed", workshop.StatusFailed: "failed", workshop.StatusCancelled: "cancelled",
}

// jobItem is one job of GET /api/jobs, in upstream's shape. A struct: a
// panel refresh marshals up to a few hundred of them.
type jobItem struct {
	ID                 string          `json:"id"`
	Status             string          `json:"status"`
	Priority           uint64          `json:"priority"`
	CreateTime         int64           `json:"create_time"`
	ExecutionStartTime *int64          `json:"execution_start_time,omitempty"`
	ExecutionEndTime   *int64          `json:"execution_end_time,omitempty"`
	ExecutionError     json.RawMessage `json:"execution_error,omitempty"`
	OutputsCount       int             `json:"outputs_count"`
	PreviewOutput      map[string]any  `json:"preview_output,omitempty"`
	WorkflowID         string          `json:"workflow_id,omitempty"`
}

// jobDetail is GET /api/jobs/{id}: the item with what re-running and
// downloading need.
type jobDetail struct {
	jobItem
	Workflow        jobWorkflow     `json:"workflow"`
	Outputs         json.RawMessage `json:"outputs,omitempty"`
	ExecutionStatus any             `json:"execution_status,omitempty"`
	UpdateTime      int64           `json:"update_time,omitempty"`
}

type jobWorkflow struct {
	Prompt    json.RawMessage `json:"prompt"`
	ExtraData json.RawMessage `json:"extra_data"`
}

// jobsQuery is what GET /api/jobs asks for.
type jobsQuery struct {
	statuses   map[string]bool // empty: every status
	byDuration bool            // sort_by=execution_duration, else create time
	asc        bool
	limit      int // -1: all
	offset     int
	workflowID string
}

// badQuery answers a malformed jobs request as upstream does: 400 {"error"}.
func badQuery(c *fiber.Ctx, msg string) error {
	return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": msg})
}

func parseJobsQuery(c *fiber.Ctx) (jobsQuery, string) {
	q := jobsQuery{statuses: map[string]bool{}, limit: -1}
	for _, s := range strings.Split(c.Query("status"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		known := false
		for _, name := range jobStatusName {
			known = known || name == s
		}
		if !known {
			return q, "status " + strconv.Quote(s) + ": want pending, in_progress, completed, failed or cancelled"
		}
		q.statuses[s] = true
	}
	switch c.Query("sort_by", "created_at") {
	case "created_at", "create_time":
	case "execution_duration":
		q.byDuration = true
	default:
		return q, "sort_by: want created_at or execution_duration"
	}
	switch c.Query("sort_order", "desc") {
	case "desc":
	case "asc":
		q.asc = true
	default:
		return q, "sort_order: want asc or desc"
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return q, "limit must be a positive integer"
		}
		q.limit = n
	}
	if v := c.Query("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return q, "offset must be a non-negative integer"
		}
		q.offset = n
	}
	q.workflowID = c.Query("workflow_id")
	return q, ""
}

// listJobs is GET /api/jobs: the participant's jobs, filtered, sorted and
// paged as upstream does it, by the store from the participant's index:
// only the page's jobs are read, never their graphs.
func (p *Proxy) listJobs(c *fiber.Ctx) error {
	q, bad := parseJobsQuery(c)
	if bad != "" {
		return badQuery(c, bad)
	}
	query := store.UserJobsQuery{UserID: userOf(c), ByDuration: q.byDuration, Asc: q.asc, Offset: q.offset, Limit: q.limit,
		Match: func(e store.UserJob) bool {
			name, listed := listedStatus(e.Status, e.Started != 0)
			return listed && (len(q.statuses) == 0 || q.statuses[name]) && (q.workflowID == "" || e.WorkflowID == q.workflowID)
		}}
	jobs, total, err := p.cfg.Queue.UserJobs(query)
	if err != nil {
		return err
	}
	page := make([]jobItem, 0, len(jobs))
	for _, j := range jobs {
		page = append(page, itemOf(j))
	}
	offset := min(q.offset, total)
	limit := q.limit
	if limit < 0 {
		limit = total
	}
	return c.JSON(fiber.Map{"jobs": page, "pagination": fiber.Map{
		"offset": offset, "limit": limit, "total": total, "has_more": offset+len(page) < total,
	}})
}

// listedStatus is the jobs API's word for a job's status, and whether the
// job is listed at all: one taken out of the queue before it ran is not
// (ComfyUI keeps no trace of those; it still answers by id), and one
// cancelled while it ran is failed, as ComfyUI lists an interrupted prompt.
func listedStatus(s workshop.JobStatus, started bool) (string, bool) {
	if s == workshop.StatusCancelled && started {
		return "failed", true
	}
	return jobStatusName[s], s != workshop.StatusCancelled
}

// getJob is GET /api/jobs/{id}: 404 for an unknown id or someone else's.
func (p *Proxy) getJob(c *fiber.Ctx) error {
	j, err := p.cfg.Queue.Get(c.Params("id"))
	if err != nil || j.UserID != userOf(c) {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "Job not found"})
	}
	d := jobDetail{jobItem: itemOf(j), Workflow: jobWorkflow{Prompt: j.Workflow, ExtraData: j.ExtraData}}
	if len(d.Workflow.ExtraData) == 0 {
		d.Workflow.ExtraData = json.RawMessage("{}")
	}
	if j.Status.Finished() {
		d.Outputs = outputsOfJob(j)
		d.ExecutionStatus = historyStatus(j)
		if j.CompletedAt != nil {
			d.UpdateTime = j.CompletedAt.UnixMilli()
		}
	}
	return c.JSON(d)
}

// itemOf is a job as GET /api/jobs lists it.
func itemOf(j *workshop.Job) jobItem {
	status, _ := listedStatus(j.Status, j.StartedAt != nil)
	it := jobItem{ID: j.ID, Status: status, Priority: number(j), CreateTime: j.CreatedAt.UnixMilli(), WorkflowID: j.WorkflowID}
	if j.StartedAt != nil {
		ms := j.StartedAt.UnixMilli()
		it.ExecutionStartTime = &ms
	}
	if j.CompletedAt != nil {
		ms := j.CompletedAt.UnixMilli()
		it.ExecutionEndTime = &ms
	}
	switch {
	case j.Status == workshop.StatusCompleted:
		it.OutputsCount, it.PreviewOutput = outputsSummary(outputsOfJob(j))
	case status == "failed":
		// Failed, or stopped while it ran: ComfyUI's exception says which.
		it.ExecutionError = executionError(j)
	}
	return it
}

// outputsOfJob is a finished job's outputs as ComfyUI reported them, named
// where this server serves them.
func outputsOfJob(j *workshop.Job) json.RawMessage {
	if j.Result == nil || len(j.Result.Raw) == 0 {
		return json.RawMessage("{}")
	}
	return rewriteOutputs(j.Result.Raw, j.ID)
}

// workflowID is the UI graph's id in a prompt's extra_data, which the
// frontend matches jobs to open workflows by ("" for none, or for one too
// long to be an id).
func workflowID(extra json.RawMessage) string {
	if !bytes.Contains(extra, []byte(`"extra_pnginfo"`)) {
		return ""
	}
	var x struct {
		PNGInfo struct {
			Workflow struct {
				ID string `json:"id"`
			} `json:"workflow"`
		} `json:"extra_pnginfo"`
	}
	json.Unmarshal(extra, &x)
	if len(x.PNGInfo.Workflow.ID) > sched.MaxWorkflowIDLen {
		return ""
	}
	return x.PNGInfo.Workflow.ID
}

// previewable says whether the frontend can preview an output item, as
// upstream's is_previewable does.
func previewable(mediaType string, item map[string]any) bool {
	switch mediaType {
	case "images", "video", "audio":
		return true
	}
	if f, _ := item["format"].(string); strings.HasPrefix(f, "video/") || strings.HasPrefix(f, "audio/") {
		return true
	}
	name, _ := item["filename"].(string)
	switch strings.ToLower(path.Ext(name)) {
	case ".obj", ".fbx", ".gltf", ".glb":
		return true
	}
	return false
}

// outputsSummary counts a job's output files and picks the one the panels
// show (the first previewable of type output, else of any type), with the
// node and media type the frontend expects beside it.
func outputsSummary(outputs json.RawMessage) (int, map[string]any) {
	var nodes map[string]map[string]json.RawMessage
	if json.Unmarshal(outputs, &nodes) != nil {
		return 0, nil
	}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	comfy.SortNodeIDs(ids)
	count := 0
	var preview, fallback map[string]any
	for _, id := range ids {
		keys := make([]string, 0, len(nodes[id]))
		for k := range nodes[id] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, media := range keys {
			var items []map[string]any
			if media == "animated" || json.Unmarshal(nodes[id][media], &items) != nil {
				continue
			}
			for _, item := range items {
				if item == nil {
					continue
				}
				count++
				if preview != nil || !previewable(media, item) {
					continue
				}
				v := map[string]any{"nodeId": id, "mediaType": media}
				for k, x := range item {
					v[k] = x
				}
				if item["type"] == "output" {
					preview = v
				} else if fallback == nil {
					fallback = v
				}
			}
		}
	}
	if preview == nil {
		preview = fallback
	}
	return count, preview
}

// executionError is a failed job's error as the frontend's schema wants it
// (node_id, node_type, exception_*, traceback...): the execution_error its
// end is told with (ComfyUI's own when it failed in ComfyUI), completed
// with empty fields, so one failure never breaks the whole list. One
// interrupted while it ran gets ComfyUI's InterruptProcessingException.
func executionError(j *workshop.Job) json.RawMessage {
	e := map[string]any{}
	if typ, data := endEvent(j); typ == "execution_error" {
		json.Unmarshal(data, &e)
	}
	if j.Error != nil && e["exception_message"] == nil {
		e["exception_message"], e["exception_type"] = j.Error.Message, j.Error.Type
	}
	if j.Status == workshop.StatusCancelled || (j.Error != nil && j.Error.Type == "interrupted") {
		e["exception_type"] = "InterruptProcessingException"
	}
	// The frontend's schema types these; the rest it takes as they come.
	for _, k := range []string{"node_id", "node_type", "exception_message", "exception_type"} {
		if _, ok := e[k].(string); !ok {
			e[k] = ""
		}
	}
	if _, ok := e["traceback"].([]any); !ok {
		e["traceback"] = []string{}
	}
	for _, k := range []string{"current_inputs", "current_outputs"} {
		if e[k] == nil {
			e[k] = map[string]any{}
		}
	}
	if e["prompt_id"] == nil {
		e["prompt_id"] = j.ID
	}
	b, _ := json.Marshal(e)
	return b
}

// cancelOne is POST /api/jobs/{id}/cancel: {"cancelled": true} when a
// pending or running job of the participant's was cancelled, false for an
// unknown, someone else's or finished job.
func (p *Proxy) cancelOne(c *fiber.Ctx) error {
	ok, err := p.cancelMine(c, userOf(c), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"cancelled": ok})
}

// cancelMine cancels user's job id if it is still active.
func (p *Proxy) cancelMine(c *fiber.Ctx, user, id string) (bool, error) {
	j, err := p.cfg.Queue.Get(id)
	if err != nil || j.UserID != user || j.Status.Finished() {
		return false, nil
	}
	if _, err := p.cfg.Queue.Cancel(c.UserContext(), id, "cancelled by its owner"); err != nil {
		if code := workshop.ErrorCode(err); code == workshop.ECONFLICT || code == workshop.ENOTFOUND {
			return false, nil // it finished meanwhile
		}
		return false, err
	}
	return true, nil
}

// cancelMany is POST /api/jobs/cancel {"job_ids": [...]}: every id must be
// one of the participant's jobs, or nothing is cancelled (400 with
// invalid_ids for malformed ids, 404 with unknown_ids).
func (p *Proxy) cancelMany(c *fiber.Ctx) error {
	var req struct {
		JobIDs []any `json:"job_ids"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || len(req.JobIDs) == 0 {
		return badQuery(c, `the body must be {"job_ids": [id, ...]} with at least one id`)
	}
	user := userOf(c)
	var ids, invalid, unknown []string
	for _, v := range req.JobIDs {
		id, ok := v.(string)
		if _, err := uuid.Parse(id); !ok || err != nil {
			s, _ := json.Marshal(v)
			invalid = append(invalid, strings.Trim(string(s), `"`))
			continue
		}
		ids = append(ids, id)
	}
	if len(invalid) > 0 {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "some job ids are not valid", "invalid_ids": invalid})
	}
	for _, id := range ids {
		if j, err := p.cfg.Queue.Get(id); err != nil || j.UserID != user {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return c.Status(fiber.StatusNotFound).JSON(fiber.Map{"error": "some jobs were not found", "unknown_ids": unknown})
	}
	cancelled, finished := []string{}, []string{}
	for _, id := range ids {
		ok, err := p.cancelMine(c, user, id)
		if err != nil {
			return err
		}
		if ok {
			cancelled = append(cancelled, id)
		} else {
			finished = append(finished, id)
		}
	}
	return c.JSON(fiber.Map{"cancelled": cancelled, "already_finished": finished})
}
