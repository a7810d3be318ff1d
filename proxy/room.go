package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfy-workshop/workshop/sched"
)

// roomTick is how often, at most, every participant is told where they now
// stand after other people's jobs moved the queue.
const roomTick = time.Second

// standing is what a participant's extension shows that other people's
// jobs change: their queue place, whether the queue is paused, the GPUs.
// It is comparable, so a socket sends it only when it changed.
type standing struct {
	pending, running, position int
	eta                        float64 // seconds; -1: no estimate yet
	paused                     bool
	gpus                       gpus
}

func standingOf(pl sched.Place, paused bool, g gpus) standing {
	s := standing{pending: pl.Pending, running: pl.Running, position: pl.Position, eta: -1, paused: paused, gpus: g}
	if pl.ETASeconds != nil && pl.Position > 0 {
		s.eta = *pl.ETASeconds
	}
	return s
}

// statusView is s as the extension reads it (workshop_status). A struct,
// not a map: a room update marshals one per participant every second.
type statusView struct {
	Queue queueView `json:"queue"`
	GPUs  gpusView  `json:"gpus"`
}

type queueView struct {
	Paused     bool     `json:"paused"`
	Pending    int      `json:"pending"`
	Running    int      `json:"running"`
	Position   *int     `json:"position"`
	ETASeconds *float64 `json:"eta_seconds"`
}

type gpusView struct {
	Connected int `json:"connected"`
	Total     int `json:"total"`
}

func (s standing) view() statusView {
	v := statusView{
		Queue: queueView{Paused: s.paused, Pending: s.pending, Running: s.running},
		GPUs:  gpusView{Connected: s.gpus.connected, Total: s.gpus.total},
	}
	if s.position > 0 {
		pos := s.position
		v.Queue.Position = &pos
		if s.eta >= 0 {
			eta := s.eta
			v.Queue.ETASeconds = &eta
		}
	}
	return v
}

// room keeps everyone's standing, recomputed in one pass over the queue at
// most once per roomTick after a change, instead of once per socket per
// event: with 2,000 sockets open, that is the difference between one
// pass and 2,000 for every job that starts.
type room struct {
	mu      sync.Mutex
	at      time.Time // when snap was taken
	places  map[string]sched.Place
	paused  bool
	gpus    gpus
	changed chan struct{} // closed when a new snapshot is in
}

func newRoom() *room { return &room{changed: make(chan struct{})} }

// run recomputes the room after changes until ctx ends.
func (r *room) run(ctx context.Context, q *sched.Queue, gpuCount func() gpus) {
	var dirty atomic.Bool
	go q.Events().Follow(ctx, 4096, func(e sched.Event) bool {
		switch e.Type {
		case sched.EventJobCreated, sched.EventJobUpdated, sched.EventQueueChanged, sched.EventWorkers:
			return true
		}
		return false
	}, func(sched.Event) { dirty.Store(true) })
	t := time.NewTicker(roomTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !dirty.Swap(false) {
			continue
		}
		at := time.Now()
		places, paused, g := q.Places(), q.Paused(), gpuCount()
		r.mu.Lock()
		r.at, r.places, r.paused, r.gpus = at, places, paused, g
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
}

// wait returns a channel closed when the next snapshot is in.
func (r *room) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// gpusNow returns the GPU count of the latest snapshot; ok is false before
// the first one.
func (r *room) gpusNow() (g gpus, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gpus, !r.at.IsZero()
}

// of returns user's standing in the latest snapshot and when it was taken.
func (r *room) of(user string) (standing, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return standingOf(r.places[user], r.paused, r.gpus), r.at
}
