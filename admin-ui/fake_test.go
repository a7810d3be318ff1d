package adminui

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"image/png"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

// fake is an in-memory admin backend that implements the contract in the
// package doc, with a real WebSocket at /ws. It records every request so
// tests can check what the page sent.
type fake struct {
	mu          sync.Mutex
	secret      string
	csrf        string
	session     string
	limited     bool // answer logins with 429
	paused      bool
	mode        string
	seq         int
	order       float64
	jobs        map[string]*fjob
	seats       []*fseat
	workers     []map[string]any
	outputs     []map[string]any
	spot        map[string]any
	notes       []map[string]any
	defaultFlow string
	flows       map[string][]byte
	activity    []map[string]any
	sheet       map[string]string
	name        string // who signed in
	calls       []call
	changed     chan struct{} // closed and replaced on every call

	conns   map[*wsConn]struct{}
	refuseW bool // refuse socket upgrades (the "network" is down)

	base string // http://127.0.0.1:port
	app  *fiber.App
}

type call struct {
	Method, Path, CSRF, Body string
	CSRFOK                   bool
}

type fjob struct {
	ID          string         `json:"id"`
	Number      int            `json:"number"`
	UserID      string         `json:"user_id"`
	Priority    int            `json:"priority"`
	Status      string         `json:"status"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	CompletedAt *time.Time     `json:"completed_at,omitempty"`
	Attempts    int            `json:"attempts"`
	Worker      string         `json:"worker,omitempty"`
	Error       map[string]any `json:"error,omitempty"`
	Result      map[string]any `json:"result,omitempty"`
	Position    int            `json:"position,omitempty"`
	ETA         *float64       `json:"eta_seconds,omitempty"`
	order       float64
}

type fseat struct {
	Seat       int    `json:"seat"`
	Name       string `json:"name"`
	Code       string `json:"code"`
	Disabled   bool   `json:"disabled"`
	MaxPending *int   `json:"max_pending,omitempty"`
	UserID     string `json:"user_id"`
	JoinURL    string `json:"join_url"`
	Online     bool   `json:"online"`
	Pending    int    `json:"pending"`
	Running    int    `json:"running"`
	Done       int    `json:"done"`
}

type wsConn struct {
	out  chan []byte
	kill chan struct{}
	once sync.Once
}

func (w *wsConn) close() { w.once.Do(func() { close(w.kill) }) }

const fakeSecret = "let-me-in"

// t0 is when the fake's workshop began: an hour and a half ago.
var t0 = time.Now().UTC().Add(-95 * time.Minute).Truncate(time.Minute)

// newFake starts the fake with the admin UI registered on the same app.
func newFake(t testing.TB, pendingJobs int) *fake {
	t.Helper()
	f := &fake{
		secret: fakeSecret, csrf: "csrf-" + strconv.FormatInt(time.Now().UnixNano(), 36), mode: "round-robin",
		jobs: map[string]*fjob{}, flows: map[string][]byte{}, conns: map[*wsConn]struct{}{},
		changed: make(chan struct{}),
	}
	f.populate(pendingJobs)
	app := fiber.New(fiber.Config{DisableStartupMessage: true, StrictRouting: true, UnescapePath: false})
	Register(app, Config{})
	f.routes(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.base = "http://" + ln.Addr().String()
	f.app = app
	go app.Listener(ln)
	t.Cleanup(func() {
		f.mu.Lock()
		for c := range f.conns {
			c.close()
		}
		f.mu.Unlock()
		_ = app.ShutdownWithTimeout(2 * time.Second)
	})
	return f
}

func userID(seat int) string { return fmt.Sprintf("user%03d", seat) }

func (f *fake) populate(pendingJobs int) {
	names := []string{"Ada", "Grace", `<img src=x onerror="window.__xss=1">`, "Linus", "Margaret", "Alan", "Alice",
		"Barbara", "Ken", "Frances", "Edsger", "Radia"}
	for i, n := range names {
		s := &fseat{Seat: i + 1, Name: n, Code: fmt.Sprintf("K%03dQ%d", (i+1)*37%1000, i%10), UserID: userID(i + 1),
			Online: i%3 != 2, Done: (i * 7) % 11}
		s.JoinURL = "http://workshop.example.org/join/" + s.Code
		if i == 4 {
			s.Disabled, s.Online = true, false
		}
		if i == 1 {
			q := 3
			s.MaxPending = &q
		}
		f.seats = append(f.seats, s)
	}
	f.workers = []map[string]any{
		worker("gpu-1", "0", "busy", 97, 61234, false, ""),
		worker("gpu-1", "1", "busy", 88, 52011, false, ""),
		worker("gpu-2", "0", "idle", 3, 1830, false, ""),
		worker("gpu-2", "1", "unreachable", -1, 0, false, "dial tcp 127.0.0.1:8189: connect: connection refused"),
	}
	// Finished jobs with outputs, newest last.
	for i := range 14 {
		created := t0.Add(time.Duration(i) * 3 * time.Minute)
		j := f.addJob(userID(i%12+1), 2, "completed", created)
		st, done := created.Add(40*time.Second), created.Add(95*time.Second)
		j.StartedAt, j.CompletedAt, j.Worker, j.Attempts = &st, &done, fmt.Sprintf("gpu-%d/%d", i%2+1, i%2), 1
		name := fmt.Sprintf("ComfyUI_%05d_.png", i+1)
		url := fmt.Sprintf("/files/%s/%s", j.ID, name)
		j.Result = map[string]any{"outputs": []any{map[string]any{"name": name, "filename": name, "size": 180000 + i*1000, "sha256": "ab", "url": url}}}
		f.outputs = append([]map[string]any{{"job_id": j.ID, "job_number": j.Number, "user_id": j.UserID, "name": name, "url": url,
			"mime": "image/png", "size": 180000 + i*1000, "created_at": done.Format(time.RFC3339)}}, f.outputs...)
	}
	failed := f.addJob(userID(4), 2, "failed", t0.Add(50*time.Minute))
	failed.Error = map[string]any{"type": "execution_error", "message": "OutOfMemoryError in node 3 (KSampler): CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity; 77.02 GiB already allocated)",
		"details": map[string]any{"node_id": "3", "node_type": "KSampler", "exception_type": "torch.cuda.OutOfMemoryError",
			"traceback": []string{"Traceback (most recent call last):\n", "  File \"/ComfyUI/execution.py\", line 323, in execute\n", "torch.cuda.OutOfMemoryError: CUDA out of memory.\n"}}}
	st, done := t0.Add(50*time.Minute+10*time.Second), t0.Add(51*time.Minute)
	failed.StartedAt, failed.CompletedAt, failed.Worker, failed.Attempts = &st, &done, "gpu-2/0", 2
	// Two running jobs, one prefetched.
	for i, w := range []string{"gpu-1/0", "gpu-1/1", "gpu-1/0"} {
		j := f.addJob(userID(i+6), 2, "running", time.Now().Add(-time.Duration(3-i)*time.Minute))
		j.Worker, j.Attempts = w, 1
		if i < 2 {
			st := time.Now().Add(-time.Duration(40+i*25) * time.Second)
			j.StartedAt = &st
			f.workers[i]["current_job"] = j.ID
		} else {
			f.workers[0]["queued_jobs"] = []string{j.ID}
		}
	}
	for i := range pendingJobs {
		prio := 2
		if i%9 == 4 {
			prio = 1
		}
		if i == 0 {
			prio = 0
		}
		f.addJob(userID(i%12+1), prio, "pending", time.Now().Add(-time.Duration(pendingJobs-i)*7*time.Second))
	}
	f.notes = []map[string]any{{"id": "a1", "text": "Welcome! Open the workflow “Portrait” from your list.", "created_at": t0.Format(time.RFC3339)}}
	f.sheet = map[string]string{"title": "", "wifi_name": "", "wifi_password": "", "instructions": ""}
	f.flows["portrait.json"] = []byte(`{"nodes":[]}`)
	f.flows["video-loop.json"] = []byte(`{"nodes":[],"links":[]}`)
	kinds := []string{"job", "admin", "agent", "seat"}
	for i := range 30 {
		k := kinds[i%4]
		e := map[string]any{"id": fmt.Sprintf("e%03d", i), "time": t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339), "kind": k}
		switch k {
		case "job":
			j := f.jobs[fmt.Sprintf("019a%04x-0000-7000-8000-%012x", i%14+1, i%14+1)]
			e["actor"], e["action"], e["user_id"], e["job_id"], e["job_number"] = j.UserID, "submitted", j.UserID, j.ID, j.Number
			if i%8 == 4 {
				e["actor"], e["action"], e["detail"], e["worker"] = "system", "completed", "1 output", j.Worker
			}
		case "admin":
			e["actor"], e["action"], e["detail"] = "Ann", "paused the queue", ""
		case "agent":
			e["actor"], e["action"], e["detail"] = "agent gpu-1", "connected", "2 instances"
		case "seat":
			e["actor"], e["action"], e["detail"] = "system", "seat joined", fmt.Sprintf("seat %d", i%12+1)
		}
		f.activity = append([]map[string]any{e}, f.activity...)
	}
}

func worker(agent, inst, state string, util float64, used float64, draining bool, errText string) map[string]any {
	w := map[string]any{
		"id": agent + "/" + inst, "agent": agent, "instance": inst, "url": "http://127.0.0.1:" + strconv.Itoa(8188+len(inst)),
		"connected": state != "unreachable", "healthy": state != "unreachable", "draining": draining, "state": state,
		"queued_jobs": []string{}, "jobs_done": 7 + len(agent)*int(util)%13,
		"gpu": map[string]any{"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "memory_used_mib": used, "utilization_pct": util},
	}
	if state == "unreachable" {
		w["gpu"] = map[string]any{"name": "", "utilization_pct": -1}
	}
	if errText != "" {
		w["error"] = errText
	}
	return w
}

// addJob needs f.mu held or no concurrency yet.
func (f *fake) addJob(user string, prio int, status string, created time.Time) *fjob {
	f.seq++
	f.order++
	j := &fjob{ID: fmt.Sprintf("019a%04x-0000-7000-8000-%012x", f.seq, f.seq), Number: f.seq, UserID: user,
		Priority: prio, Status: status, CreatedAt: created, order: f.order}
	f.jobs[j.ID] = j
	return j
}

// pending answers the pending jobs in dispatch order (priority, then order).
func (f *fake) pending() []*fjob {
	var out []*fjob
	for _, j := range f.jobs {
		if j.Status == "pending" {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Priority != out[b].Priority {
			return out[a].Priority < out[b].Priority
		}
		return out[a].order < out[b].order
	})
	for i, j := range out {
		j.Position = i + 1
		eta := float64(i) * 30
		j.ETA = &eta
	}
	return out
}

func (f *fake) counts() map[string]int {
	c := map[string]int{"pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0}
	for _, j := range f.jobs {
		c[j.Status]++
	}
	return c
}

func (f *fake) statusLocked() map[string]any {
	return map[string]any{"mode": f.mode, "paused": f.paused, "counts": f.counts()}
}

// ---- recording ----

func (f *fake) record(c *fiber.Ctx) {
	// Fiber's strings point into buffers it reuses: copy them.
	cl := call{Method: strings.Clone(c.Method()), Path: strings.Clone(c.Path()),
		CSRF: strings.Clone(c.Get("X-CSRF-Token")), Body: string(c.Body())}
	cl.CSRFOK = cl.CSRF == f.csrf
	f.mu.Lock()
	f.calls = append(f.calls, cl)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// waitCall waits until the fake got a request matching method and path.
func (f *fake) waitCall(t testing.TB, method, path string) call {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		for _, c := range f.calls {
			if c.Method == method && c.Path == path {
				f.mu.Unlock()
				return c
			}
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("the page never sent %s %s; calls: %v", method, path, f.callList())
		}
	}
}

func (f *fake) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.Method+" "+c.Path)
	}
	return out
}

// ---- socket ----

// push sends one event to every open socket.
func (f *fake) push(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pushLocked(b)
}

func (f *fake) pushLocked(b []byte) {
	for c := range f.conns {
		select {
		case c.out <- b:
		default: // too slow: drop it, as the server does
			c.close()
			delete(f.conns, c)
		}
	}
}

// dropSockets closes every socket; with refuse, new ones are refused until
// allowSockets.
func (f *fake) dropSockets(refuse bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuseW = refuse
	for c := range f.conns {
		c.close()
		delete(f.conns, c)
	}
}

func (f *fake) allowSockets() {
	f.mu.Lock()
	f.refuseW = false
	f.mu.Unlock()
}

func (f *fake) socketCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// ---- HTTP ----

func apiErr(c *fiber.Ctx, status int, code, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": msg}})
}

func (f *fake) routes(app *fiber.App) {
	app.Use(func(c *fiber.Ctx) error {
		p := c.Path()
		if !strings.HasPrefix(p, "/api/") && p != "/ws" && p != "/admin/logout" && !strings.HasPrefix(p, "/files/") {
			return c.Next()
		}
		if c.Method() != fiber.MethodGet {
			f.record(c)
		}
		f.mu.Lock()
		ok := f.session != "" && c.Cookies("workshop_session") == f.session
		csrfOK := c.Get("X-CSRF-Token") == f.csrf
		f.mu.Unlock()
		if !ok {
			return apiErr(c, 401, "unauthorized", "sign in first")
		}
		switch c.Method() {
		case fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch, fiber.MethodDelete:
			if !csrfOK {
				return apiErr(c, 403, "csrf", "missing or wrong CSRF token")
			}
		}
		return c.Next()
	})

	app.Post("/admin/login", func(c *fiber.Ctx) error {
		f.record(c)
		var req struct{ Secret, Name string }
		if err := json.Unmarshal(c.Body(), &req); err != nil {
			return apiErr(c, 400, "invalid", "bad JSON")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.name = req.Name
		if f.limited {
			return apiErr(c, 429, "rate_limited", "too many attempts")
		}
		if req.Secret != f.secret {
			return apiErr(c, 401, "unauthorized", "wrong secret")
		}
		f.session = "s-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		c.Cookie(&fiber.Cookie{Name: "workshop_session", Value: f.session, Path: "/", HTTPOnly: true, SameSite: "Strict"})
		return c.JSON(fiber.Map{"csrf": f.csrf, "name": req.Name})
	})
	app.Post("/admin/logout", func(c *fiber.Ctx) error {
		f.mu.Lock()
		f.session = ""
		f.mu.Unlock()
		c.ClearCookie("workshop_session")
		return c.SendStatus(204)
	})
	app.Get("/admin/session", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.session == "" || c.Cookies("workshop_session") != f.session {
			return apiErr(c, 401, "unauthorized", "not signed in")
		}
		return c.JSON(fiber.Map{"csrf": f.csrf})
	})

	app.Get("/ws", func(c *fiber.Ctx) error {
		f.mu.Lock()
		refuse := f.refuseW
		f.mu.Unlock()
		if refuse {
			return apiErr(c, 503, "unavailable", "down")
		}
		if !websocket.IsWebSocketUpgrade(c) {
			return apiErr(c, 400, "invalid", "upgrade required")
		}
		return c.Next()
	}, websocket.New(func(conn *websocket.Conn) {
		w := &wsConn{out: make(chan []byte, 1<<16), kill: make(chan struct{})}
		f.mu.Lock()
		first, _ := json.Marshal(fiber.Map{"type": "queue_changed", "queue": f.statusLocked()})
		f.conns[w] = struct{}{}
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.conns, w)
			f.mu.Unlock()
		}()
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
		// The library reuses the Conn once this returns: the reader must be
		// done. (Close does nothing on a hijacked connection; a deadline does.)
		defer func() { conn.SetReadDeadline(time.Now()); <-gone }()
		if conn.WriteMessage(websocket.TextMessage, first) != nil {
			return
		}
		for {
			select {
			case b := <-w.out:
				if conn.WriteMessage(websocket.TextMessage, b) != nil {
					return
				}
			case <-w.kill:
				return
			case <-gone:
				return
			}
		}
	}))

	// ---- queue ----
	app.Get("/api/queue/status", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		st := f.statusLocked()
		st["workers"] = f.workers
		return c.JSON(st)
	})
	setPaused := func(p bool) fiber.Handler {
		return func(c *fiber.Ctx) error {
			f.mu.Lock()
			f.paused = p
			b, _ := json.Marshal(fiber.Map{"type": "queue_changed", "queue": f.statusLocked()})
			f.pushLocked(b)
			f.mu.Unlock()
			return c.SendStatus(204)
		}
	}
	app.Post("/api/queue/pause", setPaused(true))
	app.Post("/api/queue/resume", setPaused(false))
	app.Put("/api/queue/mode", func(c *fiber.Ctx) error {
		var req struct{ Mode string }
		if json.Unmarshal(c.Body(), &req) != nil || (req.Mode != "fifo" && req.Mode != "round-robin") {
			return apiErr(c, 400, "invalid", "mode must be fifo or round-robin")
		}
		f.mu.Lock()
		f.mode = req.Mode
		b, _ := json.Marshal(fiber.Map{"type": "queue_changed", "queue": f.statusLocked()})
		f.pushLocked(b)
		f.mu.Unlock()
		return c.JSON(fiber.Map{"mode": req.Mode})
	})

	// ---- jobs ----
	app.Get("/api/jobs", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		limit := c.QueryInt("limit", 100)
		var out []*fjob
		if n := c.Query("number"); n != "" {
			out = []*fjob{}
			for _, j := range f.jobs {
				if strconv.Itoa(j.Number) == strings.TrimPrefix(n, "#") {
					out = append(out, j)
				}
			}
			return c.JSON(fiber.Map{"jobs": out})
		}
		user := c.Query("user_id")
		switch st := c.Query("status"); st {
		case "pending":
			out = f.pending()
		case "":
			for _, j := range f.jobs {
				out = append(out, j)
			}
			sort.Slice(out, func(a, b int) bool { return out[a].Number > out[b].Number })
		default:
			for _, j := range f.jobs {
				if j.Status == st {
					out = append(out, j)
				}
			}
			sort.Slice(out, func(a, b int) bool { return out[a].Number > out[b].Number })
		}
		if user != "" {
			var mine []*fjob
			for _, j := range out {
				if j.UserID == user {
					mine = append(mine, j)
				}
			}
			out = mine
		}
		if len(out) > limit {
			out = out[:limit]
		}
		if out == nil {
			out = []*fjob{}
		}
		return c.JSON(fiber.Map{"jobs": out})
	})
	jobUpdated := func(j *fjob) {
		b, _ := json.Marshal(fiber.Map{"type": "job_updated", "job": j})
		f.pushLocked(b)
	}
	app.Delete("/api/jobs/:id", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		j := f.jobs[c.Params("id")]
		if j == nil {
			return apiErr(c, 404, "not_found", "no such job")
		}
		if j.Status != "pending" && j.Status != "running" {
			return apiErr(c, 409, "conflict", "job already finished")
		}
		now := time.Now()
		j.Status, j.CompletedAt = "cancelled", &now
		jobUpdated(j)
		return c.JSON(j)
	})
	app.Patch("/api/jobs/:id/priority", func(c *fiber.Ctx) error {
		var req struct{ Priority *int }
		if json.Unmarshal(c.Body(), &req) != nil || req.Priority == nil || *req.Priority < 0 || *req.Priority > 3 {
			return apiErr(c, 400, "invalid", "priority must be 0 to 3")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		j := f.jobs[c.Params("id")]
		if j == nil || j.Status != "pending" {
			return apiErr(c, 409, "conflict", "not pending")
		}
		j.Priority = *req.Priority
		f.order++
		j.order = f.order
		jobUpdated(j)
		return c.JSON(j)
	})
	app.Post("/api/jobs/:id/move", func(c *fiber.Ctx) error {
		var req struct{ To string }
		if json.Unmarshal(c.Body(), &req) != nil || req.To != "top" {
			return apiErr(c, 400, "invalid", `to must be "top"`)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		j := f.jobs[c.Params("id")]
		if j == nil || j.Status != "pending" {
			return apiErr(c, 409, "conflict", "not pending")
		}
		// The fake's reading of "front of the queue": the instructor's
		// priority, ahead of every other job.
		low := 0.0
		for _, o := range f.jobs {
			low = min(low, o.order)
		}
		j.Priority, j.order = 0, low-1
		jobUpdated(j)
		return c.JSON(j)
	})
	app.Post("/api/jobs/:id/retry", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		old := f.jobs[c.Params("id")]
		if old == nil || (old.Status != "failed" && old.Status != "cancelled") {
			return apiErr(c, 409, "conflict", "only failed or cancelled jobs can be retried")
		}
		j := f.addJob(old.UserID, old.Priority, "pending", time.Now())
		b, _ := json.Marshal(fiber.Map{"type": "job_created", "job": j})
		f.pushLocked(b)
		return c.Status(201).JSON(j)
	})

	app.Get("/api/jobs/:id/detail", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		j := f.jobs[c.Params("id")]
		if j == nil {
			return apiErr(c, 404, "not_found", "no such job")
		}
		full := map[string]any{}
		b, _ := json.Marshal(j)
		json.Unmarshal(b, &full)
		full["workflow"] = map[string]any{"3": map[string]any{"class_type": "KSampler", "inputs": map[string]any{"seed": j.Number, "steps": 20}},
			"9": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"8", 0}, "filename_prefix": "ComfyUI"}}}
		full["extra_data"] = map[string]any{"extra_pnginfo": map[string]any{"workflow": map[string]any{"nodes": []any{map[string]any{"id": 3}, map[string]any{"id": 9}}, "links": []any{}}}}
		var outputs []map[string]any
		for _, o := range f.outputs {
			if o["job_id"] == j.ID {
				outputs = append(outputs, o)
			}
		}
		if outputs == nil {
			outputs = []map[string]any{}
		}
		var seat any
		for _, s := range f.seats {
			if s.UserID == j.UserID {
				seat = map[string]any{"seat": s.Seat, "name": s.Name}
			}
		}
		history := []map[string]any{{"id": "h1", "time": j.CreatedAt.Format(time.RFC3339), "kind": "job", "actor": j.UserID, "action": "submitted",
			"job_id": j.ID, "job_number": j.Number, "user_id": j.UserID}}
		if j.Status == "failed" || j.Status == "completed" || j.Status == "cancelled" {
			e := map[string]any{"id": "h2", "time": j.CompletedAt.Format(time.RFC3339), "kind": "job", "actor": "system", "action": j.Status,
				"job_id": j.ID, "job_number": j.Number, "user_id": j.UserID, "worker": j.Worker}
			if j.Error != nil {
				e["detail"] = j.Error["message"]
			}
			history = append(history, e)
		}
		d := fiber.Map{"job": full, "seat": seat, "outputs": outputs, "history": history}
		if j.StartedAt != nil {
			d["wait_seconds"] = j.StartedAt.Sub(j.CreatedAt).Seconds()
			if j.CompletedAt != nil {
				d["run_seconds"] = j.CompletedAt.Sub(*j.StartedAt).Seconds()
			}
		}
		return c.JSON(d)
	})
	app.Post("/api/queue/cancel", func(c *fiber.Ctx) error {
		var req struct {
			UserID string   `json:"user_id"`
			Status string   `json:"status"`
			IDs    []string `json:"ids"`
			DryRun bool     `json:"dry_run"`
		}
		if json.Unmarshal(c.Body(), &req) != nil || (req.UserID == "" && req.Status == "") {
			return apiErr(c, 400, "invalid", "name a participant or a status")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		only := map[string]bool{}
		for _, id := range req.IDs {
			only[id] = true
		}
		var picked []map[string]any
		counts := map[string]int{"pending": 0, "running": 0}
		for _, j := range append(f.running(), f.pending()...) {
			if (req.UserID != "" && j.UserID != req.UserID) || (req.Status != "" && req.Status != "active" && j.Status != req.Status) || (req.IDs != nil && !only[j.ID]) {
				continue
			}
			picked = append(picked, map[string]any{"id": j.ID, "number": j.Number, "user_id": j.UserID, "status": j.Status})
			counts[j.Status]++
			if !req.DryRun {
				now := time.Now()
				j.Status, j.CompletedAt = "cancelled", &now
				j.Error = map[string]any{"type": "cancelled", "message": "cancelled by the instructor"}
				jobUpdated(j)
			}
		}
		if picked == nil {
			picked = []map[string]any{}
		}
		return c.JSON(fiber.Map{"dry_run": req.DryRun, "count": len(picked), "counts": counts, "jobs": picked})
	})

	// ---- workers ----
	app.Get("/api/workers", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.JSON(fiber.Map{"workers": f.workers})
	})
	drain := func(on bool) fiber.Handler {
		return func(c *fiber.Ctx) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			id := c.Params("agent") + "/" + c.Params("instance")
			for _, w := range f.workers {
				if w["id"] == id {
					w["draining"] = on
					if on {
						w["state"] = "draining"
					} else if w["current_job"] != nil {
						w["state"] = "busy"
					} else {
						w["state"] = "idle"
					}
					b, _ := json.Marshal(fiber.Map{"type": "workers_changed"})
					f.pushLocked(b)
					return c.SendStatus(204)
				}
			}
			return apiErr(c, 404, "not_found", "no such instance")
		}
	}
	app.Post("/api/workers/:agent/:instance/drain", drain(true))
	app.Post("/api/workers/:agent/:instance/undrain", drain(false))

	// ---- seats ----
	app.Get("/api/seats", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		all := append([]*fseat(nil), f.seats...)
		sort.Slice(all, func(a, b int) bool { return all[a].Seat < all[b].Seat })
		warning := "Join links and QR codes point at 127.0.0.1, which only this machine can open: start the server with --public-url."
		if !strings.Contains(f.seats[0].JoinURL, "127.0.0.1") {
			warning = ""
		}
		if c.Query("q") == "" && c.Query("state") == "" && c.Query("offset") == "" && c.Query("limit") == "" {
			return c.JSON(fiber.Map{"seats": all, "join_warning": warning})
		}
		q := strings.ToLower(c.Query("q"))
		sum := map[string]int{"seats": len(all), "online": 0, "disabled": 0, "busy": 0}
		var match []*fseat
		for _, s := range all {
			sum["online"] += b2i(s.Online)
			sum["disabled"] += b2i(s.Disabled)
			sum["busy"] += b2i(s.Pending+s.Running > 0)
			okQ := q == "" || strconv.Itoa(s.Seat) == q || strings.Contains(strings.ToLower(s.Name), q) || strings.ToLower(s.Code) == q
			okS := map[string]bool{"": true, "online": s.Online, "offline": !s.Online && !s.Disabled, "disabled": s.Disabled, "busy": s.Pending+s.Running > 0}[c.Query("state")]
			if okQ && okS {
				match = append(match, s)
			}
		}
		off, lim := c.QueryInt("offset", 0), c.QueryInt("limit", 50)
		page := match[min(off, len(match)):min(off+lim, len(match))]
		if page == nil {
			page = []*fseat{}
		}
		return c.JSON(fiber.Map{"seats": page, "total": len(match), "offset": off, "limit": lim, "summary": sum, "join_warning": warning})
	})
	app.Post("/api/seats", func(c *fiber.Ctx) error {
		var req struct {
			Seat int
			Name string
		}
		_ = json.Unmarshal(c.Body(), &req)
		f.mu.Lock()
		defer f.mu.Unlock()
		if req.Seat == 0 {
			for _, s := range f.seats {
				req.Seat = max(req.Seat, s.Seat)
			}
			req.Seat++
		}
		s := &fseat{Seat: req.Seat, Name: req.Name, Code: fmt.Sprintf("N%05d", req.Seat*7919%100000), UserID: userID(req.Seat)}
		s.JoinURL = "http://workshop.example.org/join/" + s.Code
		f.seats = append(f.seats, s)
		return c.Status(201).JSON(s)
	})
	app.Patch("/api/seats/:n", func(c *fiber.Ctx) error {
		var req struct {
			Name       *string `json:"name"`
			Disabled   *bool   `json:"disabled"`
			MaxPending *int    `json:"max_pending"`
			RotateCode bool    `json:"rotate_code"`
		}
		if json.Unmarshal(c.Body(), &req) != nil {
			return apiErr(c, 400, "invalid", "bad JSON")
		}
		n, _ := strconv.Atoi(c.Params("n"))
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, s := range f.seats {
			if s.Seat != n {
				continue
			}
			if req.Name != nil {
				s.Name = *req.Name
			}
			if req.Disabled != nil {
				s.Disabled = *req.Disabled
			}
			if req.MaxPending != nil {
				if *req.MaxPending < 0 {
					s.MaxPending = nil
				} else {
					s.MaxPending = req.MaxPending
				}
			}
			if req.RotateCode {
				s.Code = "R" + s.Code
				s.JoinURL = "http://workshop.example.org/join/" + s.Code
			}
			return c.JSON(s)
		}
		return apiErr(c, 404, "not_found", "no such seat")
	})
	app.Delete("/api/seats/:n", func(c *fiber.Ctx) error {
		n, _ := strconv.Atoi(c.Params("n"))
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, s := range f.seats {
			if s.Seat == n {
				f.seats = append(f.seats[:i], f.seats[i+1:]...)
				return c.SendStatus(204)
			}
		}
		return apiErr(c, 404, "not_found", "no such seat")
	})
	app.Get("/api/seats/:n/qr.png", func(c *fiber.Ctx) error {
		n, _ := strconv.Atoi(c.Params("n"))
		c.Set("Content-Type", "image/png")
		return c.Send(fakeQR(n))
	})

	// ---- outputs and spotlight ----
	app.Get("/api/outputs", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []map[string]any // f.outputs is newest first
		for _, o := range f.outputs {
			if u := c.Query("user_id"); u == "" || o["user_id"] == u {
				out = append(out, o)
			}
		}
		switch c.Query("order", "newest") {
		case "oldest":
			slices.Reverse(out)
		case "seat":
			sort.SliceStable(out, func(a, b int) bool { return out[a]["user_id"].(string) < out[b]["user_id"].(string) })
		}
		from, _ := strconv.Atoi(c.Query("before", "0"))
		limit := c.QueryInt("limit", 60)
		page, next := out[min(from, len(out)):min(from+limit, len(out))], ""
		if from+limit < len(out) {
			next = strconv.Itoa(from + limit)
		}
		if page == nil {
			page = []map[string]any{}
		}
		return c.JSON(fiber.Map{"outputs": page, "next": next})
	})
	app.Get("/files/:job/:name", func(c *fiber.Ctx) error {
		c.Set("Content-Type", "image/png")
		return c.Send(fakeImage(c.Params("name"), 256))
	})
	app.Get("/api/spotlight", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.spot == nil {
			return c.JSON(fiber.Map{})
		}
		return c.JSON(f.spot)
	})
	app.Post("/api/spotlight", func(c *fiber.Ctx) error {
		var req struct {
			JobID string `json:"job_id"`
			Name  string `json:"name"`
		}
		if json.Unmarshal(c.Body(), &req) != nil {
			return apiErr(c, 400, "invalid", "bad JSON")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, o := range f.outputs {
			if o["job_id"] == req.JobID && o["name"] == req.Name {
				f.spot = map[string]any{"job_id": o["job_id"], "name": o["name"], "url": o["url"], "user_id": o["user_id"], "mime": o["mime"]}
				b, _ := json.Marshal(fiber.Map{"type": "spotlight", "data": f.spot})
				f.pushLocked(b)
				return c.JSON(f.spot)
			}
		}
		return apiErr(c, 404, "not_found", "no such output")
	})
	app.Delete("/api/spotlight", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.spot = nil
		b, _ := json.Marshal(fiber.Map{"type": "spotlight", "data": fiber.Map{}})
		f.pushLocked(b)
		return c.SendStatus(204)
	})

	// ---- the QR sheet ----
	app.Get("/api/sheet", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.JSON(f.sheet)
	})
	app.Put("/api/sheet", func(c *fiber.Ctx) error {
		var req map[string]string
		if json.Unmarshal(c.Body(), &req) != nil || len([]rune(req["title"])) > 80 {
			return apiErr(c, 400, "invalid", "title is at most 80 characters")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, k := range []string{"title", "wifi_name", "wifi_password", "instructions"} {
			f.sheet[k] = req[k]
		}
		return c.JSON(f.sheet)
	})
	app.Get("/api/sheet/wifi.png", func(c *fiber.Ctx) error {
		c.Set("Content-Type", "image/png")
		return c.Send(fakeQR(999))
	})

	// ---- announcements ----
	app.Get("/api/announcements", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.JSON(fiber.Map{"announcements": f.notes})
	})
	app.Post("/api/announcements", func(c *fiber.Ctx) error {
		var req struct{ Text string }
		if json.Unmarshal(c.Body(), &req) != nil || strings.TrimSpace(req.Text) == "" {
			return apiErr(c, 400, "invalid", "text is required")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		a := map[string]any{"id": fmt.Sprintf("a%d", len(f.notes)+1), "text": req.Text, "created_at": time.Now().UTC().Format(time.RFC3339)}
		f.notes = append(f.notes, a)
		b, _ := json.Marshal(fiber.Map{"type": "announcement", "data": a})
		f.pushLocked(b)
		return c.Status(201).JSON(a)
	})
	app.Delete("/api/announcements/:id", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, a := range f.notes {
			if a["id"] == c.Params("id") {
				f.notes = append(f.notes[:i], f.notes[i+1:]...)
				return c.SendStatus(204)
			}
		}
		return apiErr(c, 404, "not_found", "no such announcement")
	})

	// ---- workflows ----
	app.Get("/api/workflows", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []map[string]any
		for n, b := range f.flows {
			out = append(out, map[string]any{"name": n, "size": len(b), "modified": t0.Format(time.RFC3339), "default": n == f.defaultFlow})
		}
		return c.JSON(fiber.Map{"workflows": out})
	})
	app.Put("/api/workflows/:name", func(c *fiber.Ctx) error {
		name := c.Params("name")
		if !strings.HasSuffix(name, ".json") || !json.Valid(c.Body()) {
			return apiErr(c, 400, "invalid", "a .json workflow is required")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.flows[name] = append([]byte(nil), c.Body()...)
		return c.SendStatus(204)
	})
	app.Delete("/api/workflows/:name", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.flows, c.Params("name"))
		return c.SendStatus(204)
	})
	app.Put("/api/workflows/:name/default", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.flows[c.Params("name")] == nil {
			return apiErr(c, 404, "not_found", "no such workflow")
		}
		f.defaultFlow = c.Params("name")
		return c.JSON(fiber.Map{"default": f.defaultFlow})
	})
	app.Delete("/api/workflows/:name/default", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.defaultFlow == c.Params("name") {
			f.defaultFlow = ""
		}
		return c.JSON(fiber.Map{"default": nil})
	})

	// ---- activity, metrics, export ----
	app.Get("/api/activity", func(c *fiber.Ctx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		k := c.Query("kind")
		out := []map[string]any{}
		for _, e := range f.activity {
			if k == "" || e["kind"] == k {
				out = append(out, e)
			}
		}
		return c.JSON(fiber.Map{"entries": out})
	})
	app.Get("/api/metrics", func(c *fiber.Ctx) error {
		var tl []map[string]any
		for i := range 90 {
			p := 3 + (i*7)%17
			if i > 60 {
				p = max(0, 20-(i-60))
			}
			tl = append(tl, map[string]any{"t": t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339),
				"completed": (i * 5) % 4, "pending": p, "running": 2 + i%2})
		}
		var parts []map[string]any
		for i := range 12 {
			parts = append(parts, map[string]any{"user_id": userID(i + 1), "jobs": 3 + i*5%11, "gpu_seconds": float64(60 + i*97%600)})
		}
		return c.JSON(fiber.Map{
			"jobs_done": 214, "jobs_failed": 6,
			"wait_seconds": fiber.Map{"p50": 42, "p90": 185}, "run_seconds": fiber.Map{"p50": 38, "p90": 71},
			"instances": []any{
				fiber.Map{"id": "gpu-1/0", "busy_fraction": 0.93, "jobs_done": 81},
				fiber.Map{"id": "gpu-1/1", "busy_fraction": 0.88, "jobs_done": 77},
				fiber.Map{"id": "gpu-2/0", "busy_fraction": 0.61, "jobs_done": 56},
			},
			"participants": parts, "timeline": tl,
		})
	})
	app.Get("/api/export/jobs.csv", func(c *fiber.Ctx) error {
		c.Set("Content-Type", "text/csv")
		return c.SendString("id,user_id,status\n")
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// running answers the running jobs by number.
func (f *fake) running() []*fjob {
	var out []*fjob
	for _, j := range f.jobs {
		if j.Status == "running" {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Number < out[b].Number })
	return out
}

// addSeats adds n unnamed seats after the last (f.mu held or no concurrency yet).
func (f *fake) addSeats(n int) {
	last := f.seats[len(f.seats)-1].Seat
	for i := 1; i <= n; i++ {
		s := &fseat{Seat: last + i, Code: fmt.Sprintf("Z%05d", (last+i)*7919%100000), UserID: userID(last + i)}
		s.JoinURL = "http://workshop.example.org/join/" + s.Code
		f.seats = append(f.seats, s)
	}
}

// ---- images ----

// fakeImage draws a gradient that differs by name.
func fakeImage(name string, size int) []byte {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			img.Set(x, y, color.RGBA{uint8(int(s&0xff) + x/2), uint8(int(s>>8&0xff) + y/2), uint8(int(s>>16&0xff) + (x+y)/4), 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// fakeQR draws something that looks like a QR code (it is not one).
func fakeQR(seat int) []byte {
	const n, scale = 25, 8
	img := image.NewGray(image.Rect(0, 0, (n+8)*scale, (n+8)*scale))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	set := func(x, y int) {
		for dy := range scale {
			for dx := range scale {
				img.SetGray((x+4)*scale+dx, (y+4)*scale+dy, color.Gray{0})
			}
		}
	}
	// inFinder reports whether x, y is in one of the three corner squares,
	// and whether that module is dark.
	inFinder := func(x, y int) (in, dark bool) {
		for _, o := range [][2]int{{0, 0}, {n - 7, 0}, {0, n - 7}} {
			dx, dy := x-o[0], y-o[1]
			if dx >= 0 && dx < 7 && dy >= 0 && dy < 7 {
				return true, dx == 0 || dx == 6 || dy == 0 || dy == 6 || (dx >= 2 && dx <= 4 && dy >= 2 && dy <= 4)
			}
		}
		return false, false
	}
	r := uint32(seat*2654435761 + 1)
	for y := range n {
		for x := range n {
			if in, dark := inFinder(x, y); in {
				if dark {
					set(x, y)
				}
				continue
			}
			r ^= r << 13
			r ^= r >> 17
			r ^= r << 5
			if r&1 == 1 {
				set(x, y)
			}
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// previewURL is a small preview image as a data: URL, as the server sends.
func previewURL(step int) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(fakeImage(fmt.Sprintf("preview-%d", step), 48))
}
