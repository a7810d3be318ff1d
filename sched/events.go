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
//
// Subscriptions scoped to one participant are indexed by them, so an event
// about one participant's job costs the same with 2,000 sockets open as
// with 20.
type Bus struct {
	mu    sync.RWMutex
	all   map[*Subscription]struct{}            // unscoped: every event
	users map[string]map[*Subscription]struct{} // scoped, by participant
	rooms map[string]map[*Subscription]struct{} // scoped, by the room-wide event types they take
	n     atomic.Int32
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	return &Bus{
		all:   map[*Subscription]struct{}{},
		users: map[string]map[*Subscription]struct{}{},
		rooms: map[string]map[*Subscription]struct{}{},
	}
}

// Subscription receives events on C until it is closed or falls behind.
type Subscription struct {
	C      <-chan Event
	c      chan Event
	bus    *Bus
	user   string
	rooms  []string
	once   sync.Once
	filter func(Event) bool
}

// Subscribe returns a subscription with room for buf events. filter, if not
// nil, picks the events it gets.
func (b *Bus) Subscribe(buf int, filter func(Event) bool) *Subscription {
	return b.subscribe(&Subscription{filter: filter}, buf)
}

// SubscribeUser is Subscribe limited to the events of one participant (a
// job, progress or engine frame of theirs) that pass filter, and to the
// events about nobody in particular (announcements, workers...) of the
// types in room.
func (b *Bus) SubscribeUser(user string, buf int, room []string, filter func(Event) bool) *Subscription {
	if user == "" {
		panic("sched: SubscribeUser without a user")
	}
	return b.subscribe(&Subscription{user: user, rooms: room, filter: filter}, buf)
}

func (b *Bus) subscribe(s *Subscription, buf int) *Subscription {
	c := make(chan Event, buf)
	s.C, s.c, s.bus = c, c, b
	b.mu.Lock()
	if s.user == "" {
		b.all[s] = struct{}{}
	} else {
		addTo(b.users, s.user, s)
		for _, typ := range s.rooms {
			addTo(b.rooms, typ, s)
		}
	}
	b.n.Add(1)
	b.mu.Unlock()
	return s
}

func addTo(m map[string]map[*Subscription]struct{}, key string, s *Subscription) {
	if m[key] == nil {
		m[key] = map[*Subscription]struct{}{}
	}
	m[key][s] = struct{}{}
}

func removeFrom(m map[string]map[*Subscription]struct{}, key string, s *Subscription) {
	if set := m[key]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, key)
		}
	}
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
		if s.user == "" {
			delete(b.all, s)
		} else {
			removeFrom(b.users, s.user, s)
			for _, typ := range s.rooms {
				removeFrom(b.rooms, typ, s)
			}
		}
		b.n.Add(-1)
		close(s.c)
	})
}

// HasSubscribers reports whether anyone listens, so publishers can skip
// building events nobody reads.
func (b *Bus) HasSubscribers() bool { return b.n.Load() > 0 }

// owner is the participant an event is about, or "" for the whole room.
func (e *Event) owner() string {
	switch {
	case e.UserID != "":
		return e.UserID
	case e.Job != nil:
		return e.Job.UserID
	case e.Progress != nil:
		return e.Progress.UserID
	}
	return ""
}

// Publish sends e to every subscriber it concerns without blocking.
func (b *Bus) Publish(e Event) {
	var lagging []*Subscription
	send := func(subs map[*Subscription]struct{}) {
		for s := range subs {
			if s.filter != nil && !s.filter(e) {
				continue
			}
			select {
			case s.c <- e:
			default:
				lagging = append(lagging, s)
			}
		}
	}
	b.mu.RLock()
	send(b.all)
	if u := e.owner(); u != "" {
		send(b.users[u])
	} else {
		send(b.rooms[e.Type])
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
