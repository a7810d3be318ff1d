package userfiles

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// The users routes follow app/user_manager.py: get_users and post_users.

type usersAnswer struct {
	Storage  string `json:"storage"`
	Migrated bool   `json:"migrated"`
}

// getUsers is single-user ComfyUI's answer: no "users" key, so the
// frontend shows no user picker; migrated says whether the participant's
// folder exists yet.
func (h *handler) getUsers(c *fiber.Ctx, user string) error {
	fi, err := h.s.base.Lstat(user)
	return sendJSON(c, fiber.StatusOK, usersAnswer{Storage: "server", Migrated: err == nil && fi.IsDir()})
}

var userIDClean = regexp.MustCompile(`[^a-zA-Z0-9\-_]+`)

// postUsers validates as ComfyUI does and answers the new id it would
// create. In single-user mode such a user is never used (ComfyUI ignores
// the comfy-user header), so nothing is stored.
func (h *handler) postUsers(c *fiber.Ctx, user string) error {
	var body map[string]any
	if err := json.Unmarshal(c.Request().Body(), &body); err != nil {
		return sendJSON(c, fiber.StatusBadRequest, map[string]string{"error": "Invalid JSON body."})
	}
	username, _ := body["username"].(string)
	if username == "default" {
		return sendJSON(c, fiber.StatusBadRequest, map[string]string{"error": "Duplicate username."})
	}
	name := strings.TrimSpace(username)
	if name == "" {
		return sendJSON(c, fiber.StatusBadRequest, map[string]string{"error": "username not provided"})
	}
	id := userIDClean.ReplaceAllString(name, "-")
	if strings.HasPrefix(name, "__") || strings.HasPrefix(id, "__") {
		return sendJSON(c, fiber.StatusBadRequest, map[string]string{"error": "System User prefix not allowed"})
	}
	h.s.log.Info("userfiles: POST /users in single-user mode; no user is stored", "user", user)
	return sendJSON(c, fiber.StatusOK, id+"_"+uuid.NewString())
}
