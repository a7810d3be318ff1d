package workshop

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Seat is one participant's place in the workshop: seat n is participant
// "user" + n in three digits, as the first plan numbered them.
type Seat struct {
	Number     int       `json:"seat"`
	Name       string    `json:"name"`
	Code       string    `json:"code"` // the join code, part of the join link
	Disabled   bool      `json:"disabled"`
	MaxPending *int      `json:"max_pending,omitempty"` // overrides --max-pending
	CreatedAt  time.Time `json:"created_at"`
}

// UserID is the participant id of seat n.
func UserID(seat int) string { return fmt.Sprintf("user%03d", seat) }

// SeatOf returns the seat number of a participant id, or false.
func SeatOf(user string) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(user, "user%d", &n); err != nil || n < 1 || UserID(n) != user {
		return 0, false
	}
	return n, true
}

// Who names a participant for people: "seat 7" for seat 7's id, else
// the id itself (a job submitted through the API for another name).
func Who(user string) string {
	if n, ok := SeatOf(user); ok {
		return fmt.Sprintf("seat %d", n)
	}
	return user
}

// Announcement is a message from the instructor to every participant.
type Announcement struct {
	ID        string    `json:"id"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// StoredName is the name an engine's output file gets in the output store:
// the file name, prefixed by its subfolder when it has one (and "temp_" for
// temporary previews), reduced to one safe path part.
func StoredName(filename, subfolder, typ string) string {
	name := path.Base(strings.ReplaceAll(filename, "\\", "/"))
	if subfolder != "" {
		name = strings.NewReplacer("/", "_", "\\", "_").Replace(subfolder) + "_" + name
	}
	if typ == "temp" {
		name = "temp_" + name
	}
	// A name made from a participant's filename_prefix: what could break
	// a header, a log line or a listing becomes "_".
	name = strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(name, "_"))
	name = strings.TrimLeft(name, ".")
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\\:\x00") {
		return "output"
	}
	return name
}

// InputFolder is the subfolder of an engine's input folder that holds a
// participant's uploads, so two participants' "cat.png" are two files.
func InputFolder(user string) string { return "workshop-" + user }
