package api

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// settingPassword holds the argon2id hash of the admin password.
const settingPassword = "admin_password_argon2id"

// SetAdminPassword stores the admin password's hash.
func SetAdminPassword(ctx context.Context, db *store.DB, password string) error {
	hash, err := auth.HashPassword(password)
	if err != nil {
		return workshop.Errorf(workshop.EINVALID, "%v", err)
	}
	return db.Write(ctx, func(tx *store.Tx) error { return tx.PutSetting(settingPassword, hash) })
}

// passwordMatches checks secret against the stored password hash. Each
// check takes argon2id's 64 MiB, so at most hashSlots run at once; a
// check that finds no slot within a few seconds is refused (ETOOMANY), so
// a flood of guesses costs the server a bounded amount of memory.
func (s *Server) passwordMatches(ctx context.Context, secret string) (bool, error) {
	var hash string
	s.cfg.DB.View(func(tx *store.Tx) error {
		_, err := tx.Setting(settingPassword, &hash)
		return err
	})
	if hash == "" {
		return false, nil
	}
	t := time.NewTimer(hashWait)
	defer t.Stop()
	select {
	case s.hashSlots <- struct{}{}:
	case <-t.C:
		return false, workshop.Errorf(workshop.ETOOMANY, "the server is busy checking other logins: try again in a moment")
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.hashSlots }()
	return auth.PasswordMatches(hash, secret), nil
}

// Password checks at once, and how long a login waits for a free one.
const (
	hashSlots = 2
	hashWait  = 3 * time.Second
)

// adminSession returns the admin browser session of the request, if any.
func (s *Server) adminSession(c *fiber.Ctx) (store.Session, bool) {
	if s.cfg.Seats == nil {
		return store.Session{}, false
	}
	ses, ok := s.cfg.Seats.Session(c.Cookies(seats.AdminCookieName))
	return ses, ok && ses.Admin
}

// login signs the instructor in with the admin token or password. The try
// is counted before anything is checked, so parallel guesses cannot all
// pass a limiter that only learns of failures after the (slow) hash.
func (s *Server) login(c *fiber.Ctx) error {
	if err := checkOrigin(c); err != nil {
		return err
	}
	ip := c.IP()
	if !s.loginLimit.Take(ip) {
		c.Set(fiber.HeaderRetryAfter, "60")
		return workshop.Errorf(workshop.ETOOMANY, "too many logins from this address: wait a minute")
	}
	var req struct {
		Secret string `json:"secret"`
		// Name is who signs in, for the activity log ("Ann drained ...").
		Name string `json:"name"`
	}
	json.Unmarshal(c.Body(), &req)
	if req.Secret == "" {
		req.Secret = c.FormValue("secret")
	}
	ok := auth.TokenMatches(s.cfg.AdminTokenHash, req.Secret)
	if !ok {
		var err error
		if ok, err = s.passwordMatches(c.UserContext(), req.Secret); err != nil {
			c.Set(fiber.HeaderRetryAfter, "5")
			return err
		}
	}
	if !ok {
		s.log.Warn("failed admin login", "ip", ip)
		return workshop.Errorf(workshop.EUNAUTHORIZED, "wrong admin token or password")
	}
	s.loginLimit.Reset(ip)
	name := strings.TrimSpace(req.Name)
	if err := checkActorName(name); err != nil {
		return err
	}
	token, csrf, err := s.cfg.Seats.OpenAdminAs(c.UserContext(), name)
	if err != nil {
		return err
	}
	c.Cookie(&fiber.Cookie{
		Name: seats.AdminCookieName, Value: token, Path: "/", HTTPOnly: true, SameSite: "Strict",
		Secure: s.cfg.TLS != nil, MaxAge: int(seats.SessionTTL / time.Second),
	})
	s.record(activity.Entry{Actor: sessionActor(store.Session{Name: name}), Kind: "admin", Action: "signed in"})
	return c.JSON(fiber.Map{"csrf": csrf, "name": name})
}

func (s *Server) logout(c *fiber.Ctx) error {
	if _, ok := s.adminSession(c); ok {
		if err := s.checkCSRF(c); err != nil {
			return err
		}
		s.cfg.Seats.Close(c.UserContext(), c.Cookies(seats.AdminCookieName))
	}
	c.ClearCookie(seats.AdminCookieName)
	return c.JSON(fiber.Map{"signed_out": true})
}

func (s *Server) session(c *fiber.Ctx) error {
	ses, ok := s.adminSession(c)
	if !ok {
		return workshop.Errorf(workshop.EUNAUTHORIZED, "not signed in")
	}
	return c.JSON(fiber.Map{"csrf": ses.CSRF, "name": ses.Name})
}

// checkCSRF protects state changes made with the session cookie: the page
// must echo its CSRF token, and a browser's Origin must be this server.
func (s *Server) checkCSRF(c *fiber.Ctx) error {
	ses, _ := s.adminSession(c)
	if !seats.CSRFMatches(ses, c.Get("X-CSRF-Token")) {
		return workshop.Errorf(workshop.EFORBIDDEN, "missing or wrong CSRF token")
	}
	return checkOrigin(c)
}

// checkOrigin refuses a request from a page of another origin (another
// port of this host included).
func checkOrigin(c *fiber.Ctx) error {
	if !auth.SameOrigin(c.Get(fiber.HeaderOrigin), c.Get("Sec-Fetch-Site"), string(c.Request().Host())) {
		return workshop.Errorf(workshop.EFORBIDDEN, "cross-site request refused")
	}
	return nil
}

func (s *Server) setPassword(c *fiber.Ctx) error {
	var req struct {
		Password string `json:"password"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"password\": \"...\"}")
	}
	if err := SetAdminPassword(c.UserContext(), s.cfg.DB, req.Password); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"password_set": true})
}

// record notes an admin action in the activity log.
func (s *Server) record(e activity.Entry) {
	if s.cfg.Activity != nil {
		s.cfg.Activity(e)
	}
}

// sessionActor is the name an admin session acts under.
func sessionActor(ses store.Session) string {
	if ses.Name != "" {
		return ses.Name
	}
	return "Instructor"
}

// checkActorName refuses names that would garble the activity log.
func checkActorName(name string) error {
	if len([]rune(name)) > 40 {
		return workshop.Errorf(workshop.EINVALID, "a name is at most 40 characters")
	}
	if !workshop.SafeText(name) {
		return workshop.Errorf(workshop.EINVALID, "a name cannot hold control characters")
	}
	return nil
}
