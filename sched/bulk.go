package sched

import (
	"cmp"
	"context"
	"slices"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// Selector picks active jobs for a change to many at once: one
// participant's (or everyone's), pending, running or both (Status ""); with
// IDs, only those of them (what a confirmation showed, not what arrived
// since).
type Selector struct {
	UserID string
	Status workshop.JobStatus
	IDs    []string
}

func (s Selector) check() error {
	if s.UserID != "" && !workshop.ValidUserID(s.UserID) {
		return workshop.Errorf(workshop.EINVALID, "user_id %q is not a valid participant id", s.UserID)
	}
	if s.Status != "" && s.Status != workshop.StatusPending && s.Status != workshop.StatusRunning {
		return workshop.Errorf(workshop.EINVALID, "status %q: only pending or running jobs can be picked", s.Status)
	}
	return nil
}

// Picked is one job a selector picked, as it was when picked.
type Picked struct {
	ID     string             `json:"id"`
	Number uint64             `json:"number"`
	UserID string             `json:"user_id"`
	Status workshop.JobStatus `json:"status"`
}

// Select answers the active jobs sel picks, running first (by number), then pending in
// dispatch order, without changing anything (what a bulk change would
// touch, for a confirmation).
func (q *Queue) Select(sel Selector) ([]Picked, error) {
	if err := sel.check(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return picks(q.selectLocked(sel)), nil
}

// CancelSelected cancels every job sel picks, as Cancel does one, with all
// the writes queued under one lock so they share commits. It answers what
// it cancelled, with the status each had.
func (q *Queue) CancelSelected(ctx context.Context, sel Selector, reason string) ([]Picked, error) {
	if err := sel.check(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	es := q.selectLocked(sel)
	out := picks(es)
	saved := make([]*workshop.Job, len(es))
	done := make([]<-chan error, len(es))
	for i, e := range es {
		id, mutate := e.id, q.cancelled(e, reason)
		done[i] = q.db.Enqueue(func(tx *store.Tx) (err error) {
			saved[i], err = tx.UpdateJob(id, func(j *workshop.Job) error { mutate(j); return nil })
			return err
		})
	}
	q.mu.Unlock()
	var firstErr error
	for i, ch := range done {
		if err := <-ch; err != nil {
			q.log.Error("store write failed after the queue changed", "job", es[i].id, "err", err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		q.publish(EventJobUpdated, saved[i])
	}
	q.mu.Lock()
	for _, e := range es {
		q.settled(e.id)
	}
	q.mu.Unlock()
	return out, firstErr
}

// selectLocked is the entries sel picks, running (by number) then
// pending in dispatch order; mu held.
func (q *Queue) selectLocked(sel Selector) []*entry {
	var only map[string]bool
	if sel.IDs != nil {
		only = make(map[string]bool, len(sel.IDs))
		for _, id := range sel.IDs {
			only[id] = true
		}
	}
	picks := func(e *entry) bool { return (sel.UserID == "" || e.user == sel.UserID) && (only == nil || only[e.id]) }
	var running []*entry
	if sel.Status != workshop.StatusPending {
		for _, e := range q.active {
			if e.status == workshop.StatusRunning && picks(e) {
				running = append(running, e)
			}
		}
		slices.SortFunc(running, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	}
	out := running
	if sel.Status != workshop.StatusRunning {
		for _, e := range q.order() {
			if picks(e) {
				out = append(out, e)
			}
		}
	}
	return out
}

func picks(es []*entry) []Picked {
	out := make([]Picked, len(es))
	for i, e := range es {
		out[i] = Picked{ID: e.id, Number: e.seq, UserID: e.user, Status: e.status}
	}
	return out
}
