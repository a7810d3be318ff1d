package tunnel

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// SessionConfig tunes the yamux session. Both ends use it; zero fields take
// the defaults below. A dead (half-open) tunnel is detected within
// KeepAliveInterval + KeepAliveTimeout (14 s by default): a ping goes out
// every KeepAliveInterval, and a ping not answered, or a frame not written,
// within KeepAliveTimeout closes the session.
type SessionConfig struct {
	// KeepAliveInterval is the time between pings. Default 4 s.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout bounds the wait for a ping's answer and for any frame
	// write (yamux's ConnectionWriteTimeout). Default 10 s.
	KeepAliveTimeout time.Duration
	// StreamWindow is the most bytes a stream may have in flight unread
	// (yamux's MaxStreamWindowSize). One stream's throughput is bounded by
	// about StreamWindow*0.75 / RTT. Default 16 MiB.
	StreamWindow uint32
	// StreamOpenTimeout bounds the wait for the peer to accept a new stream;
	// past it yamux closes the whole session. Default 30 s.
	StreamOpenTimeout time.Duration
	// StreamCloseTimeout bounds how long a stream stays half-closed before it
	// is reset. Default 2 min.
	StreamCloseTimeout time.Duration
	// AcceptBacklog is the number of streams that may wait to be accepted.
	// Default 256.
	AcceptBacklog int
}

// Defaults of SessionConfig.
const (
	DefaultKeepAliveInterval  = 4 * time.Second
	DefaultKeepAliveTimeout   = 10 * time.Second
	DefaultStreamWindow       = 16 << 20
	DefaultStreamOpenTimeout  = 30 * time.Second
	DefaultStreamCloseTimeout = 2 * time.Minute
	DefaultAcceptBacklog      = 256
)

func (c SessionConfig) withDefaults() SessionConfig {
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.StreamWindow < 256<<10 { // yamux's initial window is the floor
		c.StreamWindow = 256 << 10
	}
	if c.StreamOpenTimeout <= 0 {
		c.StreamOpenTimeout = DefaultStreamOpenTimeout
	}
	if c.StreamCloseTimeout <= 0 {
		c.StreamCloseTimeout = DefaultStreamCloseTimeout
	}
	if c.AcceptBacklog <= 0 {
		c.AcceptBacklog = DefaultAcceptBacklog
	}
	return c
}

// yamuxConfig returns the yamux configuration for c, logging yamux's own
// messages to log at debug level (the tunnel logs what matters itself).
func (c SessionConfig) yamuxConfig(log *slog.Logger) *yamux.Config {
	c = c.withDefaults()
	return &yamux.Config{
		AcceptBacklog:          c.AcceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      c.KeepAliveInterval,
		ConnectionWriteTimeout: c.KeepAliveTimeout,
		MaxStreamWindowSize:    c.StreamWindow,
		StreamOpenTimeout:      c.StreamOpenTimeout,
		StreamCloseTimeout:     c.StreamCloseTimeout,
		LogOutput:              &slogWriter{log: log},
	}
}

// slogWriter turns yamux's log lines into slog debug records.
type slogWriter struct {
	log *slog.Logger
}

func (w *slogWriter) Write(p []byte) (int, error) {
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		for line := range bytes.SplitSeq(bytes.TrimSpace(p), []byte("\n")) {
			w.log.Debug("yamux", "msg", strings.TrimSpace(string(line)))
		}
	}
	return len(p), nil
}

// discardLogger is used when a config has no logger.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discardLogger
	}
	return l
}

// backoff computes reconnect delays: exponential growth from min to max with
// full jitter (a uniform pick in [0, cap], floored at min).
type backoff struct {
	min, max time.Duration
	attempt  int
}

func (b *backoff) next() time.Duration {
	ceiling := b.max
	if b.attempt < 32 {
		if c := b.min << b.attempt; c > 0 && c < b.max {
			ceiling = c
		}
	}
	b.attempt++
	d := time.Duration(rand.Int64N(int64(ceiling) + 1))
	return max(d, b.min)
}

func (b *backoff) reset() { b.attempt = 0 }

// bufPool holds the copy buffers of spliced streams: big buffers make big
// yamux frames, which is most of the tunnel's throughput.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
