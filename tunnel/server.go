package tunnel

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Token is the agent token. Ignored when CheckToken is set. With neither,
	// every agent is refused.
	Token string
	// CheckToken decides whether a bearer token is valid. It must compare in
	// constant time; TokenChecker builds one. A token it accepts may take
	// any agent name not Reserved (a shared token). Ignored when Identify is
	// set.
	CheckToken func(token string) bool
	// Identify says who a bearer token is: the key that names it and the
	// agent name it is bound to (per-host tokens), or no name (a shared
	// token). It must compare in constant time or look up a hash.
	Identify func(token string) (Identity, bool)
	// Reserved reports agent names bound to a token of their own, which a
	// token without a name cannot take.
	Reserved func(name string) bool
	// Session tunes yamux (keepalive, stream window).
	Session SessionConfig
	// HelloTimeout bounds the time from the upgrade to the agent's hello.
	// Default 15 s.
	HelloTimeout time.Duration
	// DialTimeout bounds the wait for the agent's answer to a new stream
	// (which includes the agent's dial of the local instance). Default 15 s.
	DialTimeout time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Identity is what an agent's token says about it.
type Identity struct {
	// Key names the token (its hash, say). Only a session with the same
	// key may replace a live session of the same name, and Revoke closes
	// the sessions of a key.
	Key string
	// Name is the agent name the token is bound to; "" lets the agent
	// choose any name not Reserved.
	Name string
}

// sharedKey is the key of the tokens CheckToken accepts.
const sharedKey = "shared"

// TokenChecker returns a CheckToken function accepting exactly the given
// non-empty tokens, compared in constant time.
func TokenChecker(tokens ...string) func(string) bool {
	var sums [][sha256.Size]byte
	for _, t := range tokens {
		if t != "" {
			sums = append(sums, sha256.Sum256([]byte(t)))
		}
	}
	return func(token string) bool {
		got := sha256.Sum256([]byte(token))
		ok := 0
		for _, want := range sums {
			ok |= subtle.ConstantTimeCompare(got[:], want[:])
		}
		return ok == 1 && token != ""
	}
}

// Server is the server end of agent tunnels. It authorizes agents, runs a
// yamux session per connected agent, tracks agents by name and dials their
// instances. Create it with NewServer; its zero value is not usable.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	ycfg     *yamux.Config
	identify func(string) (Identity, bool)

	wg sync.WaitGroup // ServeConn calls

	mu       sync.Mutex
	closed   bool
	nextID   uint64
	agents   map[string]*agentConn
	revoked  map[string]time.Time // key -> when it was revoked
	sessions map[*yamux.Session]struct{}
	subs     map[*subscriber]struct{}
	changed  chan struct{} // closed and replaced on every change of agents
}

// NewServer returns a Server for cfg.
func NewServer(cfg ServerConfig) *Server {
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 15 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	cfg.Session = cfg.Session.withDefaults()
	log := loggerOr(cfg.Logger).With("component", "tunnel")
	identify := cfg.Identify
	if identify == nil {
		check := cfg.CheckToken
		if check == nil {
			check = TokenChecker(cfg.Token)
		}
		identify = func(token string) (Identity, bool) { return Identity{Key: sharedKey}, check(token) }
	}
	return &Server{
		cfg:      cfg,
		log:      log,
		ycfg:     cfg.Session.yamuxConfig(log),
		identify: identify,
		agents:   make(map[string]*agentConn),
		revoked:  make(map[string]time.Time),
		sessions: make(map[*yamux.Session]struct{}),
		subs:     make(map[*subscriber]struct{}),
		changed:  make(chan struct{}),
	}
}

// Authorize checks the value of an Authorization header ("Bearer <token>").
// It returns nil or an error wrapping ErrUnauthorized; on error the HTTP
// handler answers 401 and does nothing else.
func (s *Server) Authorize(authorization string) error {
	_, err := s.Authenticate(authorization)
	return err
}

// Authenticate is Authorize that also returns the token's identity, for
// ServeAgent.
func (s *Server) Authenticate(authorization string) (Identity, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Identity{}, fmt.Errorf("%w: missing bearer token", ErrUnauthorized)
	}
	id, ok := s.identify(strings.TrimSpace(token))
	if !ok || id.Key == "" {
		return Identity{}, ErrUnauthorized
	}
	return id, nil
}

// Revoke closes the sessions of the tokens of key (ErrRevoked), and keeps
// any session authenticated before now from registering later. The caller
// makes the token itself invalid.
func (s *Server) Revoke(key string) int {
	s.mu.Lock()
	s.revoked[key] = time.Now()
	var gone []*agentConn
	for _, ac := range s.agents {
		if ac.ident.Key == key {
			gone = append(gone, ac)
		}
	}
	s.mu.Unlock()
	for _, ac := range gone {
		ac.fail(ErrRevoked)
	}
	return len(gone)
}

// AgentInfo is a snapshot of one connected agent. Treat its slices as
// read-only: they are shared with other snapshots.
type AgentInfo struct {
	Name     string
	Version  string
	Hostname string
	// SessionID identifies this connection of the agent; a reconnect gets a
	// new one.
	SessionID   uint64
	RemoteAddr  string
	ConnectedAt time.Time
	// Report is the agent's latest report (the one in its hello until the
	// first periodic report), with its instances and GPUs.
	Report     Report
	ReportedAt time.Time
}

// EventType says what happened to an agent.
type EventType int

// Event types.
const (
	AgentConnected EventType = iota + 1
	AgentReported
	AgentDisconnected
)

func (t EventType) String() string {
	switch t {
	case AgentConnected:
		return "connected"
	case AgentReported:
		return "reported"
	case AgentDisconnected:
		return "disconnected"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change of an agent, as Subscribe delivers it. Each session
// yields exactly one AgentConnected, then any number of AgentReported, then
// exactly one AgentDisconnected; when a session of the same name replaces
// another, the old session's AgentDisconnected (Err: ErrReplaced) comes
// before the new one's AgentConnected.
type Event struct {
	Type  EventType
	Agent AgentInfo
	// Err is why the session ended (AgentDisconnected only).
	Err error
}

// agentConn is one live agent session.
type agentConn struct {
	srv         *Server
	id          uint64
	ident       Identity
	hello       Hello
	remote      string
	connectedAt time.Time
	sess        *yamux.Session
	ctrl        *yamux.Stream
	log         *slog.Logger
	closeq      chan uint32 // stream ids to send close_stream for

	wmu sync.Mutex // control stream writes

	failOnce sync.Once
	failErr  error // the first reason the session ended

	// guarded by srv.mu
	report     Report
	reportedAt time.Time
	gone       bool // its AgentDisconnected is published
}

func (ac *agentConn) info() AgentInfo {
	return AgentInfo{
		Name:        ac.hello.Name,
		Version:     ac.hello.Version,
		Hostname:    ac.hello.Hostname,
		SessionID:   ac.id,
		RemoteAddr:  ac.remote,
		ConnectedAt: ac.connectedAt,
		Report:      ac.report,
		ReportedAt:  ac.reportedAt,
	}
}

// fail records why the session ends and closes it.
func (ac *agentConn) fail(err error) {
	ac.failOnce.Do(func() { ac.failErr = err })
	_ = ac.sess.Close()
}

func (ac *agentConn) send(m controlMsg) error {
	ac.wmu.Lock()
	defer ac.wmu.Unlock()
	_ = ac.ctrl.SetWriteDeadline(time.Now().Add(ac.srv.cfg.Session.KeepAliveTimeout))
	return writeFrame(ac.ctrl, m)
}

// ServeConn is ServeAgent for a server with one shared token (Token or
// CheckToken), whose agents may take any name.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	return s.ServeAgent(ctx, conn, Identity{Key: sharedKey})
}

// ServeAgent runs the tunnel on conn, an already-upgraded connection (the
// 101 answer written, nothing else), for the agent that Authenticate
// identified as id, until the session ends or ctx is done. It clears
// deadlines the HTTP server may have left on conn, and closes conn. It
// returns why the session ended.
func (s *Server) ServeAgent(ctx context.Context, conn net.Conn, id Identity) error {
	authAt := time.Now()
	_ = conn.SetDeadline(time.Time{})
	conn = &unblockingConn{Conn: conn}
	remote := addrString(conn.RemoteAddr())
	log := s.log.With("remote", remote)
	sess, err := yamux.Server(conn, s.ycfg)
	if err != nil {
		_ = conn.Close()
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = sess.Close()
		return ErrServerClosed
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		_ = sess.Close()
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
		s.wg.Done()
	}()
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stop()

	ac, err := s.handshake(ctx, sess, remote, log)
	if err != nil {
		log.Warn("agent handshake failed", "err", err)
		return err
	}
	ac.ident = id
	if err := s.register(ac, authAt); err != nil {
		ac.log.Warn("agent refused", "err", err)
		_ = ac.send(controlMsg{Type: msgError, Error: err.Error()})
		lingerForAgent(sess, s.cfg.HelloTimeout)
		return err
	}
	ac.log.Info("agent connected", "version", ac.hello.Version, "instances", len(ac.hello.Report.Instances))

	var wg sync.WaitGroup
	wg.Go(ac.controlLoop)
	wg.Go(ac.closeLoop)
	if err := ac.send(controlMsg{Type: msgWelcome, Session: ac.id}); err != nil {
		ac.fail(fmt.Errorf("sending welcome: %w", err))
	}
	acceptErr := ac.acceptLoop()
	ac.fail(acceptErr)
	wg.Wait()
	reason := ac.failErr
	if ctx.Err() != nil {
		reason = ctx.Err()
	}
	s.unregister(ac, reason)
	ac.log.Info("agent disconnected", "reason", reason)
	return reason
}

// handshake accepts the control stream and reads the hello.
func (s *Server) handshake(ctx context.Context, sess *yamux.Session, remote string, log *slog.Logger) (*agentConn, error) {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HelloTimeout)
	defer cancel()
	st, err := sess.AcceptStreamWithContext(hctx)
	if err != nil {
		return nil, fmt.Errorf("waiting for the control stream: %w", err)
	}
	_ = st.SetDeadline(time.Now().Add(s.cfg.HelloTimeout))
	var h streamHeader
	if err := readFrame(st, maxHeaderFrame, &h); err != nil {
		return nil, fmt.Errorf("reading the control stream header: %w", err)
	}
	if h.Op != opControl {
		_ = writeFrame(st, streamReply{Code: codeBadRequest, Error: "the first stream must be the control stream"})
		return nil, fmt.Errorf("first stream has op %q, want %q", h.Op, opControl)
	}
	if err := writeFrame(st, streamReply{OK: true}); err != nil {
		return nil, err
	}
	var m controlMsg
	if err := readFrame(st, maxControlFrame, &m); err != nil {
		return nil, fmt.Errorf("reading hello: %w", err)
	}
	if m.Type != msgHello || m.Hello == nil {
		return nil, fmt.Errorf("first control message is %q, want hello", m.Type)
	}
	if err := validateHello(m.Hello); err != nil {
		_ = writeFrame(st, controlMsg{Type: msgError, Error: err.Error()})
		lingerForAgent(sess, s.cfg.HelloTimeout)
		return nil, err
	}
	_ = st.SetDeadline(time.Time{})
	return &agentConn{
		srv:         s,
		hello:       *m.Hello,
		remote:      remote,
		connectedAt: time.Now(),
		sess:        sess,
		ctrl:        st,
		closeq:      make(chan uint32, 1024),
		report:      m.Hello.Report,
		reportedAt:  time.Now(),
		log:         log.With("agent", m.Hello.Name),
	}, nil
}

// lingerForAgent keeps a refused session open until the agent, having read
// why, closes it (or d passes): closing at once can drop the error frame,
// and the agent would only see "session shutdown".
func lingerForAgent(sess *yamux.Session, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sess.CloseChan():
	case <-t.C:
	}
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// ValidName reports whether s is a valid agent or instance name: 1 to 128
// letters, digits and . _ : @ -, starting with a letter or digit.
func ValidName(s string) bool { return namePattern.MatchString(s) }

func validateHello(h *Hello) error {
	if !ValidName(h.Name) {
		return fmt.Errorf("invalid agent name %q", h.Name)
	}
	seen := map[string]bool{}
	for _, in := range h.Report.Instances {
		if !ValidName(in.Name) {
			return fmt.Errorf("invalid instance name %q", in.Name)
		}
		if seen[in.Name] {
			return fmt.Errorf("duplicate instance name %q", in.Name)
		}
		seen[in.Name] = true
	}
	return nil
}

// register makes ac the session of its agent name, if its token may hold
// that name: its own name, or any free one for a token without a name; a
// live session of the name is replaced only by a session of the same
// token, so a token cannot take another host's name and its jobs.
func (s *Server) register(ac *agentConn, authAt time.Time) error {
	name := ac.hello.Name
	if ac.ident.Name != "" && ac.ident.Name != name {
		return fmt.Errorf("%w: this token belongs to agent %q, not %q: start the agent with --name %s", ErrNameTaken, ac.ident.Name, name, ac.ident.Name)
	}
	if ac.ident.Name == "" && s.cfg.Reserved != nil && s.cfg.Reserved(name) {
		return fmt.Errorf("%w: agent name %q has a token of its own: start that agent with it", ErrNameTaken, name)
	}
	s.mu.Lock()
	if at, ok := s.revoked[ac.ident.Key]; ok && !authAt.After(at) {
		s.mu.Unlock()
		return ErrRevoked
	}
	if old := s.agents[name]; old != nil && old.ident.Key != ac.ident.Key {
		s.mu.Unlock()
		return fmt.Errorf("%w: agent %q is connected with another token", ErrNameTaken, name)
	}
	s.nextID++
	ac.id = s.nextID
	ac.log = ac.log.With("session", ac.id)
	old := s.agents[ac.hello.Name]
	s.agents[ac.hello.Name] = ac
	if old != nil {
		old.gone = true
		s.publishLocked(Event{Type: AgentDisconnected, Agent: old.info(), Err: ErrReplaced})
	}
	s.publishLocked(Event{Type: AgentConnected, Agent: ac.info()})
	s.changedLocked()
	s.mu.Unlock()
	if old != nil {
		ac.log.Warn("agent session replaced an older one of the same name",
			"old_session", old.id, "old_remote", old.remote)
		old.fail(ErrReplaced)
	}
	return nil
}

func (s *Server) unregister(ac *agentConn, reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents[ac.hello.Name] == ac {
		delete(s.agents, ac.hello.Name)
	}
	if !ac.gone {
		ac.gone = true
		s.publishLocked(Event{Type: AgentDisconnected, Agent: ac.info(), Err: reason})
	}
	s.changedLocked()
}

// acceptLoop accepts the streams the agent opens (only the control stream
// exists today; others are refused) until the session ends.
func (ac *agentConn) acceptLoop() error {
	for {
		st, err := ac.sess.AcceptStream()
		if err != nil {
			return err
		}
		go func() {
			defer st.Close()
			_ = st.SetDeadline(time.Now().Add(ac.srv.cfg.HelloTimeout))
			var h streamHeader
			if err := readFrame(st, maxHeaderFrame, &h); err != nil {
				return
			}
			_ = writeFrame(st, streamReply{Code: codeBadRequest, Error: fmt.Sprintf("unsupported stream op %q", h.Op)})
		}()
	}
}

// controlLoop reads the agent's control messages until the stream fails.
func (ac *agentConn) controlLoop() {
	for {
		var m controlMsg
		if err := readFrame(ac.ctrl, maxControlFrame, &m); err != nil {
			ac.fail(fmt.Errorf("control stream: %w", err))
			return
		}
		switch m.Type {
		case msgReport:
			if m.Report == nil {
				continue
			}
			s := ac.srv
			s.mu.Lock()
			if !ac.gone {
				ac.report = *m.Report
				ac.reportedAt = time.Now()
				s.publishLocked(Event{Type: AgentReported, Agent: ac.info()})
			}
			s.mu.Unlock()
		default:
			ac.log.Debug("ignoring control message", "type", m.Type)
		}
	}
}

// closeLoop tells the agent about streams fully closed on this side.
func (ac *agentConn) closeLoop() {
	for {
		select {
		case id := <-ac.closeq:
			if err := ac.send(controlMsg{Type: msgCloseStream, Stream: id}); err != nil {
				ac.fail(fmt.Errorf("control stream: %w", err))
				return
			}
		case <-ac.sess.CloseChan():
			return
		}
	}
}

func (ac *agentConn) abortStream(id uint32) {
	select {
	case ac.closeq <- id:
	default: // the stream close timeout cleans it up eventually
	}
}

func (ac *agentConn) hasInstance(name string) bool {
	for _, in := range ac.hello.Report.Instances {
		if in.Name == name {
			return true
		}
	}
	return false
}

func (ac *agentConn) instanceNames() string {
	var names []string
	for _, in := range ac.hello.Report.Instances {
		names = append(names, in.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// DialInstance opens a connection to a local instance of a connected agent,
// over a fresh stream of its tunnel. It fails at once with an error wrapping
// ErrAgentNotConnected or ErrUnknownInstance when the server can tell
// (no such agent, or its hello named no such instance). Otherwise it returns
// without waiting for the agent's answer to the stream's header: what the
// caller writes goes right behind the header, so a request through a new
// connection costs one round trip, not two. The agent's refusal (its
// instance is down: ErrInstanceUnavailable; unknown to it:
// ErrUnknownInstance) is then the error of the first Read, and of every
// Read and Write after it, as a TLS handshake's error is; Handshake waits
// for the answer alone. The answer is due within ServerConfig.DialTimeout.
// ctx only bounds the opening; it does not affect the returned connection.
// Its Close fully closes (the agent drops the local connection at once);
// CloseWrite half-closes.
func (s *Server) DialInstance(ctx context.Context, agentName, instance string) (*Conn, error) {
	s.mu.Lock()
	ac := s.agents[agentName]
	s.mu.Unlock()
	if ac == nil {
		return nil, fmt.Errorf("%w: %q", ErrAgentNotConnected, agentName)
	}
	if !ac.hasInstance(instance) {
		return nil, fmt.Errorf("%w: agent %q has no instance %q (it has: %s)",
			ErrUnknownInstance, agentName, instance, ac.instanceNames())
	}
	return ac.dial(ctx, instance)
}

// Dialer returns a dial function for one instance, for an http.Transport's
// DialContext or a WebSocket dialer's NetDialContext: it ignores the network
// and address it is given. Both write their request at once and read the
// answer, so an agent's refusal comes back as the request's error.
func (s *Server) Dialer(agentName, instance string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := s.DialInstance(ctx, agentName, instance)
		if err != nil {
			return nil, err // not a nil *Conn in a non-nil net.Conn
		}
		return c, nil
	}
}

func (ac *agentConn) dial(ctx context.Context, instance string) (*Conn, error) {
	name := ac.hello.Name
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := ac.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrAgentNotConnected, name, err)
	}
	c := &Conn{st: st, ac: ac, remote: InstanceAddr{Agent: name, Instance: instance},
		answerBy: time.Now().Add(ac.srv.cfg.DialTimeout)}
	_ = st.SetDeadline(c.answerBy)
	err = writeFrame(st, streamHeader{V: protocolVersion, Op: opConnect, Instance: instance})
	_ = st.SetWriteDeadline(time.Time{})
	if err != nil {
		ac.abortStream(st.StreamID())
		_ = st.Close()
		if ac.sess.IsClosed() {
			return nil, fmt.Errorf("%w: %q: tunnel closed during dial: %v", ErrAgentNotConnected, name, err)
		}
		return nil, fmt.Errorf("tunnel: dial %s/%s: %w", name, instance, err)
	}
	return c, nil
}

// InstanceAddr is the remote address of a Conn.
type InstanceAddr struct{ Agent, Instance string }

// Network returns "tunnel".
func (InstanceAddr) Network() string  { return "tunnel" }
func (a InstanceAddr) String() string { return a.Agent + "/" + a.Instance }

// Conn is a connection to an agent's instance, from DialInstance. Its first
// Read (or Handshake) reads the agent's answer to the stream's header.
type Conn struct {
	st       *yamux.Stream
	ac       *agentConn
	remote   InstanceAddr
	answerBy time.Time // ServerConfig.DialTimeout after the dial

	answerOnce sync.Once
	mu         sync.Mutex
	answered   bool      // the answer was read (or failed)
	refused    error     // why the stream is refused; every Read and Write returns it
	readDL     time.Time // the caller's read deadline
	closed     bool
	eof        bool // the agent's side finished sending
}

// Handshake waits for the agent's answer to the stream's header and returns
// its refusal, if any. Read does it by itself; calling it is only needed to
// know before reading. ctx bounds the wait (closing the connection when it
// is done first).
func (c *Conn) Handshake(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	err := c.answer()
	if !stop() && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// answer reads the agent's answer once and returns what stops this
// connection: the refusal, or net.ErrClosed after Close.
func (c *Conn) answer() error {
	c.answerOnce.Do(c.readAnswer)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	return c.refused
}

func (c *Conn) readAnswer() {
	var rep streamReply
	err := readFrame(c.st, maxHeaderFrame, &rep)
	c.mu.Lock()
	c.answered = true
	_ = c.st.SetReadDeadline(c.readDL) // the caller's alone from now on
	closed := c.closed
	c.mu.Unlock()
	if err == nil && rep.OK {
		return
	}
	name, instance := c.remote.Agent, c.remote.Instance
	switch {
	case closed: // Close has told the agent
		err = net.ErrClosed
	case err == nil: // refused: the agent closed its side, and no splice runs
		sentinel := errors.New("tunnel: agent refused the stream")
		switch rep.Code {
		case codeUnknownInstance:
			sentinel = ErrUnknownInstance
		case codeUnavailable:
			sentinel = ErrInstanceUnavailable
		}
		err = fmt.Errorf("%w: %s/%s: %s", sentinel, name, instance, rep.Error)
	case c.ac.sess.IsClosed():
		err = fmt.Errorf("%w: %q: tunnel closed during dial: %v", ErrAgentNotConnected, name, err)
	case isTimeout(err) && !time.Now().Before(c.answerBy):
		err = fmt.Errorf("tunnel: dial %s/%s: the agent did not answer within %v: %w", name, instance, c.ac.srv.cfg.DialTimeout, err)
	default:
		err = fmt.Errorf("tunnel: dial %s/%s: %w", name, instance, err)
	}
	c.mu.Lock()
	c.refused = err
	c.mu.Unlock()
	if closed {
		return
	}
	if rep.Code == "" {
		// No answer: the agent may be splicing already.
		c.ac.abortStream(c.st.StreamID())
		_ = c.st.SetDeadline(time.Now())
	}
	_ = c.st.Close() // also wakes a Write waiting for the window
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Read reads from the instance.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.answer(); err != nil {
		return 0, err
	}
	n, err := c.st.Read(p)
	if err != nil {
		c.mu.Lock()
		if c.closed {
			err = net.ErrClosed
		} else if err == io.EOF {
			c.eof = true
		}
		c.mu.Unlock()
	}
	return n, err
}

// Write writes to the instance; before the agent's answer, right behind
// the stream's header.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	closed, refused := c.closed, c.refused
	c.mu.Unlock()
	switch {
	case closed:
		return 0, net.ErrClosed
	case refused != nil:
		return 0, refused
	}
	n, err := c.st.Write(p)
	if err != nil {
		c.mu.Lock()
		if c.refused != nil { // refused while this write waited
			err = c.refused
		}
		c.mu.Unlock()
	}
	return n, err
}

// CloseWrite half-closes: the instance reads EOF, and reading goes on.
func (c *Conn) CloseWrite() error { return c.st.Close() }

// Close closes both directions; the agent drops the local connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	done := c.eof || c.refused != nil
	c.mu.Unlock()
	if !done {
		// The instance may still be sending: have the agent drop it now
		// rather than after yamux's stream close timeout. (After EOF our FIN
		// below ends the agent's splice by itself; after a refusal there is
		// no splice.)
		c.ac.abortStream(c.st.StreamID())
	}
	_ = c.st.SetReadDeadline(time.Now()) // unblock a pending Read
	return c.st.Close()
}

// LocalAddr returns the server's address of the tunnel connection.
func (c *Conn) LocalAddr() net.Addr { return c.st.LocalAddr() }

// RemoteAddr returns the agent and instance names.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.st.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. Until the agent has answered,
// the answer's own deadline applies too, whichever is sooner.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if !c.answered && (t.IsZero() || c.answerBy.Before(t)) {
		t = c.answerBy
	}
	return c.st.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// Agents returns the connected agents, sorted by name.
func (s *Server) Agents() []AgentInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AgentInfo, 0, len(s.agents))
	for _, ac := range s.agents {
		out = append(out, ac.info())
	}
	slices.SortFunc(out, func(a, b AgentInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Agent returns the named agent if it is connected.
func (s *Server) Agent(name string) (AgentInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ac := s.agents[name]; ac != nil {
		return ac.info(), true
	}
	return AgentInfo{}, false
}

// WaitAgent waits until the named agent is connected and returns it.
func (s *Server) WaitAgent(ctx context.Context, name string) (AgentInfo, error) {
	for {
		s.mu.Lock()
		ac := s.agents[name]
		changed := s.changed
		var info AgentInfo
		if ac != nil {
			info = ac.info()
		}
		s.mu.Unlock()
		if ac != nil {
			return info, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return AgentInfo{}, ctx.Err()
		}
	}
}

// Subscribe returns a channel of agent events from now on, in order, none
// dropped except AgentReported events when the subscriber lags more than
// 4096 events behind. The channel closes after cancel or Server.Close.
func (s *Server) Subscribe() (<-chan Event, func()) {
	sub := &subscriber{
		signal: make(chan struct{}, 1),
		out:    make(chan Event),
		done:   make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(sub.out)
		return sub.out, func() {}
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go sub.pump()
	return sub.out, func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
		sub.stop()
	}
}

func (s *Server) publishLocked(e Event) {
	for sub := range s.subs {
		sub.push(e)
	}
}

func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Close closes every agent session, waits for the ServeConn calls to return
// and closes the Subscribe channels. ServeConn fails with ErrServerClosed
// afterwards.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sessions := make([]*yamux.Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		_ = sess.Close()
	}
	s.wg.Wait()
	s.mu.Lock()
	subs := s.subs
	s.subs = map[*subscriber]struct{}{}
	s.mu.Unlock()
	for sub := range subs {
		sub.finish()
	}
	return nil
}

// subscriber queues events for one Subscribe channel, without blocking the
// publisher.
type subscriber struct {
	mu       sync.Mutex
	queue    []Event
	finished bool // deliver what is queued, then close
	signal   chan struct{}
	out      chan Event
	done     chan struct{} // closed by cancel: close at once
	stopOnce sync.Once
}

const maxSubscriberQueue = 4096

func (sub *subscriber) push(e Event) {
	sub.mu.Lock()
	if len(sub.queue) >= maxSubscriberQueue && e.Type == AgentReported {
		sub.mu.Unlock()
		return
	}
	sub.queue = append(sub.queue, e)
	sub.mu.Unlock()
	select {
	case sub.signal <- struct{}{}:
	default:
	}
}

func (sub *subscriber) stop() {
	sub.stopOnce.Do(func() { close(sub.done) })
}

func (sub *subscriber) finish() {
	sub.mu.Lock()
	sub.finished = true
	sub.mu.Unlock()
	select {
	case sub.signal <- struct{}{}:
	default:
	}
}

func (sub *subscriber) pump() {
	defer close(sub.out)
	for {
		sub.mu.Lock()
		if len(sub.queue) == 0 {
			finished := sub.finished
			sub.mu.Unlock()
			if finished {
				return
			}
			select {
			case <-sub.signal:
				continue
			case <-sub.done:
				return
			}
		}
		e := sub.queue[0]
		sub.queue[0] = Event{}
		sub.queue = sub.queue[1:]
		sub.mu.Unlock()
		select {
		case sub.out <- e:
		case <-sub.done:
			return
		}
	}
}

// unblockingConn makes Close unblock pending reads and writes even where the
// connection's own Close does not: fasthttp's hijacked connection ignores
// Close until the hijack handler returns, and yamux waits for its reader to
// stop before its Close returns.
type unblockingConn struct {
	net.Conn
}

func (c *unblockingConn) Close() error {
	_ = c.Conn.SetDeadline(time.Now())
	return c.Conn.Close()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
