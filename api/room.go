package api

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	qrcode "github.com/skip2/go-qrcode"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/internal/words"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// The instructor's room: the admin routes beyond the queue's own.

func (s *Server) moveJob(c *fiber.Ctx) error {
	var req struct {
		To string `json:"to"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.To != "top" {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"to\": \"top\"}")
	}
	job, err := s.cfg.Queue.MoveToTop(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	noteJob(c, "moved", job, " to the top of the queue")
	return c.JSON(job)
}

func (s *Server) retryJob(c *fiber.Ctx) error {
	job, err := s.cfg.Queue.Retry(c.UserContext(), c.Params("id"))
	if err != nil {
		return err
	}
	if old, err := s.cfg.Queue.Get(c.Params("id")); err == nil {
		noteJob(c, "retried", old, fmt.Sprintf(" as job #%d", job.Seq))
	} else {
		noteJob(c, "queued", job, " again (a retry)")
	}
	job.Workflow = nil
	return c.Status(fiber.StatusCreated).JSON(job)
}

// eachJob walks every stored job (oldest first). It reads them a thousand
// at a time, each in a short read transaction, and calls fn outside it: an
// export streamed to a slow client must not hold one open, as that keeps
// bbolt from reusing pages and from growing its map.
func (s *Server) eachJob(fn func(*workshop.Job) bool) error {
	const chunk = 1000
	for after := ""; ; {
		batch := make([]*workshop.Job, 0, chunk)
		err := s.cfg.DB.View(func(tx *store.Tx) error {
			return tx.EachJobAfter(after, func(j *workshop.Job) bool {
				batch = append(batch, j)
				return len(batch) < chunk
			})
		})
		if err != nil {
			return err
		}
		for _, j := range batch {
			if !fn(j) {
				return nil
			}
		}
		if len(batch) < chunk {
			return nil
		}
		after = batch[len(batch)-1].ID
	}
}

func (s *Server) seatQR(c *fiber.Ctx) error {
	n, err := seatParam(c)
	if err != nil {
		return err
	}
	seat, err := s.cfg.Seats.Get(n)
	if err != nil {
		return err
	}
	png, err := qrcode.Encode(s.seatView(c, seat).JoinURL, qrcode.Medium, 320)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Type("png").Send(png)
}

// outputView is one output in the gallery.
type outputView struct {
	JobID     string    `json:"job_id"`
	JobNumber uint64    `json:"job_number"`
	UserID    string    `json:"user_id"`
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	MIME      string    `json:"mime"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

func outputsOfJob(j *workshop.Job) []outputView {
	var out []outputView
	if j.Result == nil {
		return out
	}
	at := j.CreatedAt
	if j.CompletedAt != nil {
		at = *j.CompletedAt
	}
	for _, o := range j.Result.Outputs {
		out = append(out, outputView{JobID: j.ID, JobNumber: j.Seq, UserID: j.UserID, Name: o.Name, URL: "/api/jobs/" + j.ID + "/outputs/" + url.PathEscape(o.Name),
			MIME: store.ContentType(o.Name), Size: o.Size, CreatedAt: at})
	}
	return out
}

// listOutputs is the gallery: every participant's outputs (or one's, with
// user_id), in pages of about limit.
//
//	order=newest (default)  newest job first
//	order=oldest            oldest job first
//	order=seat              by seat number, each seat's newest first
//
// before is the cursor the previous page answered as next.
func (s *Server) listOutputs(c *fiber.Ctx) error {
	limit := min(max(c.QueryInt("limit", 60), 1), 500)
	user := c.Query("user_id")
	if user != "" && !workshop.ValidUserID(user) {
		return workshop.Errorf(workshop.EINVALID, "user_id %q is not a valid participant id", user)
	}
	var walk func(cursor string, fn func(j *workshop.Job, resume string) bool) error
	switch order := c.Query("order", "newest"); {
	case order == "newest" || (order == "seat" && user != ""):
		walk = func(cursor string, fn func(*workshop.Job, string) bool) error {
			return s.newestDone(user, cursor, func(j *workshop.Job) bool { return fn(j, j.ID) })
		}
	case order == "oldest":
		walk = func(cursor string, fn func(*workshop.Job, string) bool) error { return s.oldestDone(user, cursor, fn) }
	case order == "seat":
		walk = s.doneBySeat
	default:
		return workshop.Errorf(workshop.EINVALID, "order %q: want newest, oldest or seat", order)
	}
	out := []outputView{}
	next, resumed := "", ""
	err := walk(c.Query("before"), func(j *workshop.Job, resume string) bool {
		if j.Result == nil || len(j.Result.Outputs) == 0 {
			return true
		}
		if len(out) >= limit {
			next = resumed // there is more after this page
			return false
		}
		out = append(out, outputsOfJob(j)...)
		resumed = resume
		return true
	})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"outputs": out, "next": next})
}

// newestDone walks a participant's (or everyone's) completed jobs newest
// first, from before cursor.
func (s *Server) newestDone(user, cursor string, fn func(*workshop.Job) bool) error {
	for {
		jobs, nx, err := s.cfg.Queue.List(sched.ListFilter{UserID: user, Status: workshop.StatusCompleted, Cursor: cursor, Limit: 100})
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if !fn(j) {
				return nil
			}
		}
		if nx == "" {
			return nil
		}
		cursor = nx
	}
}

// oldestDone walks completed jobs oldest first, after cursor. Everyone's
// come from the store in key order; one participant's are few enough to
// gather newest first and turn around.
func (s *Server) oldestDone(user, cursor string, fn func(*workshop.Job, string) bool) error {
	if cursor != "" {
		if _, err := uuid.Parse(cursor); err != nil {
			return workshop.Errorf(workshop.EINVALID, "cursor %q is not one this server gave", cursor)
		}
	}
	if user == "" {
		return s.cfg.DB.View(func(tx *store.Tx) error {
			return tx.EachJobAfter(cursor, func(j *workshop.Job) bool {
				return j.Status != workshop.StatusCompleted || fn(j, j.ID)
			})
		})
	}
	var jobs []*workshop.Job
	if err := s.newestDone(user, "", func(j *workshop.Job) bool { jobs = append(jobs, j); return true }); err != nil {
		return err
	}
	slices.Reverse(jobs)
	for _, j := range jobs {
		if j.ID > cursor && !fn(j, j.ID) {
			return nil
		}
	}
	return nil
}

// doneBySeat walks completed jobs seat by seat (by number), each seat's
// newest first; its cursor is "seat:job id".
func (s *Server) doneBySeat(cursor string, fn func(*workshop.Job, string) bool) error {
	from, after := 0, ""
	if cursor != "" {
		n, id, ok := strings.Cut(cursor, ":")
		seat, err := strconv.Atoi(n)
		if !ok || err != nil || seat < 1 {
			return workshop.Errorf(workshop.EINVALID, "cursor %q is not one this server gave", cursor)
		}
		from, after = seat, id
	}
	all, err := s.cfg.Seats.List()
	if err != nil {
		return err
	}
	for _, seat := range all {
		if seat.Number < from {
			continue
		}
		cur := ""
		if seat.Number == from {
			cur = after
		}
		more := true
		prefix := strconv.Itoa(seat.Number) + ":"
		err := s.newestDone(workshop.UserID(seat.Number), cur, func(j *workshop.Job) bool {
			more = fn(j, prefix+j.ID)
			return more
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

const settingSpotlight = "spotlight"

func (s *Server) getSpotlight(c *fiber.Ctx) error {
	var cur json.RawMessage
	s.cfg.DB.View(func(tx *store.Tx) error {
		_, err := tx.Setting(settingSpotlight, &cur)
		return err
	})
	if len(cur) == 0 {
		cur = json.RawMessage("{}")
	}
	return c.Type("json").Send(cur)
}

func (s *Server) setSpotlight(c *fiber.Ctx) error {
	var req struct {
		JobID string `json:"job_id"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.JobID == "" || req.Name == "" {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"job_id\", \"name\"} of an output")
	}
	job, err := s.cfg.Queue.Get(req.JobID)
	if err != nil {
		return err
	}
	var pick *outputView
	for _, o := range outputsOfJob(job) {
		if o.Name == req.Name {
			pick = &o
		}
	}
	if pick == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "job %s has no output %q", req.JobID, req.Name)
	}
	noteJob(c, "put "+pick.Name+" of", job, " on the projector")
	return s.putSpotlight(c, pick)
}

func (s *Server) clearSpotlight(c *fiber.Ctx) error { return s.putSpotlight(c, nil) }

func (s *Server) putSpotlight(c *fiber.Ctx, o *outputView) error {
	var v any = map[string]any{}
	if o != nil {
		v = o
	}
	if err := s.cfg.DB.Write(c.UserContext(), func(tx *store.Tx) error { return tx.PutSetting(settingSpotlight, v) }); err != nil {
		return err
	}
	data, _ := json.Marshal(v)
	s.cfg.Queue.Events().Publish(sched.Event{Type: sched.EventSpotlight, Data: data})
	return c.Type("json").Send(data)
}

// Workshop workflows: the JSON files every participant sees.

func (s *Server) workflowPath(raw string) (string, error) {
	if s.cfg.WorkflowsDir == "" {
		return "", workshop.Errorf(workshop.ENOTFOUND, "no workflows folder")
	}
	name, err := url.PathUnescape(raw) // the route's parameter is as sent
	if err != nil || !strings.HasSuffix(name, ".json") || !store.SafeName(name) {
		return "", workshop.Errorf(workshop.EINVALID, "a workflow name is one file name ending in .json")
	}
	return filepath.Join(s.cfg.WorkflowsDir, name), nil
}

func (s *Server) listWorkflows(c *fiber.Ctx) error {
	def, err := s.defaultWorkflow()
	if err != nil {
		return err
	}
	out := []fiber.Map{}
	entries, _ := os.ReadDir(s.cfg.WorkflowsDir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			out = append(out, fiber.Map{"name": e.Name(), "size": fi.Size(), "modified": fi.ModTime().UTC(), "default": e.Name() == def})
		}
	}
	return c.JSON(fiber.Map{"workflows": out})
}

func (s *Server) defaultWorkflow() (string, error) {
	var def string
	err := s.cfg.DB.View(func(tx *store.Tx) (err error) {
		def, err = tx.DefaultWorkflow()
		return err
	})
	return def, err
}

// markDefault is PUT /api/workflows/{name}/default: the workflow a
// participant's page opens the first time (one at most).
func (s *Server) markDefault(c *fiber.Ctx) error {
	p, err := s.workflowPath(c.Params("name"))
	if err != nil {
		return err
	}
	name := filepath.Base(p)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return workshop.Errorf(workshop.ENOTFOUND, "no workflow %q", name)
	}
	if err := s.cfg.DB.Write(c.UserContext(), func(tx *store.Tx) error { return tx.PutDefaultWorkflow(name) }); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"default": name})
}

// unmarkDefault is DELETE /api/workflows/{name}/default.
func (s *Server) unmarkDefault(c *fiber.Ctx) error {
	p, err := s.workflowPath(c.Params("name"))
	if err != nil {
		return err
	}
	if err := s.clearDefault(c.UserContext(), filepath.Base(p)); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"default": nil})
}

// clearDefault unmarks name if it is the default workflow.
func (s *Server) clearDefault(ctx context.Context, name string) error {
	return s.cfg.DB.Write(ctx, func(tx *store.Tx) error {
		if def, err := tx.DefaultWorkflow(); err != nil || def != name {
			return err
		}
		return tx.PutDefaultWorkflow("")
	})
}

func (s *Server) putWorkflow(c *fiber.Ctx) error {
	p, err := s.workflowPath(c.Params("name"))
	if err != nil {
		return err
	}
	body := c.Body()
	var probe map[string]any
	if err := json.Unmarshal(body, &probe); err != nil {
		return workshop.Errorf(workshop.EINVALID, "a workflow must be a JSON object: %v", err)
	}
	if len(body) > workshop.MaxWorkflowSize {
		return workshop.Errorf(workshop.ETOOLARGE, "a workflow is at most %d bytes", workshop.MaxWorkflowSize)
	}
	tmp := p + ".part"
	if err := os.WriteFile(tmp, body, 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"name": filepath.Base(p), "size": len(body)})
}

func (s *Server) deleteWorkflow(c *fiber.Ctx) error {
	p, err := s.workflowPath(c.Params("name"))
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if os.IsNotExist(err) {
			return workshop.Errorf(workshop.ENOTFOUND, "no workflow %q", filepath.Base(p))
		}
		return err
	}
	if err := s.clearDefault(c.UserContext(), filepath.Base(p)); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"removed": filepath.Base(p)})
}

func (s *Server) listActivity(c *fiber.Ctx) error {
	if s.cfg.ActivityList == nil {
		return c.JSON(fiber.Map{"entries": []any{}})
	}
	entries, err := s.cfg.ActivityList(c.Query("kind"), c.Query("q"), c.QueryInt("limit", 200))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"entries": entries})
}

// metrics summarises the workshop: the queue's report, from running
// totals, so it costs the same with a million jobs stored as with ten.
func (s *Server) metrics(c *fiber.Ctx) error {
	now := time.Now()
	r, err := s.cfg.Queue.Report(now)
	if err != nil {
		return err
	}
	span := now.Sub(r.First).Seconds()
	instOut := []fiber.Map{}
	for _, in := range r.Instances {
		frac := 0.0
		if span > 0 {
			frac = min(in.Busy.Seconds()/span, 1)
		}
		instOut = append(instOut, fiber.Map{"id": in.ID, "busy_fraction": frac, "jobs_done": in.Jobs})
	}
	partOut := []fiber.Map{}
	for _, p := range r.Participants {
		partOut = append(partOut, fiber.Map{"user_id": p.UserID, "jobs": p.Jobs, "gpu_seconds": p.GPU.Seconds()})
	}
	timeline := []fiber.Map{}
	for _, p := range r.Timeline {
		timeline = append(timeline, fiber.Map{"t": p.T, "completed": p.Completed, "pending": p.Pending, "running": p.Running})
	}
	return c.JSON(fiber.Map{
		"jobs_done": r.JobsDone, "jobs_failed": r.JobsFailed,
		"wait_seconds": percentiles(&r.Wait), "run_seconds": percentiles(&r.Run),
		"instances": instOut, "participants": partOut, "timeline": timeline,
	})
}

func percentiles(h *store.Histogram) fiber.Map {
	p50, ok := h.Quantile(0.5)
	if !ok {
		return fiber.Map{"p50": nil, "p90": nil}
	}
	p90, _ := h.Quantile(0.9)
	return fiber.Map{"p50": p50.Seconds(), "p90": p90.Seconds()}
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// exportCSV streams one line per job.
func (s *Server) exportCSV(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="workshop-jobs.csv"`)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		cw := csv.NewWriter(w)
		cw.Write([]string{"id", "number", "user_id", "status", "priority", "created_at", "started_at", "completed_at", "wait_seconds", "run_seconds", "attempts", "worker", "outputs", "error"})
		s.eachJob(func(j *workshop.Job) bool {
			wait, run := "", ""
			if j.StartedAt != nil {
				wait = strconv.FormatFloat(j.StartedAt.Sub(j.CreatedAt).Seconds(), 'f', 1, 64)
				if j.CompletedAt != nil {
					run = strconv.FormatFloat(j.CompletedAt.Sub(*j.StartedAt).Seconds(), 'f', 1, 64)
				}
			}
			var names []string
			if j.Result != nil {
				for _, o := range j.Result.Outputs {
					names = append(names, o.Name)
				}
			}
			errMsg := ""
			if j.Error != nil && j.Status != workshop.StatusCompleted {
				errMsg = j.Error.Message
			}
			cw.Write([]string{j.ID, strconv.FormatUint(j.Seq, 10), j.UserID, string(j.Status), strconv.Itoa(j.Priority),
				j.CreatedAt.UTC().Format(time.RFC3339), fmtTime(j.StartedAt), fmtTime(j.CompletedAt), wait, run,
				strconv.Itoa(j.Attempts), j.Worker, strings.Join(names, " "), errMsg})
			return true
		})
		cw.Flush()
	})
	return nil
}

// exportZip streams every output, one folder per participant.
func (s *Server) exportZip(c *fiber.Ctx) error {
	var jobs []*workshop.Job
	s.eachJob(func(j *workshop.Job) bool {
		if j.Result != nil && len(j.Result.Outputs) > 0 {
			jobs = append(jobs, j)
		}
		return true
	})
	names := zipNames{seats: s.seatNames(), taken: map[string]bool{}}
	c.Set(fiber.HeaderContentType, "application/zip")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="workshop-outputs.zip"`)
	files := s.cfg.Files
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		zw := zip.NewWriter(w)
		for _, j := range jobs {
			for _, o := range j.Result.Outputs {
				f, _, err := files.Open(store.Outputs, j.UserID, j.ID, o.Name)
				if err != nil {
					continue
				}
				// Images are compressed already: store, don't deflate.
				hw, err := zw.CreateHeader(&zip.FileHeader{Name: names.of(j, o.Name), Method: zip.Store, Modified: j.CreatedAt})
				if err == nil {
					io.Copy(hw, f)
				}
				f.Close()
			}
		}
		zw.Close()
	})
	return nil
}

// seatNames maps participants to their seats' display names.
func (s *Server) seatNames() map[string]string {
	out := map[string]string{}
	if s.cfg.Seats == nil {
		return out
	}
	all, _ := s.cfg.Seats.List()
	for _, seat := range all {
		out[workshop.UserID(seat.Number)] = seat.Name
	}
	return out
}

// zipNames gives the entries of the outputs zip distinct, readable names:
// "seat-007 Alice/job-0042_ComfyUI_00001_.png", by seat and job number
// (job ids share their first characters for a minute), with "-2", "-3"
// before the extension should two still meet.
type zipNames struct {
	seats map[string]string
	taken map[string]bool
}

func (z zipNames) of(j *workshop.Job, file string) string {
	folder := safeZipPart(j.UserID)
	if n, ok := workshop.SeatOf(j.UserID); ok {
		folder = fmt.Sprintf("seat-%03d", n)
		if name := safeZipPart(z.seats[j.UserID]); name != "" {
			folder += " " + name
		}
	}
	job := j.ID
	if j.Seq > 0 {
		job = fmt.Sprintf("job-%04d", j.Seq)
	}
	name := folder + "/" + job + "_" + file
	ext := path.Ext(name)
	for i := 2; z.taken[name]; i++ {
		name = fmt.Sprintf("%s/%s_%s-%d%s", folder, job, strings.TrimSuffix(file, ext), i, ext)
	}
	z.taken[name] = true
	return name
}

// safeZipPart keeps letters, digits and a few marks of a name, so a seat
// name makes a folder name on every system.
func safeZipPart(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), strings.ContainsRune(" -_.", r):
			return r
		}
		return '_'
	}, s)
	s = strings.Trim(s, " .")
	if len(s) > 40 {
		s = strings.TrimSpace(s[:40])
	}
	return strings.ToValidUTF8(s, "")
}

// backup streams a consistent copy of the store.
func (s *Server) backup(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "application/octet-stream")
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="workshop.db"`)
	db, log := s.cfg.DB, s.log
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		if _, err := db.Backup(w); err != nil {
			log.Error("backup failed", "err", err)
		}
	})
	return nil
}

// prune deletes finished jobs created before a cutoff, with their outputs,
// and uploads as old. The cutoff is an age (older_than) or a time (before);
// dry_run only counts. The answer names the cutoff, so a count can be
// followed by a deletion of exactly what was counted.
func (s *Server) prune(c *fiber.Ctx) error {
	var req struct {
		OlderThan string    `json:"older_than"`
		Before    time.Time `json:"before"`
		DryRun    bool      `json:"dry_run"`
	}
	const shape = `the body must be {"older_than": "72h"} or {"before": "2026-01-02T15:04:05Z"}, with "dry_run": true to count only`
	if err := json.Unmarshal(c.Body(), &req); err != nil || (req.OlderThan == "") == req.Before.IsZero() {
		return workshop.Errorf(workshop.EINVALID, shape)
	}
	cutoff := req.Before
	if req.OlderThan != "" {
		d, err := time.ParseDuration(req.OlderThan)
		if err != nil || d < 0 {
			return workshop.Errorf(workshop.EINVALID, "older_than %q: want a duration like 72h", req.OlderThan)
		}
		cutoff = time.Now().Add(-d)
	}
	answer := func(jobs, inputs int) error {
		return c.JSON(fiber.Map{"dry_run": req.DryRun, "before": cutoff.UTC(), "jobs": jobs, "inputs": inputs})
	}
	if req.DryRun {
		noteNothing(c)
		jobs, err := s.cfg.Queue.PruneCount(cutoff)
		if err != nil {
			return err
		}
		inputs, err := s.cfg.Files.CountOlder(store.Inputs, cutoff)
		if err != nil {
			return err
		}
		return answer(jobs, inputs)
	}
	pruned, err := s.cfg.Queue.Prune(c.UserContext(), cutoff)
	for _, p := range pruned {
		s.cfg.Files.RemoveGroup(store.Outputs, p.UserID, p.ID)
	}
	if err != nil {
		return err
	}
	inputs, err := s.cfg.Files.PruneKind(store.Inputs, cutoff)
	if err != nil {
		return err
	}
	note(c, activity.Entry{Action: fmt.Sprintf("pruned %s and %s from before %s",
		words.Plural(len(pruned), "finished job"), words.Plural(inputs, "upload"), cutoff.UTC().Format("2006-01-02 15:04 UTC"))})
	return answer(len(pruned), inputs)
}
