package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"sync"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
)

// liveState remembers the latest progress of every running job, so a
// participant who reconnects mid-job sees where it is at once.
type liveState struct {
	mu   sync.Mutex
	jobs map[string]*sched.Progress
}

func newLiveState() *liveState { return &liveState{jobs: map[string]*sched.Progress{}} }

func (l *liveState) run(ctx context.Context, q *sched.Queue) {
	q.Events().Follow(ctx, 4096, func(e sched.Event) bool {
		return e.Type == sched.EventJobProgress || (e.Type == sched.EventJobUpdated && e.Job != nil && e.Job.Status.Finished())
	}, func(e sched.Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if e.Progress != nil {
			p := *e.Progress
			p.Preview = ""
			l.jobs[p.JobID] = &p
		} else {
			delete(l.jobs, e.Job.ID)
		}
	})
}

func (l *liveState) of(user string) []sched.Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sched.Progress
	for _, p := range l.jobs {
		if p.UserID == user && p.Stage == "executing" {
			out = append(out, *p)
		}
	}
	return out
}

// serverFeatures are the feature flags this server announces on the socket.
var serverFeatures = map[string]any{"supports_preview_metadata": true, "max_upload_size": 100 << 20}

// socket is the participant's ComfyUI /ws: status first, then every event
// of their own jobs, and workshop messages for the extension.
func (p *Proxy) socket(c *fiber.Ctx) error {
	if !websocketUpgrade(c) {
		return workshop.Errorf(workshop.EINVALID, "/ws must be a WebSocket upgrade")
	}
	user := userOf(c)
	if p.sockets.count(user) >= p.cfg.MaxSockets {
		return workshop.Errorf(workshop.ETOOMANY, "this seat has %d ComfyUI pages open already: close one", p.cfg.MaxSockets)
	}
	sid := c.Query("clientId")
	if sid == "" {
		sid = uuid.NewString()
	}
	return websocket.New(func(conn *websocket.Conn) { p.serveSocket(conn, user, sid) })(c)
}

// rootSocket serves /ws at the site root for a signed-in participant, for
// clients that ignore the sub-path.
func (p *Proxy) rootSocket(c *fiber.Ctx) error {
	ses, ok := p.cfg.Seats.Session(c.Cookies(seats.CookieName))
	if !ok || ses.Seat == 0 {
		return c.Next() // the admin event socket answers
	}
	c.Locals(keyUser, workshop.UserID(ses.Seat))
	return p.socket(c)
}

type wsMsg struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

func (p *Proxy) serveSocket(conn *websocket.Conn, user, sid string) {
	// The count above was a quick refusal; this is the exact one.
	ref, ok := p.sockets.open(user, p.cfg.MaxSockets)
	if !ok {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "too many sockets for this seat"), time.Now().Add(time.Second))
		return
	}
	defer p.sockets.close(user, ref)
	// 64 events of room: enough for a job's burst of frames, and small, as
	// a workshop holds thousands of these sockets. One that falls behind is
	// closed and the frontend reconnects.
	sub := p.cfg.Queue.Events().SubscribeUser(user, 64, []string{sched.EventAnnouncement}, func(e sched.Event) bool {
		switch e.Type {
		case sched.EventEngine, sched.EventJobCreated, sched.EventJobUpdated, sched.EventAnnouncement:
			return true
		}
		return false
	})
	defer sub.Close()

	var wmu sync.Mutex
	write := func(typ int, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteMessage(typ, b)
	}
	writeJSON := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return write(websocket.TextMessage, b)
	}
	writeFrame := func(typ string, data jsonobj.Object) error {
		return write(websocket.TextMessage, frame(typ, raw(data)))
	}
	// The first status names the socket's id, as ComfyUI's does; later
	// ones are its broadcasts, without.
	queueStatus := func() jsonobj.Object {
		pending, running := p.cfg.Queue.Counts(user)
		return jsonobj.Of("status", jsonobj.Of("exec_info", jsonobj.Of("queue_remaining", pending+running)))
	}
	status := func() error { return writeFrame("status", queueStatus()) }
	if writeFrame("status", append(queueStatus(), jsonobj.Of("sid", sid)...)) != nil {
		return
	}
	// Reconnected mid-job: where each running job is now.
	for _, pr := range p.live.of(user) {
		writeFrame("execution_start", jsonobj.Of("prompt_id", pr.JobID, "timestamp", time.Now().UnixMilli()))
		if pr.Node != "" {
			writeFrame("executing", jsonobj.Of("node", pr.Node, "display_node", pr.Node, "prompt_id", pr.JobID))
		}
		if pr.Max > 0 {
			writeFrame("progress", jsonobj.Of("value", pr.Value, "max", pr.Max, "prompt_id", pr.JobID, "node", pr.Node))
		}
	}
	// What the extension shows of the queue: sent now, then whenever it
	// changes, from the participant's own jobs at once and from everyone
	// else's at the next room snapshot.
	roomCh := p.room.wait()
	lastAt := time.Now()
	last := p.standing(user)
	if me, err := p.meWith(user, last); err == nil {
		writeJSON(wsMsg{"workshop_status", me})
	}
	sendStanding := func(st standing, at time.Time) error {
		if !at.After(lastAt) || st == last {
			return nil
		}
		last, lastAt = st, at
		return writeJSON(wsMsg{"workshop_status", st.view()})
	}

	var metadata sync.Once
	var wantsMetadata bool
	var mdMu sync.Mutex
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var m struct {
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			}
			if json.Unmarshal(msg, &m) == nil && m.Type == "feature_flags" {
				mdMu.Lock()
				wantsMetadata, _ = m.Data["supports_preview_metadata"].(bool)
				mdMu.Unlock()
				metadata.Do(func() { writeJSON(wsMsg{"feature_flags", serverFeatures}) })
			}
		}
	}()
	// The library reuses the Conn once this returns, so the reader must be
	// done first (Close does nothing on a hijacked connection; a deadline
	// ends the read).
	defer func() { conn.SetReadDeadline(time.Now()); <-gone }()
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-gone:
			return
		case <-ref.end:
			wmu.Lock()
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "signed out"), time.Now().Add(time.Second))
			wmu.Unlock()
			return
		case <-ping.C:
			wmu.Lock()
			err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
			wmu.Unlock()
			if err != nil {
				return
			}
		case <-roomCh:
			roomCh = p.room.wait()
			if err := sendStanding(p.room.of(user)); err != nil {
				return
			}
		case e, ok := <-sub.C:
			if !ok {
				return // too slow: the frontend reconnects
			}
			var err error
			switch e.Type {
			case sched.EventEngine:
				mdMu.Lock()
				md := wantsMetadata
				mdMu.Unlock()
				err = p.relay(write, e, md)
			case sched.EventJobCreated, sched.EventJobUpdated:
				err = p.jobChanged(write, status, e.Job)
				if err == nil {
					err = sendStanding(p.standing(user), time.Now())
				}
				if err == nil && e.Job.Status == workshop.StatusCompleted {
					err = p.sendOutputs(writeJSON, user, e.Job.ID)
				}
			case sched.EventAnnouncement:
				err = writeJSON(wsMsg{"workshop_announcement", json.RawMessage(e.Data)})
			}
			if err != nil {
				return
			}
		}
	}
}

func (p *Proxy) sendOutputs(writeJSON func(any) error, user, jobID string) error {
	j, err := p.cfg.Queue.Get(jobID)
	if err != nil || j.Result == nil {
		return nil
	}
	for _, o := range outputsOf(user, j) {
		if err := writeJSON(wsMsg{"workshop_output", o}); err != nil {
			return err
		}
	}
	return nil
}

// jobChanged tells the socket of a change of one of its jobs: a status
// (the queue count), and for a job that ended, its end as ComfyUI tells it.
func (p *Proxy) jobChanged(write func(int, []byte) error, status func() error, j *workshop.Job) error {
	if !j.Status.Finished() {
		return status()
	}
	typ, data := endEvent(j)
	if typ != "" {
		if err := write(websocket.TextMessage, frame(typ, data)); err != nil {
			return err
		}
	}
	if err := status(); err != nil || typ == "" {
		return err
	}
	return write(websocket.TextMessage, executingDone(j.ID))
}

// relay passes one engine frame on: executed outputs renamed to where this
// server serves them, type-4 previews turned into type 1 for clients that
// did not ask for metadata. The instance's end events (execution_success,
// execution_error, execution_interrupted, executing null) are not: the
// job's end is told when the workshop has finished it.
func (p *Proxy) relay(write func(int, []byte) error, e sched.Event, wantsMetadata bool) error {
	if e.Binary {
		frame := e.Frame
		if len(frame) >= 8 && binary.BigEndian.Uint32(frame) == 4 && !wantsMetadata {
			n := binary.BigEndian.Uint32(frame[4:8])
			if int(8+n) > len(frame) {
				return nil
			}
			var md struct {
				ImageType string `json:"image_type"`
			}
			json.Unmarshal(frame[8:8+n], &md)
			imgType := uint32(1)
			if md.ImageType == "image/png" {
				imgType = 2
			}
			out := make([]byte, 8, 8+len(frame)-int(8+n))
			binary.BigEndian.PutUint32(out, 1)
			binary.BigEndian.PutUint32(out[4:], imgType)
			frame = append(out, frame[8+n:]...)
		}
		return write(websocket.BinaryMessage, frame)
	}
	if !bytes.Contains(e.Frame, []byte(`"execut`)) {
		return write(websocket.TextMessage, e.Frame) // progress and the like: as is, unparsed
	}
	var m struct {
		Type string `json:"type"`
		Data struct {
			Node json.RawMessage `json:"node"`
		} `json:"data"`
	}
	if json.Unmarshal(e.Frame, &m) != nil {
		return write(websocket.TextMessage, e.Frame)
	}
	switch {
	case m.Type == "execution_success", m.Type == "execution_error", m.Type == "execution_interrupted",
		m.Type == "executing" && (m.Data.Node == nil || string(m.Data.Node) == "null"):
		return nil
	case m.Type == "executed":
		if b, ok, err := jsonobj.Edit(e.Frame, []string{"data", "output"}, func(out json.RawMessage) (json.RawMessage, error) {
			return rewriteNodeOutput(out, e.JobID), nil
		}); err == nil && ok {
			return write(websocket.TextMessage, b)
		}
	}
	return write(websocket.TextMessage, e.Frame)
}
