package load

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// fileRef names an output file as the participant's ComfyUI names it.
type fileRef struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// Download is one output file fetched through /view.
type Download struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
}

// job is one submission, as this participant follows it.
type job struct {
	id        string
	acked     bool // the server answered 200 with this id
	submitAt  time.Time
	ackAt     time.Time
	startAt   time.Time // the latest execution_start
	successAt time.Time
	runs      int // execution_start events seen
	outputs   []fileRef
	success   bool // execution_success seen (or history says so)
	failed    bool
	done      bool      // completed: every output downloaded
	busy      bool      // a download or history check is under way
	lastEvent time.Time // the answer, or the latest event about it
	errType   string
	errMsg    string
	files     []Download
	e2e       time.Duration
}

// terminal: the participant knows how the job ended (or is fetching its
// outputs).
func (j *job) terminal() bool { return j.success || j.failed }

type participant struct {
	r      *Runner
	seat   int
	path   string // /user/{n}
	cookie string
	sid    string
	rng    *rand.Rand // the submitting goroutine's only
	weight float64    // share of the room's rate (HeavyFactor for heavy ones)
	cap    int        // jobs kept open at most (0: no limit)

	mu         sync.Mutex
	jobs       map[string]*job
	unresolved int // acked, not terminal
	submitted  int // acknowledged submissions
	completed  int
	inWindow   int // completed while the room was submitting
	failed     int
	service    time.Duration // execution_start -> execution_success of completed jobs
	reconcile  bool          // a history check is scheduled
	ready      chan struct{} // closed at the socket's first message
	readyOnce  sync.Once
	changed    chan struct{} // a job of ours ended
}

func newParticipant(r *Runner, seat int, seed uint64) *participant {
	return &participant{
		r: r, seat: seat, path: "/user/" + strconv.Itoa(seat),
		sid:     fmt.Sprintf("load-%d-%x", seat, seed&0xffffffff),
		rng:     rand.New(rand.NewPCG(seed, uint64(seat))),
		jobs:    map[string]*job{},
		ready:   make(chan struct{}),
		changed: make(chan struct{}, 1),
	}
}

func (p *participant) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// join opens the seat's join link and keeps the session cookie.
func (p *participant) join(ctx context.Context, code string) error {
	resp, err := p.r.do(ctx, "GET", "/join/"+url.PathEscape(code), nil, "", false)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("join seat %d: HTTP %d", p.seat, resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "workshop_session" && c.Value != "" {
			p.cookie = c.Name + "=" + c.Value
			return nil
		}
	}
	return fmt.Errorf("join seat %d: no session cookie in the answer", p.seat)
}

// socket keeps the participant's /ws open until ctx ends, reconnecting
// with backoff when the server drops it.
func (p *participant) socket(ctx context.Context, dialSem chan struct{}) {
	r := p.r
	u := r.wsBase + p.path + "/ws?clientId=" + url.QueryEscape(p.sid)
	h := http.Header{"Cookie": {p.cookie}}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		select {
		case dialSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		conn, resp, err := r.dialer.DialContext(ctx, u, h)
		<-dialSem
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			msg := err.Error()
			if resp != nil {
				msg = fmt.Sprintf("HTTP %d: %v", resp.StatusCode, err)
			}
			r.errors.add("socket_dial", msg)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		p.serveConn(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		if !sleepCtx(ctx, 100*time.Millisecond+time.Duration(rand.Int64N(int64(400*time.Millisecond)))) {
			return
		}
	}
}

func (p *participant) serveConn(ctx context.Context, conn *websocket.Conn) {
	r := p.r
	stop := context.AfterFunc(ctx, func() {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		conn.Close()
	})
	defer stop()
	defer conn.Close()
	conn.SetReadLimit(64 << 20)
	// As the current ComfyUI frontend does.
	conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"feature_flags","data":{"supports_preview_metadata":true}}`))
	r.sockets.Add(1)
	defer r.sockets.Add(-1)
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() == nil {
				r.errors.add("socket_drop", err.Error())
			}
			return
		}
		p.readyOnce.Do(func() { close(p.ready) })
		r.socketMsgs.Add(1)
		if kind == websocket.BinaryMessage {
			r.previews.Add(1)
			continue
		}
		p.onText(ctx, msg)
	}
}

// msgType reads the "type" of a ComfyUI socket message without decoding
// the rest: most messages (progress, workshop_status) need no more.
func msgType(b []byte) string {
	i := bytes.Index(b, []byte(`"type"`))
	if i < 0 {
		return ""
	}
	b = bytes.TrimLeft(b[i+6:], " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return ""
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 || b[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return ""
	}
	return string(b[1 : 1+end])
}

func (p *participant) onText(ctx context.Context, msg []byte) {
	r := p.r
	typ := msgType(msg)
	switch typ {
	case "progress":
		r.progress.Add(1)
		return
	case "status":
		var m struct {
			Data struct {
				Status struct {
					ExecInfo struct {
						QueueRemaining int `json:"queue_remaining"`
					} `json:"exec_info"`
				} `json:"status"`
			} `json:"data"`
		}
		if json.Unmarshal(msg, &m) != nil {
			return
		}
		rem := m.Data.Status.ExecInfo.QueueRemaining
		p.mu.Lock()
		// The server holds fewer of our jobs than we wait for: one ended
		// without our seeing why (a failure the engine did not report, or
		// events lost while the socket was down). Ask history, shortly.
		missed := rem < p.unresolved && !p.reconcile
		if missed {
			p.reconcile = true
		}
		p.mu.Unlock()
		if missed {
			time.AfterFunc(time.Second, func() { p.reconcileAll(ctx, 0) })
		}
		return
	case "execution_start", "executed", "execution_success", "execution_error", "execution_interrupted":
	default:
		return
	}
	var m struct {
		Data struct {
			PromptID string                     `json:"prompt_id"`
			Output   map[string]json.RawMessage `json:"output"`
		} `json:"data"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Data.PromptID == "" {
		return
	}
	now := time.Now()
	p.mu.Lock()
	j := p.jobs[m.Data.PromptID]
	if j == nil {
		// Events can overtake the answer to the POST; or this is a job of
		// an earlier run (never acknowledged to us, ignored at the end).
		j = &job{id: m.Data.PromptID}
		p.jobs[j.id] = j
	}
	j.lastEvent = now
	var start, check bool
	switch typ {
	case "execution_start":
		j.runs++
		j.startAt = now
		j.outputs = nil // a requeued job runs again: only this run's files count
	case "executed":
		j.outputs = appendFiles(j.outputs, m.Data.Output)
	case "execution_success":
		if !j.terminal() {
			j.success, j.successAt = true, now
			if j.acked {
				p.unresolved--
				start = !j.busy
				j.busy = true
			}
		}
	case "execution_error", "execution_interrupted":
		// The server decides whether this ends the job (a stale run of a
		// requeued job can be interrupted): ask its history.
		check = j.acked && !j.terminal() && !j.busy
		if check {
			j.busy = true
		}
	}
	p.mu.Unlock()
	if start {
		go p.collect(ctx, j)
	}
	if check {
		go func() {
			sleepCtx(ctx, 500*time.Millisecond)
			p.checkHistory(ctx, j)
		}()
	}
}

// appendFiles adds the files of one node's output (any key whose value is
// a list of {filename, subfolder, type}).
func appendFiles(out []fileRef, output map[string]json.RawMessage) []fileRef {
	for _, raw := range output {
		var files []fileRef
		if json.Unmarshal(raw, &files) != nil {
			continue
		}
		for _, f := range files {
			if f.Filename == "" {
				continue
			}
			dup := false
			for _, o := range out {
				if o == f {
					dup = true
				}
			}
			if !dup {
				out = append(out, f)
			}
		}
	}
	return out
}

// submit posts one graph; it returns false when the run is over.
func (p *participant) submit(ctx context.Context) bool {
	r := p.r
	backoff := 250 * time.Millisecond
	for {
		if p.cap > 0 {
			for {
				p.mu.Lock()
				n := p.unresolved
				p.mu.Unlock()
				if n < p.cap {
					break
				}
				select {
				case <-p.changed:
				case <-ctx.Done():
					return false
				}
			}
		}
		body := r.graphBody(p)
		t0 := time.Now()
		// The request outlives the run's end: an answer that comes is
		// counted, so no acknowledged job goes unnoticed.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		resp, err := r.do(rctx, "POST", p.path+"/api/prompt", body, p.cookie, false)
		if err != nil {
			cancel()
			r.errors.add("submit_network", err.Error())
			r.submitErrors.Add(1)
			return sleepCtx(ctx, backoff)
		}
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		cancel()
		lat := time.Since(t0)
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			// The participant's cap on pending jobs: wait for one of ours
			// to end (or a while), then try again.
			r.rejected.Add(1)
			t := time.NewTimer(backoff)
			select {
			case <-p.changed:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false
			}
			t.Stop()
			backoff = min(backoff*2, 5*time.Second)
			continue
		case resp.StatusCode != http.StatusOK || rerr != nil:
			r.submitErrors.Add(1)
			r.errors.add(fmt.Sprintf("submit_http_%d", resp.StatusCode), strings.TrimSpace(string(raw)))
			return sleepCtx(ctx, backoff)
		}
		var ans struct {
			PromptID string `json:"prompt_id"`
		}
		if json.Unmarshal(raw, &ans) != nil || ans.PromptID == "" {
			r.submitErrors.Add(1)
			r.errors.add("submit_bad_answer", string(raw))
			return ctx.Err() == nil
		}
		r.submitLat.add(lat)
		r.acked.Add(1)
		p.mu.Lock()
		j := p.jobs[ans.PromptID]
		if j == nil {
			j = &job{id: ans.PromptID}
			p.jobs[j.id] = j
		}
		j.acked, j.submitAt, j.ackAt, j.lastEvent = true, t0, t0.Add(lat), t0.Add(lat)
		p.submitted++
		start := false
		if j.success && !j.busy {
			j.busy, start = true, true
		} else if !j.terminal() {
			p.unresolved++
		}
		p.mu.Unlock()
		if start {
			go p.collect(r.life, j)
		}
		return ctx.Err() == nil
	}
}

// collect downloads a succeeded job's outputs: those named in its executed
// events, or in its history entry.
func (p *participant) collect(ctx context.Context, j *job) {
	p.mu.Lock()
	files := append([]fileRef(nil), j.outputs...)
	p.mu.Unlock()
	if len(files) == 0 {
		h, ok := p.history(ctx, j.id)
		if !ok || h.status != "success" {
			// Not finished yet as far as history says (or gone): a later
			// status message or the final sweep settles it.
			p.mu.Lock()
			j.busy, j.success = false, false
			if j.acked {
				p.unresolved++
			}
			p.mu.Unlock()
			return
		}
		files = h.files
	}
	got, err := p.downloadAll(ctx, files)
	if err != nil {
		// The files the socket named may be a stale run's: ask history.
		if h, ok := p.history(ctx, j.id); ok && h.status == "success" && !sameFiles(h.files, files) {
			got, err = p.downloadAll(ctx, h.files)
		}
	}
	p.finish(j, got, err)
}

func sameFiles(a, b []fileRef) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (p *participant) downloadAll(ctx context.Context, files []fileRef) ([]Download, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("the job has no output files")
	}
	var out []Download
	for _, f := range files {
		d, err := p.download(ctx, f)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (p *participant) download(ctx context.Context, f fileRef) (Download, error) {
	r := p.r
	select {
	case r.dlSem <- struct{}{}:
	case <-ctx.Done():
		return Download{}, ctx.Err()
	}
	defer func() { <-r.dlSem }()
	typ := f.Type
	if typ == "" {
		typ = "output"
	}
	q := url.Values{"filename": {f.Filename}, "subfolder": {f.Subfolder}, "type": {typ}}
	// The server holds a /view that comes before the job is collected.
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout+2*time.Minute)
	defer cancel()
	resp, err := r.do(rctx, "GET", p.path+"/api/view?"+q.Encode(), nil, p.cookie, false)
	if err != nil {
		return Download{}, fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return Download{}, fmt.Errorf("download %s: HTTP %d", f.Filename, resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return Download{}, fmt.Errorf("download %s: %w", f.Filename, err)
	}
	if n == 0 {
		return Download{}, fmt.Errorf("download %s: empty file", f.Filename)
	}
	r.bytes.Add(n)
	return Download{Filename: f.Filename, Subfolder: f.Subfolder, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// finish records a job's end: completed with its files, or failed.
func (p *participant) finish(j *job, got []Download, err error) {
	r := p.r
	now := time.Now()
	p.mu.Lock()
	j.busy = false
	if err != nil {
		j.failed, j.errType, j.errMsg = true, "download", err.Error()
		p.failed++
	} else {
		j.done, j.files = true, got
		j.e2e = now.Sub(j.submitAt)
		p.completed++
		if now.Before(r.submitEnd()) {
			p.inWindow++
		}
	}
	var run time.Duration
	if err == nil && !j.startAt.IsZero() && j.successAt.After(j.startAt) {
		run = j.successAt.Sub(j.startAt)
		p.service += run
	}
	e2e := j.e2e
	p.mu.Unlock()
	if err != nil {
		r.failed.Add(1)
		r.errors.add("job_download", err.Error())
	} else {
		r.completed.Add(1)
		r.e2eLat.add(e2e)
		if now.Before(r.submitEnd()) {
			r.completedInWindow.Add(1)
		}
		r.addBusy(run)
	}
	p.signal()
}

// histEntry is what /history/{id} says about a job.
type histEntry struct {
	status  string // "success", "error", or "" (not finished)
	files   []fileRef
	errType string
	errMsg  string
}

func (p *participant) history(ctx context.Context, id string) (histEntry, bool) {
	r := p.r
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	resp, err := r.do(rctx, "GET", p.path+"/api/history/"+url.PathEscape(id), nil, p.cookie, false)
	if err != nil {
		r.errors.add("history_network", err.Error())
		return histEntry{}, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.errors.add(fmt.Sprintf("history_http_%d", resp.StatusCode), "")
		return histEntry{}, false
	}
	var all map[string]struct {
		Outputs map[string]map[string]json.RawMessage `json:"outputs"`
		Status  struct {
			StatusStr string            `json:"status_str"`
			Completed bool              `json:"completed"`
			Messages  []json.RawMessage `json:"messages"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		r.errors.add("history_bad_answer", err.Error())
		return histEntry{}, false
	}
	e, ok := all[id]
	if !ok {
		return histEntry{}, true
	}
	h := histEntry{status: e.Status.StatusStr}
	if h.status == "" && e.Status.Completed {
		h.status = "success"
	}
	for _, node := range sortedKeys(e.Outputs) {
		h.files = appendFiles(h.files, e.Outputs[node])
	}
	for _, m := range e.Status.Messages {
		var pair []json.RawMessage
		if json.Unmarshal(m, &pair) != nil || len(pair) != 2 {
			continue
		}
		var ev struct {
			Type    string `json:"exception_type"`
			Message string `json:"exception_message"`
		}
		json.Unmarshal(pair[1], &ev)
		if ev.Type != "" || ev.Message != "" {
			h.errType, h.errMsg = ev.Type, ev.Message
		}
	}
	return h, true
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// checkHistory settles one job from its history entry; j.busy is set by
// the caller and cleared here.
func (p *participant) checkHistory(ctx context.Context, j *job) {
	h, ok := p.history(ctx, j.id)
	switch {
	case ok && h.status == "success":
		p.mu.Lock()
		if !j.terminal() {
			j.success = true
			if j.successAt.IsZero() {
				j.successAt = time.Now()
			}
			p.unresolved--
		}
		j.outputs = h.files
		p.mu.Unlock()
		p.collect(ctx, j)
	case ok && h.status == "error":
		p.mu.Lock()
		j.busy = false
		wasTerminal := j.terminal()
		if !wasTerminal {
			j.failed = true
			j.errType, j.errMsg = or(h.errType, "error"), h.errMsg
			p.unresolved--
			p.failed++
		}
		p.mu.Unlock()
		if !wasTerminal {
			p.r.failed.Add(1)
			p.r.errors.add("job_failed:"+or(h.errType, "error"), h.errMsg)
			p.signal()
		}
	default:
		// Not finished as far as history says. One whose success we saw
		// meanwhile (an error event of a stale run, then this run's
		// success) is collected now.
		p.mu.Lock()
		resume := j.success && !j.done && !j.failed
		if !resume {
			j.busy = false
		}
		p.mu.Unlock()
		if resume {
			p.collect(ctx, j)
		}
	}
}

// reconcileAll asks history about every job we still wait for that has
// been quiet for at least quiet.
func (p *participant) reconcileAll(ctx context.Context, quiet time.Duration) {
	p.mu.Lock()
	p.reconcile = false
	var todo []*job
	now := time.Now()
	for _, j := range p.jobs {
		if j.acked && !j.done && !j.failed && !j.busy && now.Sub(j.lastEvent) >= quiet {
			j.busy = true
			todo = append(todo, j)
		}
	}
	p.mu.Unlock()
	for _, j := range todo {
		p.checkHistory(ctx, j)
	}
}

// cleanup removes this participant's pending jobs from the queue, as its
// owner can. Running ones are left to finish (seconds): interrupting one
// whose outputs are being fetched would fail it.
func (p *participant) cleanup(ctx context.Context) {
	if resp, err := p.r.do(ctx, "POST", p.path+"/api/queue", []byte(`{"clear":true}`), p.cookie, false); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
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
