package tunnel

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

const testToken = "s3cret-agent-token"

// testLogger logs to the test output when TUNNEL_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TUNNEL_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// startServer runs a tunnel.Server behind a net/http test server at /tunnel.
func startServer(t testing.TB, cfg ServerConfig) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Token == "" && cfg.CheckToken == nil {
		cfg.Token = testToken
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv := NewServer(cfg)
	mux := http.NewServeMux()
	mux.Handle("GET /tunnel", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = srv.Close() }) // runs first: ends the hijacked handlers
	return srv, ts
}

type runningAgent struct {
	agent  *Agent
	cancel context.CancelFunc
	done   chan error
	conns  chan uint64 // OnConnect
	drops  chan error  // OnDisconnect
}

// startAgent runs an agent until the test ends.
func startAgent(t testing.TB, cfg AgentConfig) *runningAgent {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	ra := &runningAgent{done: make(chan error, 1), conns: make(chan uint64, 100), drops: make(chan error, 100)}
	cfg.OnConnect = func(id uint64) { ra.conns <- id }
	cfg.OnDisconnect = func(err error) { ra.drops <- err }
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatalf("NewAgent: %v", err)
	}
	ra.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	ra.cancel = cancel
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ra.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop within 10 s of cancel")
		}
	})
	return ra
}

// fakeAgent connects as an agent with the given instances and hands every
// stream the server opens, with its header read, to handle; what to answer
// is up to handle.
func fakeAgent(t testing.TB, serverURL, name string, instances []string, handle func(*yamux.Stream, streamHeader)) {
	t.Helper()
	var ins []Instance
	for _, in := range instances {
		ins = append(ins, Instance{Name: in, URL: "http://127.0.0.1:1"})
	}
	a, err := NewAgent(AgentConfig{ServerURL: serverURL, Token: testToken, Name: name, Instances: ins})
	if err != nil {
		t.Fatal(err)
	}
	a.setLatest(a.collect(context.Background()))
	conn, err := a.dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(conn, a.ycfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = sess.Close(); wg.Wait() })
	as := &agentSession{a: a, sess: sess, ctx: context.Background()}
	if _, err := as.handshake(); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer st.Close()
				var h streamHeader
				if readFrame(st, maxHeaderFrame, &h) == nil {
					handle(st, h)
				}
			})
		}
	})
}

// within fails the test if ch yields nothing within d (a safety net: tests
// wait on events, never on time).
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
	var zero T
	return zero
}

// nextEvent returns the next event of the given type, skipping reports
// unless they are asked for.
func nextEvent(t testing.TB, events <-chan Event, want EventType) Event {
	t.Helper()
	for {
		e := within(t, events, 20*time.Second, "agent event "+want.String())
		if e.Type == want {
			return e
		}
		if e.Type != AgentReported {
			t.Fatalf("got event %v (agent %s session %d, err %v), want %v", e.Type, e.Agent.Name, e.Agent.SessionID, e.Err, want)
		}
	}
}

// relay is a loopback TCP relay that can stall (stop forwarding without
// closing), cut every connection, or delay every chunk.
type relay struct {
	ln     net.Listener
	target string
	delay  time.Duration // one way
	// rate, when set (bytes/s), makes each direction a link of that speed
	// with a queue in front, as a GPU host's uplink: bytes wait their turn
	// to be sent, then travel for delay.
	rate float64

	mu      sync.Mutex
	paused  bool
	resumed chan struct{}
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newRelay(t testing.TB, target string, delay time.Duration) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, delay: delay, resumed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(r.resumed)
	r.wg.Add(1)
	go r.acceptLoop()
	t.Cleanup(r.close)
	return r
}

func (r *relay) URL() string { return "http://" + r.ln.Addr().String() }

func (r *relay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c] = struct{}{}
		r.conns[up] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(up, c)
		go r.pipe(c, up)
	}
}

// Pause stops forwarding on every connection, old and new, without closing.
func (r *relay) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.paused {
		r.paused = true
		r.resumed = make(chan struct{})
	}
}

// Resume forwards again.
func (r *relay) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused {
		r.paused = false
		close(r.resumed)
	}
}

// KillAll closes every relayed connection.
func (r *relay) KillAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		_ = c.Close()
	}
}

func (r *relay) close() {
	_ = r.ln.Close()
	r.Resume()
	r.KillAll()
	r.wg.Wait()
}

func (r *relay) gate() {
	r.mu.Lock()
	ch := r.resumed
	r.mu.Unlock()
	<-ch
}

func (r *relay) forget(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		r.forget(dst)
		r.forget(src)
	}()
	if r.delay > 0 {
		r.delayedPipe(dst, src)
		return
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.gate()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

type chunk struct {
	data []byte
	due  time.Time
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// delayedPipe delivers every chunk r.delay after it was read, in order, as a
// pipeline: reading goes on while earlier chunks wait out their delay.
func (r *relay) delayedPipe(dst, src net.Conn) {
	ch := make(chan chunk, 16384)
	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		broken := false
		var linkFree time.Time // when the link has sent what is ahead
		for c := range ch {
			if r.rate > 0 {
				// Queued behind what is ahead, sent at the link's rate, then
				// delay on the wire.
				start := c.due.Add(-r.delay)
				if linkFree.After(start) {
					start = linkFree
				}
				sent := start.Add(time.Duration(float64(len(c.data)) / r.rate * float64(time.Second)))
				linkFree = sent
				c.due = sent.Add(r.delay)
			}
			if !broken {
				if wait := time.Until(c.due); wait > 0 {
					timer.Reset(wait)
					<-timer.C
				}
				if _, err := dst.Write(c.data); err != nil {
					broken = true
					_ = src.Close()
				}
			}
			b := c.data[:cap(c.data)]
			chunkPool.Put(&b)
		}
	}()
	for {
		bp := chunkPool.Get().(*[]byte)
		n, err := src.Read(*bp)
		if n > 0 {
			ch <- chunk{data: (*bp)[:n], due: time.Now().Add(r.delay)}
		}
		if err != nil {
			break
		}
	}
	close(ch)
	<-done
}

// tcpServer is a raw TCP instance that runs handle on each connection
// (closing it after) until the test ends.
func tcpServer(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// echoServer is a raw TCP instance that echoes until EOF, then half-closes.
func echoServer(t testing.TB) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
}
