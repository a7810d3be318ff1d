package api

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/tunnel"
)

// Workers is what the API needs of the dispatcher.
type Workers interface {
	Workers() []dispatch.WorkerStatus
	Drain(ctx context.Context, id string, on bool) (dispatch.WorkerStatus, error)
	PutBack(ctx context.Context, id string) (dispatch.WorkerStatus, error)
	Forget(ctx context.Context, id string) error
	Preflight(ctx context.Context, workflows map[string]comfy.Needs) []dispatch.PreflightReport
}

// preflight checks every connected instance against the workshop
// workflows; ok is false when anything is missing anywhere, or no GPU
// instance is connected.
func (s *Server) preflight(c *fiber.Ctx) error {
	if s.cfg.Workers == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "no GPU instances")
	}
	needs := map[string]comfy.Needs{}
	unreadable := map[string]string{}
	entries, _ := os.ReadDir(s.cfg.WorkflowsDir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.cfg.WorkflowsDir, e.Name()))
		if err == nil {
			needs[e.Name()], err = comfy.WorkflowNeeds(raw)
		}
		if err != nil {
			unreadable[e.Name()] = err.Error()
		}
	}
	reports := s.cfg.Workers.Preflight(c.UserContext(), needs)
	ok := len(reports) > 0 && len(unreadable) == 0
	for _, r := range reports {
		ok = ok && r.OK
	}
	return c.JSON(fiber.Map{"ok": ok, "instances": reports, "unreadable_workflows": unreadable})
}

// agentTunnel upgrades GET /tunnel to a GPU agent's yamux session. The
// token is checked before anything is multiplexed; the connection is then
// hijacked from fasthttp, so no server timeout applies to it.
func (s *Server) agentTunnel(c *fiber.Ctx) error {
	if s.cfg.Tunnel == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "this server takes no GPU agents")
	}
	id, err := s.cfg.Tunnel.Authenticate(c.Get(fiber.HeaderAuthorization))
	if err != nil {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="gpu-agent"`)
		s.log.Warn("GPU agent refused: bad token", "remote", c.IP())
		return workshop.Errorf(workshop.EUNAUTHORIZED, "invalid or missing agent token")
	}
	if !tunnel.IsUpgradeRequest(c.Get(fiber.HeaderConnection), c.Get(fiber.HeaderUpgrade)) {
		c.Set(fiber.HeaderConnection, "Upgrade")
		c.Set(fiber.HeaderUpgrade, tunnel.UpgradeProtocol)
		return c.Status(fiber.StatusUpgradeRequired).JSON(fiber.Map{"error": fiber.Map{"code": "upgrade_required", "message": "upgrade to " + tunnel.UpgradeProtocol + " required"}})
	}
	srv := s.cfg.Tunnel
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(conn net.Conn) {
		if err := tunnel.WriteUpgradeResponse(conn); err != nil {
			return
		}
		_ = srv.ServeAgent(context.Background(), conn, id)
	})
	return nil
}

func (s *Server) workers() []dispatch.WorkerStatus {
	if s.cfg.Workers == nil {
		return []dispatch.WorkerStatus{}
	}
	return s.cfg.Workers.Workers()
}

func (s *Server) listWorkers(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"workers": s.workers()})
}

func (s *Server) drainWorker(on bool) fiber.Handler {
	return s.onWorker(func(ctx context.Context, id string) (dispatch.WorkerStatus, error) {
		return s.cfg.Workers.Drain(ctx, id, on)
	})
}

// putBackWorker returns an instance that was set aside (it kept failing
// jobs) to service.
func (s *Server) putBackWorker(c *fiber.Ctx) error {
	return s.onWorker(func(ctx context.Context, id string) (dispatch.WorkerStatus, error) {
		return s.cfg.Workers.PutBack(ctx, id)
	})(c)
}

// forgetWorker removes a disconnected instance from the list and gives the
// jobs it still holds back to the queue at once.
func (s *Server) forgetWorker(c *fiber.Ctx) error {
	return s.onWorker(func(ctx context.Context, id string) (dispatch.WorkerStatus, error) {
		return dispatch.WorkerStatus{}, s.cfg.Workers.Forget(ctx, id)
	}, fiber.StatusNoContent)(c)
}

// onWorker answers a change to the instance named in the path with its new
// status (or with status, when given, and no body).
func (s *Server) onWorker(change func(ctx context.Context, id string) (dispatch.WorkerStatus, error), status ...int) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if s.cfg.Workers == nil {
			return workshop.Errorf(workshop.ENOTFOUND, "no GPU instances")
		}
		id := dispatch.WorkerID(c.Params("agent"), c.Params("instance"))
		st, err := change(c.UserContext(), id)
		if err != nil {
			return err
		}
		if len(status) > 0 {
			return c.SendStatus(status[0])
		}
		return c.JSON(st)
	}
}

// jobOutput streams one stored output of a job.
func (s *Server) jobOutput(c *fiber.Ctx) error {
	job, err := s.cfg.Queue.Get(c.Params("id"))
	if err != nil {
		return err
	}
	name, err := url.PathUnescape(c.Params("name"))
	if err != nil {
		return workshop.Errorf(workshop.EINVALID, "bad output name")
	}
	return s.sendOutput(c, job, name)
}

// sendOutput streams a job's output file, found by its stored name.
func (s *Server) sendOutput(c *fiber.Ctx, job *workshop.Job, name string) error {
	if job.Result == nil || s.cfg.Files == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "job %s has no outputs", job.ID)
	}
	for _, o := range job.Result.Outputs {
		// The stored name, as the gallery's URLs give it: for an output
		// saved in a subfolder it differs from the engine's file name.
		if o.Name != name {
			continue
		}
		f, fi, err := s.cfg.Files.Open(store.Outputs, job.UserID, job.ID, o.Name)
		if err != nil {
			return err
		}
		for k, v := range store.DeliveryOfFile(f, o.Name).Headers(o.Name) {
			c.Set(k, v)
		}
		c.Set(fiber.HeaderETag, strconv.Quote(o.SHA256))
		// Streamed from the file, never read whole into memory.
		return c.SendStream(f, int(fi.Size()))
	}
	return workshop.Errorf(workshop.ENOTFOUND, "job %s has no output %q", job.ID, name)
}
