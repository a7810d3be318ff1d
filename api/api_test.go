package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

const token = "test-admin-token-0123456789"

const graph = `{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":0}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"t"}}}`

type env struct {
	t    *testing.T
	base string
	q    *sched.Queue
	db   *store.DB
}

func start(t testing.TB, cfg sched.Config) *env { return startWith(t, cfg, nil) }

// startWith is start with more of the server's configuration: more may add
// to it, given the store and its folder.
func startWith(t testing.TB, cfg sched.Config, more func(c *api.Config, db *store.DB, dir string)) *env {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	db, err := store.Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Log = quiet
	q, err := sched.Open(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := api.Config{Queue: q, DB: db, AdminTokenHash: auth.HashToken(token), Log: quiet, BodyLimit: 12 << 20}
	if more != nil {
		more(&c, db, dir)
	}
	srv := api.New(c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown(5 * time.Second)
		db.Close()
	})
	tt, _ := t.(*testing.T)
	return &env{t: tt, base: "http://" + ln.Addr().String(), q: q, db: db}
}

// call sends a request with the admin token (unless tok is "-") and decodes
// the JSON answer into out.
func (e *env) call(method, path, body string, out any, tok ...string) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
	t := token
	if len(tok) > 0 {
		t = tok[0]
	}
	if t != "-" {
		req.Header.Set("Authorization", "Bearer "+t)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s: content type %q, body %s", method, path, ct, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// expectError checks status and that the body is a JSON error with a message.
func (e *env) expectError(method, path, body string, status int, tok ...string) {
	e.t.Helper()
	var ae apiError
	if got := e.call(method, path, body, &ae, tok...); got != status {
		e.t.Errorf("%s %s %.60q: status %d, want %d (%+v)", method, path, body, got, status, ae)
	}
	if ae.Error.Code == "" || ae.Error.Message == "" {
		e.t.Errorf("%s %s: error body without code or message: %+v", method, path, ae)
	}
}

func (e *env) pendingCount() int {
	return e.q.Status().Counts[workshop.StatusPending]
}

func TestSubmitAndGet(t *testing.T) {
	e := start(t, sched.Config{})
	var j workshop.Job
	if st := e.call("POST", "/api/jobs", `{"user_id":"user001","workflow":`+graph+`,"priority":1,"metadata":{"k":"v"}}`, &j); st != 201 {
		t.Fatalf("status %d", st)
	}
	if j.ID == "" || j.UserID != "user001" || j.Status != "pending" || j.Priority != 1 || j.Position != 1 || j.CreatedAt.IsZero() || string(j.Metadata) != `{"k":"v"}` {
		t.Errorf("created %+v", j)
	}
	var g workshop.Job
	if st := e.call("GET", "/api/jobs/"+j.ID, "", &g); st != 200 || g.ID != j.ID || len(g.Workflow) == 0 || g.Position != 1 {
		t.Errorf("get %d %+v", st, g)
	}
	// No Content-Type at all still parses.
	req, _ := http.NewRequest("POST", e.base+"/api/jobs", strings.NewReader(`{"user_id":"user002","workflow":`+graph+`}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Del("Content-Type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Errorf("no content type: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

func TestSubmitErrors(t *testing.T) {
	e := start(t, sched.Config{MaxPending: 1})
	cases := []struct {
		body   string
		status int
	}{
		{``, 400},
		{`not json`, 400},
		{`[]`, 400},
		{`{"workflow":` + graph + `}`, 400},
		{`{"user_id":"","workflow":` + graph + `}`, 400},
		{`{"user_id":"a/b","workflow":` + graph + `}`, 400},
		{`{"user_id":7,"workflow":` + graph + `}`, 400},
		{`{"user_id":"u"}`, 400},
		{`{"user_id":"u","workflow":null}`, 400},
		{`{"user_id":"u","workflow":"x"}`, 400},
		{`{"user_id":"u","workflow":{}}`, 400},
		{`{"user_id":"u","workflow":{"1":{"inputs":{}}}}`, 400},
		{`{"user_id":"u","workflow":{"1":{"class_type":""}}}`, 400},
		{`{"user_id":"u","workflow":` + graph + `,"priority":9}`, 400},
		{`{"user_id":"u","workflow":` + graph + `,"priority":"high"}`, 400},
		{`{"user_id":"u","workflow":` + graph + `,"metadata":"` + strings.Repeat("x", 20<<10) + `"}`, 413},
		{`{"user_id":"u","workflow":{"1":{"class_type":"` + strings.Repeat("x", 9<<20) + `"}}}`, 413},
	}
	for _, c := range cases {
		e.expectError("POST", "/api/jobs", c.body, c.status)
	}
	if n := e.pendingCount(); n != 0 {
		t.Fatalf("bad submissions queued %d jobs", n)
	}
	// Over --max-pending: 429, and the first job is still the only one.
	if st := e.call("POST", "/api/jobs", `{"user_id":"u","workflow":`+graph+`}`, nil); st != 201 {
		t.Fatal(st)
	}
	e.expectError("POST", "/api/jobs", `{"user_id":"u","workflow":`+graph+`}`, 429)
	if n := e.pendingCount(); n != 1 {
		t.Errorf("pending %d", n)
	}
}

// A body over the server's limit is refused from its headers alone, before
// it is read; a raw connection sees the 413 without sending the body.
func TestBodyOverLimit(t *testing.T) {
	e := start(t, sched.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", token, 64<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ae apiError
	json.NewDecoder(resp.Body).Decode(&ae)
	if resp.StatusCode != 413 || ae.Error.Code != "too_large" {
		t.Errorf("status %d %+v", resp.StatusCode, ae)
	}
}

func TestAuth(t *testing.T) {
	e := start(t, sched.Config{})
	for _, r := range [][2]string{
		{"POST", "/api/jobs"}, {"GET", "/api/jobs"}, {"GET", "/api/jobs/x"}, {"DELETE", "/api/jobs/x"},
		{"PATCH", "/api/jobs/x/priority"}, {"POST", "/api/queue/pause"}, {"POST", "/api/queue/resume"},
		{"PUT", "/api/queue/mode"}, {"GET", "/api/queue/status"},
	} {
		e.expectError(r[0], r[1], `{}`, 401, "-")
		e.expectError(r[0], r[1], `{}`, 401, "wrong-token-wrong-token")
	}
	for _, p := range []string{"/health", "/api/health"} {
		var h map[string]any
		if st := e.call("GET", p, "", &h, "-"); st != 200 || h["status"] != "ok" {
			t.Errorf("%s: %d %v", p, st, h)
		}
	}
	// The socket refuses a missing or wrong token.
	for _, q := range []string{"", "?token=nope"} {
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.base, "http")+"/ws"+q, nil)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("ws %q: %v", q, err)
		}
	}
	e.expectError("GET", "/api/nope", "", 404)
}

// The profiler answers the admin only.
func TestProfilerAdminOnly(t *testing.T) {
	e := start(t, sched.Config{})
	for p, want := range map[string]string{"/debug/pprof/": "goroutine", "/debug/pprof/heap?debug=1": "HeapAlloc", "/debug/pprof/goroutine?debug=1": "goroutine profile"} {
		e.expectError("GET", p, "", 401, "-")
		e.expectError("GET", p, "", 401, "wrong-token-wrong-token")
		req, _ := http.NewRequest("GET", e.base+p, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s as admin: %d %.200s", p, resp.StatusCode, body)
		}
	}
}

func TestJobActions(t *testing.T) {
	e := start(t, sched.Config{Mode: workshop.ModeFIFO})
	var a, b workshop.Job
	e.call("POST", "/api/jobs", `{"user_id":"a","workflow":`+graph+`}`, &a)
	e.call("POST", "/api/jobs", `{"user_id":"b","workflow":`+graph+`}`, &b)

	unknown := "01a00000-0000-7000-8000-000000000000"
	e.expectError("GET", "/api/jobs/"+unknown, "", 404)
	e.expectError("DELETE", "/api/jobs/"+unknown, "", 404)
	e.expectError("PATCH", "/api/jobs/"+unknown+"/priority", `{"priority":0}`, 404)
	e.expectError("PATCH", "/api/jobs/"+b.ID+"/priority", `{}`, 400)
	e.expectError("PATCH", "/api/jobs/"+b.ID+"/priority", `{"priority":5}`, 400)
	e.expectError("PATCH", "/api/jobs/"+b.ID+"/priority", `nope`, 400)

	var moved workshop.Job
	if st := e.call("PATCH", "/api/jobs/"+b.ID+"/priority", `{"priority":0}`, &moved); st != 200 || moved.Priority != 0 || moved.Position != 1 {
		t.Errorf("priority: %d %+v", st, moved)
	}
	var c workshop.Job
	if st := e.call("DELETE", "/api/jobs/"+a.ID, "", &c); st != 200 || c.Status != "cancelled" {
		t.Errorf("cancel: %d %+v", st, c)
	}
	e.expectError("DELETE", "/api/jobs/"+a.ID, "", 409)
	e.expectError("PATCH", "/api/jobs/"+a.ID+"/priority", `{"priority":1}`, 409)

	// A running job cannot change priority.
	r, err := e.q.Lease(context.Background(), "w", time.Minute)
	if err != nil || r.ID != b.ID {
		t.Fatal(err)
	}
	e.expectError("PATCH", "/api/jobs/"+b.ID+"/priority", `{"priority":1}`, 409)

	var list struct {
		Jobs       []workshop.Job `json:"jobs"`
		NextCursor string         `json:"next_cursor"`
	}
	if st := e.call("GET", "/api/jobs?status=cancelled", "", &list); st != 200 || len(list.Jobs) != 1 || list.Jobs[0].ID != a.ID {
		t.Errorf("list cancelled: %+v", list)
	}
	if st := e.call("GET", "/api/jobs?user_id=b", "", &list); st != 200 || len(list.Jobs) != 1 || list.Jobs[0].Status != "running" {
		t.Errorf("list by user: %+v", list)
	}
	e.expectError("GET", "/api/jobs?status=weird", "", 400)
	e.expectError("GET", "/api/jobs?limit=0", "", 400)
	e.expectError("GET", "/api/jobs?limit=x", "", 400)
	e.expectError("GET", "/api/jobs?cursor=zzz", "", 400)
	e.expectError("GET", "/api/jobs?user_id=../x", "", 400)
}

func TestQueueControls(t *testing.T) {
	e := start(t, sched.Config{})
	var st struct {
		sched.Status
		Workers []any `json:"workers"`
	}
	if code := e.call("POST", "/api/queue/pause", "", &st); code != 200 || !st.Paused {
		t.Errorf("pause %d %+v", code, st)
	}
	if code := e.call("GET", "/api/queue/status", "", &st); code != 200 || !st.Paused || st.Workers == nil || len(st.Counts) != 5 {
		t.Errorf("status %d %+v", code, st)
	}
	if code := e.call("PUT", "/api/queue/mode", `{"mode":"round_robin"}`, &st); code != 200 || st.Mode != "round-robin" {
		t.Errorf("mode %d %+v", code, st)
	}
	if code := e.call("PUT", "/api/queue/mode", `{"mode":"fifo"}`, &st); code != 200 || st.Mode != "fifo" {
		t.Errorf("mode %d %+v", code, st)
	}
	e.expectError("PUT", "/api/queue/mode", `{"mode":"random"}`, 400)
	e.expectError("PUT", "/api/queue/mode", `{}`, 400)
	e.expectError("PUT", "/api/queue/mode", `[`, 400)
	if code := e.call("POST", "/api/queue/resume", "", &st); code != 200 || st.Paused || st.Mode != "fifo" {
		t.Errorf("resume %d %+v", code, st)
	}
}

func TestEventsSocket(t *testing.T) {
	e := start(t, sched.Config{})
	url := "ws" + strings.TrimPrefix(e.base, "http") + "/ws?token=" + token
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() sched.Event {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var ev sched.Event
		if err := conn.ReadJSON(&ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if ev := read(); ev.Type != "queue_changed" || ev.Queue == nil {
		t.Fatalf("first event %+v", ev)
	}
	var j workshop.Job
	e.call("POST", "/api/jobs", `{"user_id":"a","workflow":`+graph+`}`, &j)
	if ev := read(); ev.Type != "job_created" || ev.Job.ID != j.ID || ev.Job.Position != 1 {
		t.Errorf("created event %+v", ev)
	}
	e.call("DELETE", "/api/jobs/"+j.ID, "", nil)
	if ev := read(); ev.Type != "job_updated" || ev.Job.Status != "cancelled" {
		t.Errorf("updated event %+v", ev)
	}
	e.call("POST", "/api/queue/pause", "", nil)
	if ev := read(); ev.Type != "queue_changed" || !ev.Queue.Paused {
		t.Errorf("queue event %+v", ev)
	}
	// A bearer header works as well as ?token=.
	h := http.Header{"Authorization": {"Bearer " + token}}
	c2, _, err := websocket.DefaultDialer.Dial(strings.Split(url, "?")[0], h)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
}

func TestListLimitCapped(t *testing.T) {
	e := start(t, sched.Config{MaxPending: 0})
	for i := 0; i < 3; i++ {
		e.call("POST", "/api/jobs", fmt.Sprintf(`{"user_id":"u%d","workflow":%s}`, i, graph), nil)
	}
	var list struct {
		Jobs       []workshop.Job `json:"jobs"`
		NextCursor string         `json:"next_cursor"`
	}
	e.call("GET", "/api/jobs?limit=2", "", &list)
	if len(list.Jobs) != 2 || list.NextCursor == "" {
		t.Fatalf("%+v", list)
	}
	e.call("GET", "/api/jobs?limit=2&cursor="+list.NextCursor, "", &list)
	if len(list.Jobs) != 1 || list.NextCursor != "" {
		t.Errorf("second page %+v", list)
	}
}

// A socket dropped for being too slow ends cleanly while its client is
// still talking: the server's reader is done before the connection is
// handed back to the library, which reuses it.
func TestEventsSocketDroppedWhileClientTalks(t *testing.T) {
	e := start(t, sched.Config{})
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.base, "http")+"/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	talked := make(chan struct{})
	go func() {
		defer close(talked)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`)) != nil {
				return
			}
		}
	}()
	// The client reads nothing while the queue changes more than the
	// socket's buffer holds: the server drops it.
	for i := 0; i < 3000; i++ {
		e.q.Events().Publish(sched.Event{Type: sched.EventQueueChanged, Queue: &sched.Status{}})
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			break // closed by the server, as it should be
		}
	}
	close(stop)
	<-talked
	// The server still answers.
	var st map[string]any
	if code := e.call("GET", "/api/queue/status", "", &st); code != 200 {
		t.Errorf("after the drop: %d", code)
	}
}
