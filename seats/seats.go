// Package seats manages the workshop's participants: numbered seats with
// join codes, and the browser sessions that a join link or the admin login
// opens.
package seats

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"slices"
	"strings"
	"sync"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/store"
)

// Session cookies: a participant's and the instructor's are two cookies,
// so a join link opened in the instructor's browser does not sign the
// instructor out, and neither session is taken for the other.
const (
	CookieName      = "workshop_session"
	AdminCookieName = "workshop_admin"
)

// SessionTTL is how long a join or login lasts: a long workshop day.
const SessionTTL = 24 * time.Hour

// MaxSeats bounds the seat numbers.
const MaxSeats = 10000

// Service is the seats and sessions of one workshop.
type Service struct {
	db  *store.DB
	now func() time.Time

	mu        sync.Mutex
	signedOut []func(seat int)
}

// New returns the service; call Ensure to create the seats at start.
func New(db *store.DB) *Service { return &Service{db: db, now: time.Now} }

// OnSignOut registers fn to run after a seat's sessions end (a new code, a
// disable, a sign-out by the instructor, a removal), to close what the
// sessions still hold open, such as sockets.
func (s *Service) OnSignOut(fn func(seat int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signedOut = append(s.signedOut, fn)
}

func (s *Service) notifySignOut(seat int) {
	s.mu.Lock()
	fns := slices.Clone(s.signedOut)
	s.mu.Unlock()
	for _, fn := range fns {
		fn(seat)
	}
}

// Ensure creates seats 1..n that do not exist yet. Existing seats (and
// seats above n, added by the instructor) are kept.
func (s *Service) Ensure(ctx context.Context, n int) error {
	return s.db.Write(ctx, func(tx *store.Tx) error {
		for i := 1; i <= n; i++ {
			if _, err := tx.Seat(i); err == nil {
				continue
			}
			if err := tx.PutSeat(&workshop.Seat{Number: i, Code: newCode(), CreatedAt: s.now().UTC()}); err != nil {
				return err
			}
		}
		return nil
	})
}

// codeAlphabet leaves out look-alikes (0/O, 1/l/I) so codes can be typed
// from a printed sheet.
const codeAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// newCode is a random join code of 10 characters (~49 bits).
func newCode() string {
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = codeAlphabet[int(b[i])%len(codeAlphabet)]
	}
	return string(b)
}

// List returns every seat.
func (s *Service) List() ([]*workshop.Seat, error) {
	var out []*workshop.Seat
	err := s.db.View(func(tx *store.Tx) (err error) {
		out, err = tx.Seats()
		return err
	})
	return out, err
}

// Get returns one seat.
func (s *Service) Get(n int) (*workshop.Seat, error) {
	var out *workshop.Seat
	err := s.db.View(func(tx *store.Tx) (err error) {
		out, err = tx.Seat(n)
		return err
	})
	return out, err
}

// Add creates a seat: number n, or the next free one when n is 0.
func (s *Service) Add(ctx context.Context, n int, name string) (*workshop.Seat, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if n < 0 || n > MaxSeats {
		return nil, workshop.Errorf(workshop.EINVALID, "seat must be 1 to %d", MaxSeats)
	}
	var seat *workshop.Seat
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		num := n
		if num == 0 {
			all, err := tx.Seats()
			if err != nil {
				return err
			}
			num = 1
			for _, x := range all {
				num = max(num, x.Number+1)
			}
			if num > MaxSeats {
				return workshop.Errorf(workshop.EINVALID, "no seat numbers left")
			}
		} else if _, err := tx.Seat(num); err == nil {
			return workshop.Errorf(workshop.ECONFLICT, "seat %d already exists", num)
		}
		seat = &workshop.Seat{Number: num, Name: name, Code: newCode(), CreatedAt: s.now().UTC()}
		return tx.PutSeat(seat)
	})
	return seat, err
}

// SeatUpdate changes fields of a seat; nil fields stay.
type SeatUpdate struct {
	Name       *string
	Disabled   *bool
	MaxPending *int // negative: back to the server's default
	RotateCode bool
}

// Update changes a seat.
func (s *Service) Update(ctx context.Context, n int, u SeatUpdate) (*workshop.Seat, error) {
	if u.Name != nil {
		if err := checkName(*u.Name); err != nil {
			return nil, err
		}
	}
	if u.MaxPending != nil && *u.MaxPending > 1000 {
		return nil, workshop.Errorf(workshop.EINVALID, "max_pending must be at most 1000")
	}
	var seat *workshop.Seat
	ended := false
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		cur, err := tx.Seat(n)
		if err != nil {
			return err
		}
		c := *cur
		if u.Name != nil {
			c.Name = *u.Name
		}
		if u.Disabled != nil {
			c.Disabled = *u.Disabled
		}
		if u.MaxPending != nil {
			if *u.MaxPending < 0 {
				c.MaxPending = nil
			} else {
				v := *u.MaxPending
				c.MaxPending = &v
			}
		}
		if u.RotateCode {
			c.Code = newCode()
		}
		seat = &c
		if err := tx.PutSeat(&c); err != nil {
			return err
		}
		// A new code or a disable ends the sessions that the old code
		// opened: re-enabling the seat later brings none of them back.
		if u.RotateCode || c.Disabled && !cur.Disabled {
			_, err = tx.EndSeatSessions(n, s.now())
			ended = true
		}
		return err
	})
	if err == nil && ended {
		s.notifySignOut(n)
	}
	return seat, err
}

// SignOut ends every session of seat n and returns how many there were.
func (s *Service) SignOut(ctx context.Context, n int) (int, error) {
	var ended int
	err := s.db.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.Seat(n); err != nil {
			return err
		}
		var err error
		ended, err = tx.EndSeatSessions(n, s.now())
		return err
	})
	if err == nil {
		s.notifySignOut(n)
	}
	return ended, err
}

// Remove deletes a seat and signs its browsers out. Its jobs and files stay.
func (s *Service) Remove(ctx context.Context, n int) error {
	err := s.db.Write(ctx, func(tx *store.Tx) error { return tx.DeleteSeat(n) })
	if err == nil {
		s.notifySignOut(n)
	}
	return err
}

func checkName(name string) error {
	if len(name) > 80 || !workshop.SafeText(name) {
		return workshop.Errorf(workshop.EINVALID, "a seat name is at most 80 characters on one line, without control or text-direction characters")
	}
	return nil
}

// Disabled is the one answer, on every route, to a disabled seat.
func Disabled(n int) error {
	return workshop.Errorf(workshop.EFORBIDDEN, "seat %d is disabled: ask the instructor", n)
}

// normalizeCode is a join code in its stored form.
func normalizeCode(code string) string { return strings.TrimSpace(strings.ToLower(code)) }

// ByCode returns the seat of a join code, without signing anyone in.
func (s *Service) ByCode(code string) (*workshop.Seat, error) {
	var seat *workshop.Seat
	err := s.db.View(func(tx *store.Tx) (err error) {
		seat, err = tx.SeatByCode(normalizeCode(code))
		return err
	})
	return seat, err
}

// Join checks a join code and opens a session for its seat, returning the
// session token (for the cookie). The check and the new session are one
// transaction, so a join cannot slip in between a code's rotation and the
// end of its sessions.
func (s *Service) Join(ctx context.Context, code string) (*workshop.Seat, string, error) {
	var seat *workshop.Seat
	token := auth.NewToken()
	err := s.db.Write(ctx, func(tx *store.Tx) (err error) {
		seat, err = tx.SeatByCode(normalizeCode(code))
		if err != nil {
			return err
		}
		if seat.Disabled {
			return Disabled(seat.Number)
		}
		return tx.PutSession(auth.HashToken(token), s.newSession(store.Session{Seat: seat.Number}))
	})
	if err != nil {
		return nil, "", err
	}
	return seat, token, nil
}

// OpenSeat opens a session for seat n without a code (open-seats mode).
func (s *Service) OpenSeat(ctx context.Context, n int) (string, error) {
	seat, err := s.Get(n)
	if err != nil {
		return "", err
	}
	if seat.Disabled {
		return "", Disabled(n)
	}
	return s.open(ctx, store.Session{Seat: n})
}

// OpenAdminAs opens an admin session for someone who gave their name
// ("" for none), which the activity log shows for what they do; its CSRF
// token is returned with it.
func (s *Service) OpenAdminAs(ctx context.Context, name string) (token, csrf string, err error) {
	csrf = auth.NewToken()
	token, err = s.open(ctx, store.Session{Admin: true, Name: name, CSRF: csrf})
	return token, csrf, err
}

func (s *Service) open(ctx context.Context, ses store.Session) (string, error) {
	token := auth.NewToken()
	err := s.db.Write(ctx, func(tx *store.Tx) error { return tx.PutSession(auth.HashToken(token), s.newSession(ses)) })
	return token, err
}

// newSession stamps a session with its lifetime from now.
func (s *Service) newSession(ses store.Session) store.Session {
	now := s.now().UTC()
	ses.Created, ses.Expires = now, now.Add(SessionTTL)
	return ses
}

// Session returns the live session of a token.
func (s *Service) Session(token string) (store.Session, bool) {
	if token == "" {
		return store.Session{}, false
	}
	var ses store.Session
	var ok bool
	s.db.View(func(tx *store.Tx) error {
		ses, ok = tx.Session(auth.HashToken(token))
		return nil
	})
	if !ok || s.now().After(ses.Expires) {
		return store.Session{}, false
	}
	if ses.Seat > 0 {
		// A seat removed or disabled since the join ends its sessions.
		seat, err := s.Get(ses.Seat)
		if err != nil || seat.Disabled {
			return store.Session{}, false
		}
	}
	return ses, true
}

// CSRFMatches reports whether got is the CSRF token of an admin session.
func CSRFMatches(ses store.Session, got string) bool {
	return ses.Admin && ses.CSRF != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ses.CSRF)) == 1
}

// Close ends a session.
func (s *Service) Close(ctx context.Context, token string) error {
	return s.db.Write(ctx, func(tx *store.Tx) error { return tx.DeleteSession(auth.HashToken(token)) })
}
