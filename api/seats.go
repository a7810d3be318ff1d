package api

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// seatView is a seat as the admin API shows it, with its join link.
type seatView struct {
	*workshop.Seat
	UserID  string `json:"user_id"`
	JoinURL string `json:"join_url"`
	// Live state, in the list only.
	Online  *bool `json:"online,omitempty"`
	Pending *int  `json:"pending,omitempty"`
	Running *int  `json:"running,omitempty"`
	Done    *int  `json:"done,omitempty"`
}

func (s *Server) seatView(c *fiber.Ctx, seat *workshop.Seat) seatView {
	return seatView{Seat: seat, UserID: workshop.UserID(seat.Number), JoinURL: s.baseURL(c) + "/join/" + seat.Code}
}

// baseURL is the public address of this server: --public-url, else as
// the request reached it.
func (s *Server) baseURL(c *fiber.Ctx) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	return c.Protocol() + "://" + string(c.Request().Host())
}

// joinWarning says why join links built on base would not open on a
// participant's device, or "".
func (s *Server) joinWarning(base string) string {
	u, err := url.Parse(base)
	if err != nil || !IsLoopback(u.Hostname()) {
		return ""
	}
	fix := "open the admin page at an address participants' devices can reach, or start the server with --public-url"
	if s.cfg.PublicURL != "" {
		fix = "start the server with a --public-url that participants' devices can reach"
	}
	return fmt.Sprintf("Join links and QR codes point at %s, which only this machine can open: %s.", u.Host, fix)
}

// IsLoopback says whether host (a name or an IP) is this machine only.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) listSeats(c *fiber.Ctx) error {
	all, err := s.cfg.Seats.List()
	if err != nil {
		return err
	}
	// Completed jobs per participant, from the report's totals: counting
	// them would read every stored job.
	var totals map[string]store.Totals
	s.cfg.DB.View(func(tx *store.Tx) error { totals = tx.UserTotals(); return nil })
	out := make([]seatView, 0, len(all))
	for _, seat := range all {
		v := s.seatView(c, seat)
		pending, running := s.cfg.Queue.Counts(v.UserID)
		d := totals[v.UserID].Completed
		online := s.cfg.Online != nil && s.cfg.Online(v.UserID) > 0
		v.Online, v.Pending, v.Running, v.Done = &online, &pending, &running, &d
		out = append(out, v)
	}
	base := s.baseURL(c)
	return c.JSON(fiber.Map{"seats": out, "join_base": base, "join_warning": s.joinWarning(base)})
}

func seatParam(c *fiber.Ctx) (int, error) {
	n, err := strconv.Atoi(c.Params("n"))
	if err != nil || n < 1 || n > seats.MaxSeats {
		return 0, workshop.Errorf(workshop.EINVALID, "seat must be a number from 1 to %d", seats.MaxSeats)
	}
	return n, nil
}

func (s *Server) addSeat(c *fiber.Ctx) error {
	var req struct {
		Seat int    `json:"seat"`
		Name string `json:"name"`
	}
	if len(c.Body()) > 0 {
		if err := json.Unmarshal(c.Body(), &req); err != nil {
			return workshop.Errorf(workshop.EINVALID, "the body must be {\"seat\"?: n, \"name\"?: \"...\"}")
		}
	}
	seat, err := s.cfg.Seats.Add(c.UserContext(), req.Seat, req.Name)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(s.seatView(c, seat))
}

func (s *Server) updateSeat(c *fiber.Ctx) error {
	n, err := seatParam(c)
	if err != nil {
		return err
	}
	var req struct {
		Name       *string `json:"name"`
		Disabled   *bool   `json:"disabled"`
		MaxPending *int    `json:"max_pending"`
		RotateCode bool    `json:"rotate_code"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil {
		return workshop.Errorf(workshop.EINVALID, "the body must be a JSON object: name, disabled, max_pending, rotate_code")
	}
	seat, err := s.cfg.Seats.Update(c.UserContext(), n, seats.SeatUpdate{Name: req.Name, Disabled: req.Disabled, MaxPending: req.MaxPending, RotateCode: req.RotateCode})
	if err != nil {
		return err
	}
	if req.MaxPending != nil {
		s.cfg.Queue.SetQuota(workshop.UserID(n), *req.MaxPending)
	}
	return c.JSON(s.seatView(c, seat))
}

func (s *Server) deleteSeat(c *fiber.Ctx) error {
	n, err := seatParam(c)
	if err != nil {
		return err
	}
	if err := s.cfg.Seats.Remove(c.UserContext(), n); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"removed": n})
}

// signOutSeat ends every session of a seat (a participant left a browser
// signed in somewhere); the join code stays, so they can join again.
func (s *Server) signOutSeat(c *fiber.Ctx) error {
	n, err := seatParam(c)
	if err != nil {
		return err
	}
	ended, err := s.cfg.Seats.SignOut(c.UserContext(), n)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"seat": n, "sessions_ended": ended})
}

func (s *Server) listAnnouncements(c *fiber.Ctx) error {
	var notes []workshop.Announcement
	err := s.cfg.DB.View(func(tx *store.Tx) (err error) {
		notes, err = tx.Announcements()
		return err
	})
	if err != nil {
		return err
	}
	if notes == nil {
		notes = []workshop.Announcement{}
	}
	return c.JSON(fiber.Map{"announcements": notes})
}

func (s *Server) announce(c *fiber.Ctx) error {
	var req struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(c.Body(), &req); err != nil || strings.TrimSpace(req.Text) == "" || len(req.Text) > 2000 {
		return workshop.Errorf(workshop.EINVALID, "the body must be {\"text\": \"...\"} with 1 to 2000 characters")
	}
	a := workshop.Announcement{ID: uuid.Must(uuid.NewV7()).String(), Text: strings.TrimSpace(req.Text), CreatedAt: time.Now().UTC()}
	if err := s.cfg.DB.Write(c.UserContext(), func(tx *store.Tx) error { return tx.PutAnnouncement(a) }); err != nil {
		return err
	}
	data, _ := json.Marshal(a)
	s.cfg.Queue.Events().Publish(sched.Event{Type: sched.EventAnnouncement, Data: data})
	return c.Status(fiber.StatusCreated).JSON(a)
}

func (s *Server) withdraw(c *fiber.Ctx) error {
	id := c.Params("id")
	if err := s.cfg.DB.Write(c.UserContext(), func(tx *store.Tx) error { return tx.DeleteAnnouncement(id) }); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"removed": id})
}
