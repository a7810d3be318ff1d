package comfy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Follower reads an instance's /ws socket as one client id and reconnects
// with backoff when the socket drops. Events come in order on Events();
// when the socket drops it sends an EventDisconnected, and when it is back
// an EventReconnected: events in between are lost, so reconcile with
// /queue and /history then.
type Follower struct {
	c        *Client
	clientID string
	cfg      followConfig
	events   chan Event
	cancel   context.CancelFunc
	done     chan struct{}

	mu   sync.Mutex
	conn *websocket.Conn
}

type followConfig struct {
	flags  FeatureFlags
	buffer int
	ping   time.Duration
}

// FollowOption configures a Follower.
type FollowOption func(*followConfig)

// WithFeatureFlags sends {"type":"feature_flags"} as the first message of
// every connection, as the ComfyUI frontend does; with
// "supports_preview_metadata": true the instance sends type-4 previews.
func WithFeatureFlags(ff FeatureFlags) FollowOption {
	return func(c *followConfig) { c.flags = ff }
}

// WithEventBuffer sets the Events channel's capacity (default 256). A slow
// reader stalls the socket rather than losing events.
func WithEventBuffer(n int) FollowOption { return func(c *followConfig) { c.buffer = n } }

// WithPingInterval sets how often the follower pings; a socket that
// answers nothing for two intervals counts as dropped (default 15s).
func WithPingInterval(d time.Duration) FollowOption { return func(c *followConfig) { c.ping = d } }

// Follow starts following the socket as clientID (use the client_id the
// prompts were queued with). It runs until ctx ends or Close is called.
func (c *Client) Follow(ctx context.Context, clientID string, opts ...FollowOption) *Follower {
	cfg := followConfig{buffer: 256, ping: 15 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{c: c, clientID: clientID, cfg: cfg, events: make(chan Event, cfg.buffer), cancel: cancel, done: make(chan struct{})}
	go f.run(ctx)
	return f
}

// Events delivers the socket's events; it is closed when the follower stops.
func (f *Follower) Events() <-chan Event { return f.events }

// ClientID is the id the follower connects as.
func (f *Follower) ClientID() string { return f.clientID }

// Close stops the follower and waits for it to finish.
func (f *Follower) Close() {
	f.cancel()
	f.mu.Lock()
	if f.conn != nil {
		_ = f.conn.Close()
	}
	f.mu.Unlock()
	<-f.done
}

func (f *Follower) wsURL() string {
	u := *f.c.base
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	// The frontend opens the socket at the bare path, not under /api.
	u.Path = f.c.base.Path + "/ws"
	u.RawPath = ""
	q := url.Values{}
	if f.clientID != "" {
		q.Set("clientId", f.clientID)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (f *Follower) run(ctx context.Context) {
	defer close(f.done)
	defer close(f.events)
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: f.c.dial}
	var (
		attempts  int
		down      bool
		downSince time.Time
	)
	for ctx.Err() == nil {
		attempts++
		conn, _, err := dialer.DialContext(ctx, f.wsURL(), f.c.header)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !down {
				down, downSince = true, time.Now()
				f.emit(ctx, Event{Type: EventDisconnected, Msg: &Disconnected{Err: err}})
			}
			if !sleepCtx(ctx, f.backoff(attempts)) {
				return
			}
			continue
		}
		if down {
			f.emit(ctx, Event{Type: EventReconnected, Msg: &Reconnected{Attempts: attempts, Downtime: time.Since(downSince)}})
			down = false
		}
		attempts = 0
		err = f.serve(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		f.c.log.Warn("comfy: socket dropped, reconnecting", "url", f.c.base.String(), "client_id", f.clientID, "err", err)
		down, downSince = true, time.Now()
		f.emit(ctx, Event{Type: EventDisconnected, Msg: &Disconnected{Err: err}})
	}
}

// serve reads one connection until it fails.
func (f *Follower) serve(ctx context.Context, conn *websocket.Conn) error {
	f.mu.Lock()
	f.conn = conn
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.conn = nil
		f.mu.Unlock()
		_ = conn.Close()
	}()
	// Close the socket when ctx ends, so that ReadMessage returns.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	conn.SetReadLimit(64 << 20)
	deadline := func() { _ = conn.SetReadDeadline(time.Now().Add(2 * f.cfg.ping)) }
	deadline()
	conn.SetPongHandler(func(string) error { deadline(); return nil })
	pingDone := make(chan struct{})
	defer close(pingDone)
	go func() {
		t := time.NewTicker(f.cfg.ping)
		defer t.Stop()
		for {
			select {
			case <-pingDone:
				return
			case <-t.C:
				if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)) != nil {
					return
				}
			}
		}
	}()

	if f.cfg.flags != nil {
		frame, err := EncodeText(EventFeatureFlags, f.cfg.flags)
		if err != nil {
			return err
		}
		if err := conn.WriteMessage(websocket.TextMessage, frame); err != nil {
			return err
		}
	}
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		deadline()
		var ev Event
		switch mt {
		case websocket.TextMessage:
			ev, err = DecodeText(data)
		case websocket.BinaryMessage:
			ev, err = DecodeBinary(data)
		default:
			continue
		}
		if err != nil {
			// A message we cannot decode is passed on raw, not fatal.
			f.c.log.Warn("comfy: undecodable socket message", "err", err)
		}
		if !f.emit(ctx, ev) {
			return ctx.Err()
		}
	}
}

func (f *Follower) emit(ctx context.Context, ev Event) bool {
	select {
	case f.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *Follower) backoff(attempt int) time.Duration {
	first, max := f.c.backoff[0], f.c.backoff[1]
	d := first
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	// Jitter keeps many followers from reconnecting in lockstep.
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ErrFollowerClosed is returned by helpers waiting on a closed follower.
var ErrFollowerClosed = errors.New("comfy: follower closed")

// WaitFor reads events until match returns true and returns that event.
// It returns ErrFollowerClosed when the follower stops first.
func (f *Follower) WaitFor(ctx context.Context, match func(Event) bool) (Event, error) {
	for {
		select {
		case ev, ok := <-f.events:
			if !ok {
				return Event{}, ErrFollowerClosed
			}
			if match(ev) {
				return ev, nil
			}
		case <-ctx.Done():
			return Event{}, fmt.Errorf("comfy: waiting for event: %w", ctx.Err())
		}
	}
}
