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
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/internal/words"
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

// listSeats lists the seats with their live state (online, pending,
// running, done). With any of q, state, offset or limit it answers one page
// of the seats that match, with the total and the room's counts, and reads
// job history only for that page, so it stays fast with 2,000 seats;
// live=0 leaves the live state out (the page's directory of names).
//
//	q       seat number, part of a name, or a join code
//	state   online, offline, busy (jobs pending or running), disabled
func (s *Server) listSeats(c *fiber.Ctx) error {
	all, err := s.cfg.Seats.List()
	if err != nil {
		return err
	}
	base := s.baseURL(c)
	answer := fiber.Map{"join_base": base, "join_warning": s.joinWarning(base)}
	if c.Query("live") == "0" {
		out := make([]seatView, 0, len(all))
		for _, seat := range all {
			out = append(out, s.seatView(c, seat))
		}
		answer["seats"] = out
		return c.JSON(answer)
	}
	paged := c.Query("q") != "" || c.Query("state") != "" || c.Query("offset") != "" || c.Query("limit") != ""
	views := make([]seatView, 0, len(all))
	var summary struct {
		Seats    int `json:"seats"`
		Online   int `json:"online"`
		Disabled int `json:"disabled"`
		Busy     int `json:"busy"`
	}
	summary.Seats = len(all)
	match, err := seatMatcher(c.Query("q"), c.Query("state"))
	if err != nil {
		return err
	}
	for _, seat := range all {
		v := s.seatView(c, seat)
		pending, running := s.cfg.Queue.Counts(v.UserID)
		online := s.cfg.Online != nil && s.cfg.Online(v.UserID) > 0
		v.Online, v.Pending, v.Running = &online, &pending, &running
		summary.Online += b2i(online)
		summary.Disabled += b2i(seat.Disabled)
		summary.Busy += b2i(pending+running > 0)
		if match(v) {
			views = append(views, v)
		}
	}
	total := len(views)
	offset, limit := 0, len(views)
	if paged {
		var err1, err2 error
		offset, err1 = strconv.Atoi(c.Query("offset", "0"))
		limit, err2 = strconv.Atoi(c.Query("limit", "50"))
		if err1 != nil || err2 != nil || offset < 0 || limit < 1 || limit > 500 {
			return workshop.Errorf(workshop.EINVALID, "offset must be 0 or more and limit 1 to 500")
		}
		views = views[min(offset, total):min(offset+limit, total)]
	}
	if err := s.fillDone(views); err != nil {
		return err
	}
	answer["seats"] = views
	if paged {
		answer["total"], answer["offset"], answer["limit"], answer["summary"] = total, offset, limit, summary
	}
	return c.JSON(answer)
}

// seatMatcher is the filter of listSeats' q and state.
func seatMatcher(q, state string) (func(seatView) bool, error) {
	q = strings.ToLower(strings.TrimSpace(q))
	n, numErr := strconv.Atoi(strings.TrimPrefix(q, "#"))
	var byState func(v seatView) bool
	switch state {
	case "":
		byState = func(seatView) bool { return true }
	case "online":
		byState = func(v seatView) bool { return *v.Online }
	case "offline":
		byState = func(v seatView) bool { return !*v.Online && !v.Disabled }
	case "busy":
		byState = func(v seatView) bool { return *v.Pending+*v.Running > 0 }
	case "disabled":
		byState = func(v seatView) bool { return v.Disabled }
	default:
		return nil, workshop.Errorf(workshop.EINVALID, "state %q: want online, offline, busy or disabled", state)
	}
	return func(v seatView) bool {
		if !byState(v) {
			return false
		}
		if q == "" {
			return true
		}
		return (numErr == nil && v.Number == n) || strings.Contains(strings.ToLower(v.Name), q) || strings.ToLower(v.Code) == q
	}, nil
}

// fillDone gives each listed seat its completed jobs, from the report's
// per-participant totals: the cost follows the seats listed, not the jobs.
func (s *Server) fillDone(views []seatView) error {
	return s.cfg.DB.View(func(tx *store.Tx) error {
		totals := tx.UserTotals()
		for i := range views {
			d := totals[views[i].UserID].Completed
			views[i].Done = &d
		}
		return nil
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
	words := fmt.Sprintf("added seat %d", seat.Number)
	if seat.Name != "" {
		words += fmt.Sprintf(" (%s)", seat.Name)
	}
	note(c, activity.Entry{Action: words, UserID: workshop.UserID(seat.Number)})
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
	note(c, activity.Entry{Action: seatChangeWords(n, req.Name, req.Disabled, req.MaxPending, req.RotateCode), UserID: workshop.UserID(n)})
	return c.JSON(s.seatView(c, seat))
}

// seatChangeWords says what a seat update did: "renamed seat 3 to Alice;
// disabled seat 3".
func seatChangeWords(n int, name *string, disabled *bool, maxPending *int, rotate bool) string {
	var parts []string
	if name != nil {
		if *name == "" {
			parts = append(parts, fmt.Sprintf("cleared the name of seat %d", n))
		} else {
			parts = append(parts, fmt.Sprintf("renamed seat %d to %s", n, *name))
		}
	}
	if disabled != nil {
		verb := "enabled"
		if *disabled {
			verb = "disabled"
		}
		parts = append(parts, fmt.Sprintf("%s seat %d", verb, n))
	}
	if maxPending != nil {
		switch m := *maxPending; {
		case m < 0:
			parts = append(parts, fmt.Sprintf("put seat %d back on the default limit of pending jobs", n))
		case m == 0:
			parts = append(parts, fmt.Sprintf("let seat %d queue any number of jobs", n))
		default:
			parts = append(parts, fmt.Sprintf("let seat %d hold %s at a time", n, words.Plural(m, "pending job")))
		}
	}
	if rotate {
		parts = append(parts, fmt.Sprintf("gave seat %d a new join code", n))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("saved seat %d unchanged", n)
	}
	return strings.Join(parts, "; ")
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
