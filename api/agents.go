package api

import (
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/tunnel"
)

// GPU hosts' own tokens: `workshop agents add|list|revoke`.

type agentView struct {
	Name        string     `json:"name"`
	Token       string     `json:"token"` // "own" or "shared": which token it connects with
	CreatedAt   *time.Time `json:"created_at,omitempty"`
	Connected   bool       `json:"connected"`
	RemoteAddr  string     `json:"remote_addr,omitempty"`
	ConnectedAt *time.Time `json:"connected_at,omitempty"`
}

func (s *Server) agentTokensOn() error {
	if s.cfg.AgentTokens == nil || s.cfg.Tunnel == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "this server takes no GPU agents")
	}
	return nil
}

// listAgents lists the per-host tokens, and the agents connected with the
// shared token.
func (s *Server) listAgents(c *fiber.Ctx) error {
	if err := s.agentTokensOn(); err != nil {
		return err
	}
	tokens, err := s.cfg.AgentTokens.List()
	if err != nil {
		return err
	}
	out := []agentView{}
	own := map[string]bool{}
	for _, t := range tokens {
		own[t.Name] = true
		v := agentView{Name: t.Name, Token: "own", CreatedAt: &t.CreatedAt}
		if a, ok := s.cfg.Tunnel.Agent(t.Name); ok {
			v.Connected, v.RemoteAddr, v.ConnectedAt = true, a.RemoteAddr, &a.ConnectedAt
		}
		out = append(out, v)
	}
	for _, a := range s.cfg.Tunnel.Agents() {
		if !own[a.Name] {
			out = append(out, agentView{Name: a.Name, Token: "shared", Connected: true, RemoteAddr: a.RemoteAddr, ConnectedAt: &a.ConnectedAt})
		}
	}
	return c.JSON(fiber.Map{"agents": out, "shared_token": s.cfg.SharedAgentToken})
}

// addAgent makes a GPU host's own token, shown once.
func (s *Server) addAgent(c *fiber.Ctx) error {
	if err := s.agentTokensOn(); err != nil {
		return err
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || !tunnel.ValidName(req.Name) {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"name\": \"gpu-1\"}: 1 to 128 letters, digits and . _ : @ -, starting with a letter or digit")
	}
	token, rec, err := s.cfg.AgentTokens.Add(c.UserContext(), req.Name)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"name": rec.Name, "token": token, "created_at": rec.CreatedAt})
}

// revokeAgent deletes a GPU host's token and closes its session at once.
func (s *Server) revokeAgent(c *fiber.Ctx) error {
	if err := s.agentTokensOn(); err != nil {
		return err
	}
	rec, err := s.cfg.AgentTokens.Revoke(c.UserContext(), c.Params("name"))
	if err != nil {
		return err
	}
	closed := s.cfg.Tunnel.Revoke(rec.Hash)
	s.log.Warn("agent token revoked", "agent", rec.Name, "sessions_closed", closed)
	return c.JSON(fiber.Map{"revoked": rec.Name, "sessions_closed": closed})
}
