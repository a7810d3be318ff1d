package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/internal/jsonscan"
	"github.com/comfy-workshop/workshop/sched"
)

// DecodeSubmission parses the body of POST /api/jobs in one pass; the
// queue checks the values. Any Content-Type is accepted: some ComfyUI
// clients send JSON without one. Field names are matched exactly.
func DecodeSubmission(body []byte) (sched.Submission, error) {
	var sub sched.Submission
	r := jsonscan.New(body)
	if r.Peek() != '{' {
		return sub, workshop.Errorf(workshop.EINVALID, "the body must be a JSON object with user_id and workflow")
	}
	hasUser := false
	err := r.Object(func(key []byte) error {
		var err error
		switch string(key) {
		case "user_id":
			if hasUser = !r.Null(); !hasUser {
				return nil
			}
			if r.Peek() != '"' {
				return workshop.Errorf(workshop.EINVALID, "user_id must be a string")
			}
			sub.UserID, err = r.String()
		case "workflow":
			sub.Workflow, err = r.RawCopy() // the body's buffer is reused after the request
		case "priority":
			if sub.Priority = nil; r.Null() {
				return nil
			}
			if p := r.Peek(); p != '-' && (p < '0' || p > '9') {
				return workshop.Errorf(workshop.EINVALID, "priority must be a number")
			}
			var n int
			n, err = r.Int()
			sub.Priority = &n
		case "metadata":
			sub.Metadata, err = r.RawCopy()
		}
		return err
	})
	if err == nil {
		err = r.End()
	}
	var syntax *jsonscan.SyntaxError
	if errors.As(err, &syntax) {
		return sched.Submission{}, workshop.Errorf(workshop.EINVALID, "the body is not a valid job: %v", err)
	}
	if err != nil {
		return sched.Submission{}, err
	}
	if !hasUser {
		return sched.Submission{}, workshop.Errorf(workshop.EINVALID, "user_id is required")
	}
	return sub, nil
}

// jsonProblem turns encoding/json's errors into something a caller can act on.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field + " must be " + jsonKind(te.Type.Kind().String())
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "ptr", "int":
		return "a number"
	case "string":
		return "a string"
	}
	return "of another type"
}

func (s *Server) submitJob(c *fiber.Ctx) error {
	sub, err := DecodeSubmission(c.Body())
	if err != nil {
		return err
	}
	job, err := s.cfg.Queue.Submit(c.UserContext(), sub)
	if err != nil {
		return err
	}
	job.Workflow = nil // the caller just sent it; GET /api/jobs/{id} has it
	return c.Status(fiber.StatusCreated).JSON(job)
}

func (s *Server) getJob(c *fiber.Ctx) error {
	job, err := s.cfg.Queue.Get(c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(job)
}

func (s *Server) listJobs(c *fiber.Ctx) error {
	if n := c.Query("number"); n != "" {
		return s.jobByNumber(c, n)
	}
	f := sched.ListFilter{
		UserID: c.Query("user_id"),
		Status: workshop.JobStatus(c.Query("status")),
		Cursor: c.Query("cursor"),
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return workshop.Errorf(workshop.EINVALID, "limit must be a positive number")
		}
		f.Limit = n
	}
	jobs, next, err := s.cfg.Queue.List(f)
	if err != nil {
		return err
	}
	if jobs == nil {
		jobs = []*workshop.Job{}
	}
	return c.JSON(fiber.Map{"jobs": jobs, "next_cursor": next})
}

func (s *Server) cancelJob(c *fiber.Ctx) error {
	job, err := s.cfg.Queue.Cancel(c.UserContext(), c.Params("id"), "cancelled by the instructor")
	if err != nil {
		return err
	}
	noteJob(c, "cancelled", job, "")
	return c.JSON(job)
}

func (s *Server) setPriority(c *fiber.Ctx) error {
	var req struct {
		Priority *int `json:"priority"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.Priority == nil {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"priority\": 0..3}")
	}
	job, err := s.cfg.Queue.SetPriority(c.UserContext(), c.Params("id"), *req.Priority)
	if err != nil {
		return err
	}
	noteJob(c, "gave", job, fmt.Sprintf(" priority %d", job.Priority))
	return c.JSON(job)
}

func (s *Server) pause(c *fiber.Ctx) error {
	if err := s.cfg.Queue.Pause(c.UserContext()); err != nil {
		return err
	}
	return c.JSON(s.status())
}

func (s *Server) resume(c *fiber.Ctx) error {
	if err := s.cfg.Queue.Resume(c.UserContext()); err != nil {
		return err
	}
	return c.JSON(s.status())
}

func (s *Server) setMode(c *fiber.Ctx) error {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || req.Mode == "" {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"mode\": \"fifo\" or \"round-robin\"}")
	}
	mode, err := workshop.ParseQueueMode(req.Mode)
	if err != nil {
		return err
	}
	if err := s.cfg.Queue.SetMode(c.UserContext(), mode); err != nil {
		return err
	}
	return c.JSON(s.status())
}

// queueStatus is the queue's summary with the GPU instances in it.
func (s *Server) queueStatus(c *fiber.Ctx) error {
	return c.JSON(s.status())
}

func (s *Server) status() fiber.Map {
	st := s.cfg.Queue.Status()
	return fiber.Map{"mode": st.Mode, "paused": st.Paused, "counts": st.Counts, "workers": s.workers()}
}
