package proxy

import "sync"

// DefaultMaxSockets is how many ComfyUI sockets one seat may hold open: a
// few tabs, not a flood that each costs the server a subscription.
const DefaultMaxSockets = 8

// sockets tracks each participant's open ComfyUI sockets, to count them
// (who is online, the cap) and to close them when the seat's sessions end.
type sockets struct {
	mu sync.Mutex
	by map[string]map[*socketRef]struct{}
}

// socketRef is one open socket; end closes when it must stop.
type socketRef struct {
	end  chan struct{}
	once sync.Once
}

func (r *socketRef) stop() { r.once.Do(func() { close(r.end) }) }

func newSockets() *sockets { return &sockets{by: map[string]map[*socketRef]struct{}{}} }

// open registers a socket of user unless user already holds max.
func (s *sockets) open(user string, max int) (*socketRef, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.by[user]) >= max {
		return nil, false
	}
	r := &socketRef{end: make(chan struct{})}
	if s.by[user] == nil {
		s.by[user] = map[*socketRef]struct{}{}
	}
	s.by[user][r] = struct{}{}
	return r, true
}

func (s *sockets) close(user string, r *socketRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.by[user], r)
	if len(s.by[user]) == 0 {
		delete(s.by, user)
	}
}

func (s *sockets) count(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by[user])
}

// endAll tells every socket of user to close.
func (s *sockets) endAll(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.by[user] {
		r.stop()
	}
}
