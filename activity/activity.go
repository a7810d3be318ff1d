// Package activity is the workshop's activity log: who did what, when —
// submissions, cancels, completions, admin actions, GPU agents coming and
// going — kept in the store and streamed to the admin page.
package activity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// Keep bounds the log: the oldest entries go first.
const Keep = 50000

// Entry is one line of the log.
type Entry struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"` // "admin", "user007", "agent gpu-1", "system"
	Kind   string    `json:"kind"`  // job, admin, agent, seat
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
	JobID  string    `json:"job_id,omitempty"`
	UserID string    `json:"user_id,omitempty"`
	// JobNumber is the job's number, which people say ("job #42"); Worker
	// the GPU instance it ran, failed or was lost on.
	JobNumber uint64 `json:"job_number,omitempty"`
	Worker    string `json:"worker,omitempty"`
}

// Log records entries and follows the queue's events.
type Log struct {
	db  *store.DB
	bus *sched.Bus
	log *slog.Logger
	// on remembers the instance each running job was leased to: a requeued
	// job's event no longer names it. Only the Run goroutine touches it.
	on map[string]string
}

// New returns the log.
func New(db *store.DB, bus *sched.Bus, log *slog.Logger) *Log {
	return &Log{db: db, bus: bus, log: log, on: map[string]string{}}
}

// Record appends an entry. Nothing waits for it: the entry joins the
// store's next commit (a lazy write), so the log adds no commit, no fsync,
// of its own to a submission or a completion.
func (l *Log) Record(e Entry) {
	if e.ID == "" {
		e.ID = uuid.Must(uuid.NewV7()).String()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := e.AppendJSON(make([]byte, 0, 256))
	if err != nil {
		return
	}
	l.db.Lazy(func(tx *store.Tx) error { return tx.PutActivity(e.ID, b, Keep) })
	l.bus.Publish(sched.Event{Type: EventActivity, Data: b})
}

// EventActivity carries a new entry on the bus (Data: the entry).
const EventActivity = "activity"

// List returns entries newest first, of one kind (or any) and containing
// text (or any), at most limit.
func (l *Log) List(kind, text string, limit int) ([]Entry, error) {
	text = strings.ToLower(text)
	return l.list("", limit, nil, func(e Entry) bool {
		return (kind == "" || e.Kind == kind) && (text == "" || strings.Contains(strings.ToLower(e.Actor+" "+e.Action+" "+e.Detail+" "+e.JobID+" "+e.UserID), text))
	})
}

// OfJob returns the entries about one job, created at created, newest
// first, at most limit. Only the entries since it was created are walked
// (entry ids are UUIDv7s, so their keys sort by time), and an entry is
// decoded only when its bytes name the job: a job has a handful of the
// log's 50,000 entries, and decoding each cost the instructor's click on a
// job 0.2 s.
func (l *Log) OfJob(jobID string, created time.Time, limit int) ([]Entry, error) {
	named, _ := json.Marshal(struct {
		JobID string `json:"job_id"`
	}{jobID}) // {"job_id":"..."}, as Record writes the field
	return l.list(idBefore(created.Add(-time.Second)), limit, named[1:len(named)-1], func(e Entry) bool { return e.JobID == jobID })
}

// idBefore is a key that sorts before the ids of every entry recorded at
// or after t: the time part of a UUIDv7 (48 bits of Unix milliseconds).
func idBefore(t time.Time) string {
	ms := uint64(max(t.UnixMilli(), 0))
	return fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff)
}

// list returns the entries after the key after that keep accepts, newest
// first, at most limit; with needle set, only entries whose bytes contain
// it are decoded.
func (l *Log) list(after string, limit int, needle []byte, keep func(Entry) bool) ([]Entry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 200
	}
	// Entries recorded so far are lazy writes, perhaps not yet committed:
	// they are committed first, so a list shows what was recorded.
	if err := l.db.Flush(context.Background()); err != nil {
		return nil, err
	}
	out := []Entry{}
	err := l.db.View(func(tx *store.Tx) error {
		tx.ActivityAfter(after, func(raw []byte) bool {
			if needle != nil && !bytes.Contains(raw, needle) {
				return true
			}
			var e Entry
			if json.Unmarshal(raw, &e) == nil && keep(e) {
				out = append(out, e)
			}
			return len(out) < limit
		})
		return nil
	})
	return out, err
}

// Run records job and GPU events until ctx ends.
func (l *Log) Run(ctx context.Context) {
	l.bus.Follow(ctx, 8192, func(e sched.Event) bool {
		return e.Type == sched.EventJobCreated || e.Type == sched.EventJobUpdated || e.Type == sched.EventAgent
	}, l.fromEvent)
}

func (l *Log) fromEvent(e sched.Event) {
	switch e.Type {
	case sched.EventJobCreated:
		j := e.Job
		detail := ""
		if j.Priority != workshop.PriorityDefault {
			detail = fmt.Sprintf("priority %d", j.Priority)
		}
		l.Record(Entry{Actor: j.UserID, Kind: "job", Action: "submitted", Detail: detail, JobID: j.ID, JobNumber: j.Seq, UserID: j.UserID})
	case sched.EventJobUpdated:
		j := e.Job
		worker := j.Worker
		if worker == "" {
			worker = l.on[j.ID]
		}
		var action, detail string
		switch j.Status {
		case workshop.StatusRunning:
			if j.Worker != "" {
				l.on[j.ID] = j.Worker
			}
			return
		case workshop.StatusCompleted:
			action = "completed"
			if j.Result != nil {
				detail = fmt.Sprintf("%d outputs", len(j.Result.Outputs))
				if len(j.Result.Outputs) == 1 {
					detail = "1 output"
				}
			}
		case workshop.StatusFailed:
			action = "failed"
		case workshop.StatusCancelled:
			action = "cancelled"
		case workshop.StatusPending:
			if j.Error == nil || j.Error.Type != "requeued" {
				return
			}
			action = "requeued"
			delete(l.on, j.ID)
		}
		if j.Status.Finished() {
			delete(l.on, j.ID)
		}
		if j.Error != nil && detail == "" {
			detail = j.Error.Message
		}
		l.Record(Entry{Actor: "system", Kind: "job", Action: action, Detail: detail, JobID: j.ID, JobNumber: j.Seq, UserID: j.UserID, Worker: worker})
	case sched.EventAgent:
		var d struct{ Agent, Action, Detail string }
		json.Unmarshal(e.Data, &d)
		l.Record(Entry{Actor: "agent " + d.Agent, Kind: "agent", Action: d.Action, Detail: d.Detail})
	}
}
