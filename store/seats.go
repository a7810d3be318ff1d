package store

import (
	"encoding/binary"
	"encoding/json"
	"time"

	workshop "github.com/comfy-workshop/workshop"
)

var (
	bucketSeats    = []byte("seats")    // seat number -> seat JSON
	bucketCodes    = []byte("codes")    // join code -> seat number
	bucketSessions = []byte("sessions") // token hash -> session JSON
	bucketNotes    = []byte("announcements")
)

func seatKey(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

// Seat reads one seat.
func (tx *Tx) Seat(n int) (*workshop.Seat, error) {
	v := tx.tx.Bucket(bucketSeats).Get(seatKey(n))
	if v == nil {
		return nil, workshop.Errorf(workshop.ENOTFOUND, "seat %d does not exist", n)
	}
	s := new(workshop.Seat)
	return s, json.Unmarshal(v, s)
}

// PutSeat writes a seat and indexes its code (dropping its old code).
func (tx *Tx) PutSeat(s *workshop.Seat) error {
	if old, err := tx.Seat(s.Number); err == nil && old.Code != s.Code {
		if err := tx.tx.Bucket(bucketCodes).Delete([]byte(old.Code)); err != nil {
			return err
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketSeats).Put(seatKey(s.Number), b); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketCodes).Put([]byte(s.Code), seatKey(s.Number))
}

// DeleteSeat removes a seat, its code and its sessions.
func (tx *Tx) DeleteSeat(n int) error {
	s, err := tx.Seat(n)
	if err != nil {
		return err
	}
	if err := tx.tx.Bucket(bucketCodes).Delete([]byte(s.Code)); err != nil {
		return err
	}
	if _, err := tx.EndSeatSessions(n, time.Now()); err != nil {
		return err
	}
	return tx.tx.Bucket(bucketSeats).Delete(seatKey(n))
}

// EndSeatSessions deletes every session of seat n, and on the way every
// session that expired before now, and returns how many of seat n's went.
func (tx *Tx) EndSeatSessions(n int, now time.Time) (int, error) {
	sessions := tx.tx.Bucket(bucketSessions)
	var drop [][]byte
	ended := 0
	sessions.ForEach(func(k, v []byte) error {
		var ses Session
		if json.Unmarshal(v, &ses) != nil || ses.Seat == n || now.After(ses.Expires) {
			drop = append(drop, append([]byte(nil), k...))
			if ses.Seat == n {
				ended++
			}
		}
		return nil
	})
	for _, k := range drop {
		if err := sessions.Delete(k); err != nil {
			return 0, err
		}
	}
	return ended, nil
}

// Seats lists every seat by number.
func (tx *Tx) Seats() ([]*workshop.Seat, error) {
	var out []*workshop.Seat
	err := tx.tx.Bucket(bucketSeats).ForEach(func(_, v []byte) error {
		s := new(workshop.Seat)
		if err := json.Unmarshal(v, s); err != nil {
			return err
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

// SeatByCode finds the seat of a join code.
func (tx *Tx) SeatByCode(code string) (*workshop.Seat, error) {
	v := tx.tx.Bucket(bucketCodes).Get([]byte(code))
	if v == nil || len(v) != 4 {
		return nil, workshop.Errorf(workshop.ENOTFOUND, "no seat has this join code")
	}
	return tx.Seat(int(binary.BigEndian.Uint32(v)))
}

// Session is a signed-in browser: a participant's seat, or the admin.
type Session struct {
	Seat    int       `json:"seat,omitempty"` // 0 for the admin
	Admin   bool      `json:"admin,omitempty"`
	Name    string    `json:"name,omitempty"` // who signed in as the admin, for the activity log
	CSRF    string    `json:"csrf,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// PutSession stores a session under the hash of its token.
func (tx *Tx) PutSession(hash string, s Session) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return tx.tx.Bucket(bucketSessions).Put([]byte(hash), b)
}

// Session reads a session by the hash of its token.
func (tx *Tx) Session(hash string) (Session, bool) {
	var s Session
	v := tx.tx.Bucket(bucketSessions).Get([]byte(hash))
	if v == nil || json.Unmarshal(v, &s) != nil {
		return s, false
	}
	return s, true
}

// DeleteSession ends a session.
func (tx *Tx) DeleteSession(hash string) error {
	return tx.tx.Bucket(bucketSessions).Delete([]byte(hash))
}

// PutAnnouncement stores an announcement; ids sort by time.
func (tx *Tx) PutAnnouncement(a workshop.Announcement) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.tx.Bucket(bucketNotes).Put([]byte(a.ID), b)
}

// DeleteAnnouncement withdraws one.
func (tx *Tx) DeleteAnnouncement(id string) error {
	if tx.tx.Bucket(bucketNotes).Get([]byte(id)) == nil {
		return workshop.Errorf(workshop.ENOTFOUND, "announcement %s not found", id)
	}
	return tx.tx.Bucket(bucketNotes).Delete([]byte(id))
}

// Announcements lists them newest first.
func (tx *Tx) Announcements() ([]workshop.Announcement, error) {
	var out []workshop.Announcement
	c := tx.tx.Bucket(bucketNotes).Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var a workshop.Announcement
		if err := json.Unmarshal(v, &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

var bucketActivity = []byte("activity")

// PutActivity appends one activity entry (key: a time-ordered id). Past
// keep entries the oldest go, in batches of keep/50, so that trimming
// costs one cursor walk per batch instead of one per entry, and the count
// comes from the counters, never from walking the bucket.
func (tx *Tx) PutActivity(id string, entry []byte, keep int) error {
	b := tx.tx.Bucket(bucketActivity)
	c := tx.counters()
	if b.Get([]byte(id)) == nil {
		c.activity++
		c.dirty = true
	}
	if err := b.Put([]byte(id), entry); err != nil {
		return err
	}
	if int(c.activity) < keep+max(keep/50, 1) {
		return nil
	}
	cur := b.Cursor()
	for k, _ := cur.First(); k != nil && int(c.activity) > keep; k, _ = cur.First() {
		if err := cur.Delete(); err != nil {
			return err
		}
		c.activity--
	}
	return nil
}

// Activity walks entries newest first until fn returns false.
func (tx *Tx) Activity(fn func(entry []byte) bool) { tx.ActivityAfter("", fn) }

// ActivityAfter walks the entries whose ids sort after after, newest
// first, until fn returns false. Ids are UUIDv7s, so a prefix of one
// bounds a walk in time.
func (tx *Tx) ActivityAfter(after string, fn func(entry []byte) bool) {
	c := tx.tx.Bucket(bucketActivity).Cursor()
	for k, v := c.Last(); k != nil && string(k) > after; k, v = c.Prev() {
		if !fn(v) {
			return
		}
	}
}
