package api

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
)

// The activity log says what the instructor did in plain words ("drained
// GPU demo-gpu/0", "cancelled job #42 of seat 7"), not the route they
// called. A handler that knows more than its route (a job's number) leaves
// its entry with note; the others are worded from the route here. A route
// with neither is logged as the route, so nothing goes unrecorded.

const (
	localNote  = "activity-note"
	localActor = "activity-actor"
)

// note sets the activity entry of this request (Actor and Kind are filled
// in when it is recorded).
func note(c *fiber.Ctx, e activity.Entry) { c.Locals(localNote, &e) }

// noteNothing keeps a request that changed nothing (a dry run) out of the log.
func noteNothing(c *fiber.Ctx) { c.Locals(localNote, (*activity.Entry)(nil)) }

// noteJob words an action on one job: "cancelled job #42 of seat 7".
func noteJob(c *fiber.Ctx, verb string, j *workshop.Job, rest string) {
	note(c, activity.Entry{Action: verb + " " + jobWords(j) + rest, JobID: j.ID, JobNumber: j.Seq, UserID: j.UserID})
}

// jobWords is how people name a job: "job #42 of seat 7".
func jobWords(j *workshop.Job) string {
	return fmt.Sprintf("job #%d of %s", j.Seq, userWords(j.UserID))
}

// userWords is "seat 7", or the participant id of someone without a seat.
func userWords(user string) string {
	if n, ok := workshop.SeatOf(user); ok {
		return fmt.Sprintf("seat %d", n)
	}
	return user
}

// routeWords words the admin actions whose route says it all.
var routeWords = map[string]func(c *fiber.Ctx) string{
	"POST /api/queue/pause":  func(*fiber.Ctx) string { return "paused the queue" },
	"POST /api/queue/resume": func(*fiber.Ctx) string { return "resumed the queue" },
	"PUT /api/queue/mode": func(c *fiber.Ctx) string {
		var b struct{ Mode string }
		json.Unmarshal(c.Body(), &b)
		if b.Mode == string(workshop.ModeFIFO) {
			return "switched the queue to first come, first served"
		}
		return "switched the queue to round-robin"
	},
	"POST /api/workers/:agent/:instance/drain": func(c *fiber.Ctx) string {
		return "drained GPU " + c.Params("agent") + "/" + c.Params("instance")
	},
	"POST /api/workers/:agent/:instance/undrain": func(c *fiber.Ctx) string {
		return "gave GPU " + c.Params("agent") + "/" + c.Params("instance") + " new jobs again"
	},
	"POST /api/workers/:agent/:instance/put-back": func(c *fiber.Ctx) string {
		return "put GPU " + c.Params("agent") + "/" + c.Params("instance") + " back to work"
	},
	"DELETE /api/workers/:agent/:instance": func(c *fiber.Ctx) string {
		return "removed the disconnected GPU " + c.Params("agent") + "/" + c.Params("instance")
	},
	"POST /api/seats/:n/signout": func(c *fiber.Ctx) string { return "signed seat " + c.Params("n") + " out" },
	"POST /api/agents": func(c *fiber.Ctx) string {
		var b struct{ Name string }
		json.Unmarshal(c.Body(), &b)
		return "made a token for GPU host " + b.Name
	},
	"DELETE /api/agents/:name":      func(c *fiber.Ctx) string { return "revoked the token of GPU host " + c.Params("name") },
	"DELETE /api/seats/:n":          func(c *fiber.Ctx) string { return "removed seat " + c.Params("n") },
	"DELETE /api/announcements/:id": func(*fiber.Ctx) string { return "withdrew an announcement" },
	"PUT /api/admin/password":       func(*fiber.Ctx) string { return "changed the admin password" },
	"DELETE /api/spotlight":         func(*fiber.Ctx) string { return "took the spotlight off the projector" },
	"PUT /api/workflows/:name":      func(c *fiber.Ctx) string { return "published the workflow " + c.Params("name") },
	"DELETE /api/workflows/:name":   func(c *fiber.Ctx) string { return "withdrew the workflow " + c.Params("name") },
	"POST /api/preflight":           func(*fiber.Ctx) string { return "ran the preflight check" },
	"PUT /api/sheet":                func(*fiber.Ctx) string { return "updated the QR sheet" },
	"POST /api/announcements": func(c *fiber.Ctx) string {
		var b struct{ Text string }
		json.Unmarshal(c.Body(), &b)
		return "announced: " + clip(strings.TrimSpace(b.Text), 120)
	},
}

// adminEntry is the activity entry of a successful admin change; false
// for one that changed nothing.
func (s *Server) adminEntry(c *fiber.Ctx) (activity.Entry, bool) {
	var e activity.Entry
	if n, ok := c.Locals(localNote).(*activity.Entry); ok {
		if n == nil {
			return e, false
		}
		e = *n
	} else if words, ok := routeWords[c.Method()+" "+c.Route().Path]; ok {
		e.Action = words(c)
	} else {
		e.Action = c.Method() + " " + strings.TrimPrefix(c.Path(), "/api")
	}
	e.Actor, e.Kind = s.actor(c), "admin"
	return e, true
}

// actor names who acted: the name given at sign-in, "Instructor" for a
// session without one, "admin token" for a bearer token (scripts, the CLI).
func (s *Server) actor(c *fiber.Ctx) string {
	if a, ok := c.Locals(localActor).(string); ok && a != "" {
		return a
	}
	return "admin token"
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
