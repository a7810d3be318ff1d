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

// fields is s as the extension reads it (workshop_status).
func (s standing) fields() map[string]any {
	q := map[string]any{"paused": s.paused, "pending": s.pending, "running": s.running, "position": nil, "eta_seconds": nil}
	if s.position > 0 {
		q["position"] = s.position
		if s.eta >= 0 {
			q["eta_seconds"] = s.eta
		}
	}
	return map[string]any{"queue": q, "gpus": map[string]int{"connected": s.gpus.connected, "total": s.gpus.total}}
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

// of returns user's standing in the latest snapshot and when it was taken.
func (r *room) of(user string) (standing, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return standingOf(r.places[user], r.paused, r.gpus), r.at
}
