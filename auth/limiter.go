package auth

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Limiter tracks, so a flood of addresses
// cannot grow its table without end.
const DefaultMaxKeys = 10000

// Limiter counts events (failed logins, wrong join codes) per key (an
// address, a code, "all") in fixed windows, to slow guessing down. It
// tracks at most MaxKeys keys: past that, expired windows are dropped
// first, then arbitrary ones, which only ever gives a key a fresh window.
type Limiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	maxKeys int
	now     func() time.Time
	counts  map[string]*count
}

type count struct {
	start time.Time
	n     int
}

// NewLimiter allows max events per key per window.
func NewLimiter(max int, window time.Duration) *Limiter {
	return &Limiter{max: max, window: window, maxKeys: DefaultMaxKeys, now: time.Now, counts: map[string]*count{}}
}

// WithMaxKeys sets how many keys l tracks at most.
func (l *Limiter) WithMaxKeys(n int) *Limiter {
	l.maxKeys = max(n, 1)
	return l
}

// current returns key's count in the window now, nil when it has none.
func (l *Limiter) current(key string, now time.Time) *count {
	c := l.counts[key]
	if c != nil && now.Sub(c.start) >= l.window {
		delete(l.counts, key)
		return nil
	}
	return c
}

// Take counts one event for key if it is under its limit, and reports
// whether it was: check and count in one step, so that concurrent callers
// cannot all pass a check made before any of them is counted.
func (l *Limiter) Take(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if c := l.current(key, now); c != nil && c.n >= l.max {
		return false
	}
	l.add(key, now)
	return true
}

// Reset forgets key's count (after a successful login, say).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.counts, key)
}

// Len is the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts)
}

func (l *Limiter) add(key string, now time.Time) {
	c := l.current(key, now)
	if c == nil {
		l.makeRoom(now)
		c = &count{start: now}
		l.counts[key] = c
	}
	c.n++
}

// makeRoom keeps the table under maxKeys before a key is added.
func (l *Limiter) makeRoom(now time.Time) {
	if len(l.counts) < l.maxKeys {
		return
	}
	for k, c := range l.counts {
		if now.Sub(c.start) >= l.window {
			delete(l.counts, k)
		}
	}
	// Still full: drop a tenth at once, so the sweep above runs once per
	// many new keys, not on each.
	for k := range l.counts {
		if len(l.counts) < l.maxKeys-l.maxKeys/10 {
			break
		}
		delete(l.counts, k)
	}
}
