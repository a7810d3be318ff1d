package api

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/internal/words"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// The instructor's job desk: one job in full, a job by its number, and
// cancelling many at once.

// jobDetail is everything about one job on one page: the job with its
// prompt, whose seat it is, its outputs, its waits, and its history from
// the activity log (submitted, each requeue with the instance it was lost
// on, how it ended).
func (s *Server) jobDetail(c *fiber.Ctx) error {
	job, err := s.cfg.Queue.Get(c.Params("id"))
	if err != nil {
		return err
	}
	outputs := outputsOfJob(job)
	if outputs == nil {
		outputs = []outputView{}
	}
	out := fiber.Map{"job": job, "outputs": outputs, "seat": nil, "history": []activity.Entry{}}
	if n, ok := workshop.SeatOf(job.UserID); ok && s.cfg.Seats != nil {
		if seat, err := s.cfg.Seats.Get(n); err == nil {
			out["seat"] = fiber.Map{"seat": seat.Number, "name": seat.Name}
		}
	}
	if job.StartedAt != nil {
		out["wait_seconds"] = job.StartedAt.Sub(job.CreatedAt).Seconds()
		if job.CompletedAt != nil {
			out["run_seconds"] = job.CompletedAt.Sub(*job.StartedAt).Seconds()
		}
	}
	if s.cfg.JobActivity != nil {
		h, err := s.cfg.JobActivity(job.ID, job.CreatedAt, 200)
		if err != nil {
			return err
		}
		slices.Reverse(h) // oldest first: the job's story
		out["history"] = h
	}
	return c.JSON(out)
}

// jobByNumber answers GET /api/jobs?number=N as a list of that one job (or
// none), so a search for "#42" finds a job long gone from the lists.
func (s *Server) jobByNumber(c *fiber.Ctx, raw string) error {
	n, err := strconv.ParseUint(strings.TrimPrefix(raw, "#"), 10, 64)
	if err != nil || n == 0 {
		return workshop.Errorf(workshop.EINVALID, "number must be a job number like 42")
	}
	jobs := []*workshop.Job{}
	var id string
	err = s.cfg.DB.View(func(tx *store.Tx) error {
		j, err := tx.JobByNumber(n)
		if err == nil {
			id = j.ID
		}
		return err
	})
	if err != nil && workshop.ErrorCode(err) != workshop.ENOTFOUND {
		return err
	}
	if id != "" {
		j, err := s.cfg.Queue.Get(id)
		if err != nil {
			return err
		}
		j.Workflow = nil
		jobs = append(jobs, j)
	}
	return c.JSON(fiber.Map{"jobs": jobs, "next_cursor": ""})
}

// cancelMany is POST /api/queue/cancel {user_id | seat, status, ids, dry_run}:
// cancel every active job of one participant ("everything of seat 7"),
// every pending job ("clear pending"), or every running one. status is
// pending, running or active (both; the default when a participant is
// named). It answers what it cancelled (or, with dry_run, would cancel),
// each with the status it had, so the page can confirm with numbers; ids
// then limits the real change to the jobs the confirmation showed.
func (s *Server) cancelMany(c *fiber.Ctx) error {
	var req struct {
		UserID string   `json:"user_id"`
		Seat   int      `json:"seat"`
		Status string   `json:"status"`
		IDs    []string `json:"ids"`
		DryRun bool     `json:"dry_run"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return workshop.Errorf(workshop.EINVALID, `the body must be {"user_id" or "seat", "status": "pending", "running" or "active", "dry_run"?}`)
	}
	if req.Seat != 0 {
		if req.UserID != "" && req.UserID != workshop.UserID(req.Seat) {
			return workshop.Errorf(workshop.EINVALID, "seat %d and user_id %q name different participants", req.Seat, req.UserID)
		}
		if req.Seat < 0 {
			return workshop.Errorf(workshop.EINVALID, "seat must be a positive number")
		}
		req.UserID = workshop.UserID(req.Seat)
	}
	if len(req.IDs) > sched.MaxListLimit*10 {
		return workshop.Errorf(workshop.EINVALID, "at most %d ids at once", sched.MaxListLimit*10)
	}
	sel := sched.Selector{UserID: req.UserID, IDs: req.IDs}
	switch req.Status {
	case "pending", "running":
		sel.Status = workshop.JobStatus(req.Status)
	case "active":
	case "":
		if req.UserID == "" {
			// Never everything by accident: clearing the room is said out loud.
			return workshop.Errorf(workshop.EINVALID, `name a participant (user_id or seat) or a status ("pending", "running" or "active" for both)`)
		}
	default:
		return workshop.Errorf(workshop.EINVALID, `status %q: want "pending", "running" or "active"`, req.Status)
	}
	var picked []sched.Picked
	var err error
	if req.DryRun {
		picked, err = s.cfg.Queue.Select(sel)
	} else {
		picked, err = s.cfg.Queue.CancelSelected(c.UserContext(), sel, "cancelled by the instructor")
	}
	if err != nil {
		return err
	}
	counts := map[workshop.JobStatus]int{workshop.StatusPending: 0, workshop.StatusRunning: 0}
	for _, p := range picked {
		counts[p.Status]++
	}
	if req.DryRun {
		noteNothing(c)
	} else {
		note(c, activity.Entry{Action: "cancelled " + manyWords(len(picked), sel), UserID: sel.UserID})
	}
	if picked == nil {
		picked = []sched.Picked{}
	}
	return c.JSON(fiber.Map{"dry_run": req.DryRun, "count": len(picked), "counts": counts, "jobs": picked})
}

// manyWords is "3 pending jobs of seat 7", "every running job (12)".
func manyWords(n int, sel sched.Selector) string {
	kind := "job"
	if sel.Status != "" {
		kind = string(sel.Status) + " job"
	}
	if sel.UserID != "" {
		return words.Plural(n, kind) + " of " + userWords(sel.UserID)
	}
	return fmt.Sprintf("every %s (%d)", kind, n)
}
