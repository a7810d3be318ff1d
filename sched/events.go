package sched

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"

	workshop "github.com/comfy-workshop/workshop"
)

// Event types.
const (
	EventJobCreated   = "job_created"
	EventJobUpdated   = "job_updated"
	EventQueueChanged = "queue_changed"
	EventJobProgress  = "job_progress"    // a running job moved: node, step, preview
	EventWorkers      = "workers_changed" // a GPU instance came, went or changed state
	EventAnnouncement = "announcement"    // Data: the instructor's message
	EventAgent        = "agent"           // Data: {agent, action, detail}: a GPU agent came or went
	EventSpotlight    = "spotlight"       // Data: the output on the projector, or null
	// EventEngine carries one raw ComfyUI socket frame of a job, for relaying
	// to its owner's ComfyUI UI; it is not for the admin socket.
	EventEngine = "engine_event"
)

// Event is one change, as sent to subscribers.
type Event struct {
	Type     string          `json:"type"`
	Job      *workshop.Job   `json:"job,omitempty"`
	Queue    *Status         `json:"queue,omitempty"`
	Progress *Progress       `json:"progress,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`

	// For EventEngine: whose job it is, and the frame as the engine sent it.
	UserID string `json:"user_id,omitempty"`
	JobID  string `json:"job_id,omitempty"`
	Frame  []byte `json:"-"`
	Binary bool   `json:"-"`
}

// Progress is the live state of one leased job on its engine.
type Progress struct {
	JobID  string `json:"job_id"`
	UserID string `json:"user_id"`
	Worker string `json:"worker"`
	// Stage is "queued" (prefetched, waiting in the engine's queue),
	// "executing" or "collecting" (downloading outputs).
	Stage string `json:"stage"`
	Node  string `json:"node,omitempty"`
	Value int    `json:"value"`
	Max   int    `json:"max"`
	// Preview is the latest preview image as a data: URL, when there is one.
	Preview string `json:"preview,omitempty"`
}

// Bus fans events out to subscribers. A subscriber that falls behind is
// dropped (its channel closed) rather than slowing the queue: a socket
// client then reconnects and reloads.
type Bus struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
	n    atomic.Int32
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[*Subscription]struct{}{}} }

// Subscription receives events on C until it is closed or falls behind.
type Subscription struct {
	C      <-chan Event
	c      chan Event
	bus    *Bus
	once   sync.Once
	filter func(Event) bool
}

// Subscribe returns a subscription with room for buf events. filter, if not
// nil, picks the events it gets.
func (b *Bus) Subscribe(buf int, filter func(Event) bool) *Subscription {
	c := make(chan Event, buf)
	s := &Subscription{C: c, c: c, bus: b, filter: filter}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.n.Add(1)
	b.mu.Unlock()
	return s
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	s.bus.drop(s)
	s.bus.mu.Unlock()
}

// drop removes s; b.mu held for writing.
func (b *Bus) drop(s *Subscription) {
	s.once.Do(func() {
		delete(b.subs, s)
		b.n.Add(-1)
		close(s.c)
	})
}

// HasSubscribers reports whether anyone listens, so publishers can skip
// building events nobody reads.
func (b *Bus) HasSubscribers() bool { return b.n.Load() > 0 }

// Publish sends e to every subscriber without blocking.
func (b *Bus) Publish(e Event) {
	var lagging []*Subscription
	b.mu.RLock()
	for s := range b.subs {
		if s.filter != nil && !s.filter(e) {
			continue
		}
		select {
		case s.c <- e:
		default:
			lagging = append(lagging, s)
		}
	}
	b.mu.RUnlock()
	if len(lagging) > 0 {
		b.mu.Lock()
		for _, s := range lagging {
			b.drop(s)
		}
		b.mu.Unlock()
	}
}

// Follow calls fn with every event that passes filter until ctx ends. If it
// falls behind it subscribes again (the events in between are lost), so it
// suits followers that keep summaries: logs, metrics, live state.
func (b *Bus) Follow(ctx context.Context, buf int, filter func(Event) bool, fn func(Event)) {
	for ctx.Err() == nil {
		sub := b.Subscribe(buf, filter)
		for open := true; open; {
			select {
			case <-ctx.Done():
				sub.Close()
				return
			case e, ok := <-sub.C:
				if !ok {
					open = false
					break
				}
				fn(e)
			}
		}
	}
}
