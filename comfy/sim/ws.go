package sim

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// hub holds the open /ws sockets by client id, like PromptServer.sockets.
type hub struct {
	mu    sync.Mutex
	socks map[string]*socket
	all   map[*socket]bool // includes sockets replaced by a newer one with the same id
}

// socket is one /ws connection. A writer goroutine drains its queue, so
// the executor never waits on a slow client.
type socket struct {
	sid   string
	conn  *websocket.Conn
	out   chan wsFrame
	flags map[string]any
	mu    sync.Mutex
	done  chan struct{}
	once  sync.Once
}

type wsFrame struct {
	binary bool
	data   []byte
}

func newHub() *hub { return &hub{socks: map[string]*socket{}, all: map[*socket]bool{}} }

var upgrader = websocket.Upgrader{
	// ComfyUI checks Origin only against Host for loopback hosts; the
	// workshop server proxies from other origins, so accept all.
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  4096,
	WriteBufferSize: 64 << 10,
}

func (s *socket) close() {
	s.once.Do(func() {
		close(s.done)
		_ = s.conn.Close()
	})
}

func (s *socket) supportsPreviewMetadata() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := s.flags["supports_preview_metadata"].(bool)
	return b
}

func (s *socket) enqueue(f wsFrame) {
	select {
	case s.out <- f:
	case <-s.done:
	default:
		// A client this far behind is gone for practical purposes; ComfyUI
		// would stall everyone on it, we drop it instead.
		s.close()
	}
}

func (s *socket) writeLoop() {
	for {
		select {
		case f := <-s.out:
			mt := websocket.TextMessage
			if f.binary {
				mt = websocket.BinaryMessage
			}
			_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if err := s.conn.WriteMessage(mt, f.data); err != nil {
				s.close()
				return
			}
		case <-s.done:
			return
		}
	}
}

// send delivers a frame to sid, or to every socket when sid is nil (how
// ComfyUI treats events of a prompt queued without a client_id).
func (h *hub) send(sid *string, f wsFrame) {
	h.mu.Lock()
	var targets []*socket
	if sid == nil {
		for _, s := range h.socks {
			targets = append(targets, s)
		}
	} else if s, ok := h.socks[*sid]; ok {
		targets = append(targets, s)
	}
	h.mu.Unlock()
	for _, s := range targets {
		s.enqueue(f)
	}
}

func (h *hub) sendJSON(sid *string, typ string, data any) {
	b, err := comfy.EncodeText(typ, data)
	if err != nil {
		return
	}
	h.send(sid, wsFrame{data: b})
}

func (h *hub) lookup(sid string) *socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.socks[sid]
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.socks)
}

// dropAll cuts every socket without a close frame, like a network failure.
func (h *hub) dropAll() int {
	h.mu.Lock()
	var all []*socket
	for s := range h.all {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		if nc := s.conn.NetConn(); nc != nil {
			_ = nc.Close()
		}
		s.close()
	}
	return len(all)
}

// serveWS is GET /ws.
func (srv *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	sid := r.URL.Query().Get("clientId")
	if sid == "" {
		sid = uuid.NewString()
		sid = sid[:8] + sid[9:13] + sid[14:18] + sid[19:23] + sid[24:] // uuid4().hex
	}
	s := &socket{sid: sid, conn: conn, out: make(chan wsFrame, 4096), done: make(chan struct{}), flags: map[string]any{}}
	h := srv.hub
	h.mu.Lock()
	// ComfyUI forgets the old socket of a reused id but does not close it.
	h.socks[sid] = s
	h.all[s] = true
	h.mu.Unlock()
	srv.stats.wsConnects.Add(1)
	go s.writeLoop()
	defer func() {
		h.mu.Lock()
		if h.socks[sid] == s {
			delete(h.socks, sid)
		}
		delete(h.all, s)
		h.mu.Unlock()
		s.close()
	}()

	// The node running at connect time, read before the first status goes
	// out: read after, a prompt posted on seeing that status could already
	// be at a node, whose executing would then come twice.
	node, running := srv.exec.currentNodeFor(sid)
	first, _ := comfy.EncodeText(comfy.EventStatus, jsonobj.Of("status", srv.queueInfo(), "sid", sid))
	s.enqueue(wsFrame{data: first})
	if running {
		b, _ := comfy.EncodeText(comfy.EventExecuting, jsonobj.Of("node", node))
		s.enqueue(wsFrame{data: b})
	}

	firstMsg := true
	conn.SetReadLimit(16 << 20)
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if mt != websocket.TextMessage {
			continue
		}
		var msg struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal(data, &msg) != nil {
			continue
		}
		if firstMsg && msg.Type == comfy.EventFeatureFlags && !srv.cfg.Legacy { // feature flags came in 2025
			s.mu.Lock()
			s.flags = msg.Data
			s.mu.Unlock()
			b, _ := comfy.EncodeText(comfy.EventFeatureFlags, srv.features())
			s.enqueue(wsFrame{data: b})
		}
		firstMsg = false
	}
}
