package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestJain(t *testing.T) {
	for _, c := range []struct {
		x    []float64
		want float64
	}{
		{nil, 1},
		{[]float64{0, 0}, 1},
		{[]float64{3, 3, 3, 3}, 1},
		{[]float64{1, 0, 0, 0}, 0.25},
		{[]float64{1, 2}, 0.9},
	} {
		if got := Jain(c.x); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Jain(%v) = %v, want %v", c.x, got, c.want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var s series
	for i := 1; i <= 1000; i++ {
		s.add(time.Duration(i) * time.Millisecond)
	}
	p := s.summary()
	if p.N != 1000 || p.P50 != 500 || p.P90 != 900 || p.P99 != 990 || p.Max != 1000 || p.Min != 1 {
		t.Errorf("summary %+v", p)
	}
	if (&series{}).summary().N != 0 {
		t.Error("empty series")
	}
}

func TestMsgType(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"progress","data":{}}`:             "progress",
		`{"type": "execution_start", "data": {}}`:   "execution_start",
		`{"data":{"x":1},"type" : "executed"}`:      "executed",
		`{"data":{}}`:                               "",
		`{"type":3}`:                                "",
		`{"type":"unterminated`:                     "",
		`{"type":"status","data":{"type":"other"}}`: "status",
	} {
		if got := msgType([]byte(in)); got != want {
			t.Errorf("msgType(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{Server: "http://127.0.0.1:8080", AdminToken: "t", Participants: 2, Rate: 1, Duration: time.Second}
	good.Defaults()
	if _, err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no token":       func(c *Config) { c.AdminToken = "" },
		"ftp":            func(c *Config) { c.Server = "ftp://x" },
		"path":           func(c *Config) { c.Server = "http://x/user/1" },
		"no one":         func(c *Config) { c.Participants = 0 },
		"no time":        func(c *Config) { c.Duration = 0 },
		"arrival":        func(c *Config) { c.Arrival = "bursty" },
		"graph":          func(c *Config) { c.Graph = "video" },
		"heavy":          func(c *Config) { c.Heavy = 3 },
		"heavy factor":   func(c *Config) { c.HeavyFactor = 0.5 },
		"negative rate":  func(c *Config) { c.Rate = -1 },
		"seat 0":         func(c *Config) { c.SeatsFrom = -1 },
		"steps":          func(c *Config) { c.Steps = -1 },
		"max in flight":  func(c *Config) { c.MaxInflight = -1 },
		"negative drain": func(c *Config) { c.Drain = -1 },
	} {
		c := good
		mod(&c)
		if _, err := c.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

// fakeServer plays the workshop server's part of the protocol, with
// scripted trouble: a 429, jobs that fail without an engine event, and a
// socket that drops before a job's events.
type fakeServer struct {
	t      *testing.T
	mu     sync.Mutex
	n      int
	jobs   map[string]*fakeJob
	socks  map[int]*fakeSock
	got429 map[int]bool
}

type fakeJob struct {
	seat  int
	state string // running, done, error
}

type fakeSock struct {
	mu   sync.Mutex
	conn *websocket.Conn
}

func (s *fakeSock) send(v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(v)
	s.conn.WriteMessage(websocket.TextMessage, b)
}

func fileOf(id string) []byte { return []byte("PNG of " + id) }

func (f *fakeServer) remaining(seat int) int {
	n := 0
	for _, j := range f.jobs {
		if j.seat == seat && j.state == "running" {
			n++
		}
	}
	return n
}

func (f *fakeServer) status(seat int) map[string]any {
	return map[string]any{"type": "status", "data": map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": f.remaining(seat)}}}}
}

func (f *fakeServer) seatOf(w http.ResponseWriter, r *http.Request) (int, bool) {
	parts := strings.Split(r.URL.Path, "/")
	seat, _ := strconv.Atoi(parts[2])
	if c, err := r.Cookie("workshop_session"); err != nil || c.Value != fmt.Sprintf("session-%d", seat) {
		http.Error(w, "sign in", 401)
		return 0, false
	}
	return seat, true
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	admin := r.Header.Get("Authorization") == "Bearer tok"
	switch {
	case p == "/api/seats" && admin:
		json.NewEncoder(w).Encode(map[string]any{"seats": []map[string]any{
			{"seat": 1, "code": "c1"}, {"seat": 2, "code": "c2"}, {"seat": 3, "code": "c3"}, {"seat": 4, "code": "c4", "disabled": true}}})
	case p == "/api/workers" && admin:
		w.Write([]byte(`{"workers":[{"connected":true},{"connected":false}]}`))
	case p == "/api/metrics" && admin:
		w.Write([]byte(`{"instances":[{"id":"a/0","busy_fraction":0.5,"jobs_done":3}],"participants":[{"user_id":"user001","jobs":1,"gpu_seconds":1}]}`))
	case strings.HasPrefix(p, "/api/"), p == "/metrics":
		http.Error(w, "no", 404)
	case strings.HasPrefix(p, "/join/"):
		seat := strings.TrimPrefix(p, "/join/c")
		http.SetCookie(w, &http.Cookie{Name: "workshop_session", Value: "session-" + seat, Path: "/"})
		http.Redirect(w, r, "/user/"+seat+"/", http.StatusSeeOther)
	case strings.HasPrefix(p, "/user/") && strings.HasSuffix(p, "/ws"):
		seat, ok := f.seatOf(w, r)
		if !ok {
			return
		}
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s := &fakeSock{conn: conn}
		f.mu.Lock()
		f.socks[seat] = s
		st := f.status(seat)
		f.mu.Unlock()
		s.send(st)
		go func() {
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
	case strings.HasSuffix(p, "/api/prompt") && r.Method == "POST":
		seat, ok := f.seatOf(w, r)
		if !ok {
			return
		}
		var req struct {
			Prompt   map[string]any `json:"prompt"`
			ClientID string         `json:"client_id"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Prompt) == 0 || req.ClientID == "" {
			http.Error(w, "bad prompt", 400)
			return
		}
		f.mu.Lock()
		if seat == 2 && !f.got429[seat] {
			f.got429[seat] = true
			f.mu.Unlock()
			w.WriteHeader(429)
			w.Write([]byte(`{"error":{"type":"queue_full"}}`))
			return
		}
		f.n++
		n := f.n
		id := fmt.Sprintf("job-%03d", n)
		f.jobs[id] = &fakeJob{seat: seat, state: "running"}
		sock := f.socks[seat]
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"prompt_id": id, "number": n, "node_errors": map[string]any{}})
		go f.run(id, seat, n, sock)
	case strings.Contains(p, "/api/history/"):
		seat, ok := f.seatOf(w, r)
		if !ok {
			return
		}
		id := p[strings.LastIndex(p, "/")+1:]
		f.mu.Lock()
		var j fakeJob
		if p := f.jobs[id]; p != nil {
			j = *p
		}
		f.mu.Unlock()
		if j.seat != seat || j.state == "running" {
			w.Write([]byte(`{}`))
			return
		}
		entry := map[string]any{"outputs": map[string]any{}, "status": map[string]any{"status_str": "success", "completed": true, "messages": []any{}}}
		if j.state == "error" {
			entry["status"] = map[string]any{"status_str": "error", "completed": false,
				"messages": []any{[]any{"execution_error", map[string]any{"exception_type": "attempts_exhausted", "exception_message": "gone"}}}}
		} else {
			entry["outputs"] = map[string]any{"9": map[string]any{"images": []any{map[string]any{"filename": id + ".png", "subfolder": id, "type": "output"}}}}
		}
		json.NewEncoder(w).Encode(map[string]any{id: entry})
	case strings.HasSuffix(p, "/api/view"):
		seat, ok := f.seatOf(w, r)
		if !ok {
			return
		}
		id := r.URL.Query().Get("subfolder")
		f.mu.Lock()
		var j fakeJob
		if p := f.jobs[id]; p != nil {
			j = *p
		}
		f.mu.Unlock()
		if j.seat != seat || j.state != "done" || r.URL.Query().Get("filename") != id+".png" {
			http.Error(w, "not found", 404)
			return
		}
		w.Write(fileOf(id))
	case strings.HasSuffix(p, "/api/queue") || strings.HasSuffix(p, "/api/interrupt"):
		f.seatOf(w, r)
	default:
		f.t.Errorf("unexpected %s %s", r.Method, p)
		http.Error(w, "?", 404)
	}
}

// run plays one job: most run with every event; every tenth from the
// third fails with no engine event; every tenth from the seventh finishes
// while its owner's socket is cut.
func (f *fakeServer) run(id string, seat, n int, sock *fakeSock) {
	time.Sleep(5 * time.Millisecond)
	set := func(state string) map[string]any {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.jobs[id].state = state
		return f.status(seat)
	}
	switch {
	case n%10 == 3:
		sock.send(set("error"))
	case n%10 == 7:
		set("done")
		sock.conn.Close()
	default:
		sock.send(map[string]any{"type": "execution_start", "data": map[string]any{"prompt_id": id}})
		sock.send(map[string]any{"type": "progress", "data": map[string]any{"prompt_id": id, "value": 1, "max": 2}})
		sock.send(map[string]any{"type": "executed", "data": map[string]any{"prompt_id": id, "node": "9",
			"output": map[string]any{"images": []any{map[string]any{"filename": id + ".png", "subfolder": id, "type": "output"}}}}})
		sock.send(map[string]any{"type": "execution_success", "data": map[string]any{"prompt_id": id}})
		sock.send(set("done"))
	}
}

func TestRunAgainstFakeServer(t *testing.T) {
	f := &fakeServer{t: t, jobs: map[string]*fakeJob{}, socks: map[int]*fakeSock{}, got429: map[int]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	r, err := New(Config{Server: srv.URL, AdminToken: "tok", Participants: 3, Rate: 30, Duration: time.Second,
		Drain: 10 * time.Second, Arrival: ArrivalEven, Graph: GraphSampler, Jobs: true, Cleanup: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Log(text.String())

	f.mu.Lock()
	defer f.mu.Unlock()
	failing := 0
	for _, j := range f.jobs {
		if j.state == "error" {
			failing++
		}
	}
	if rep.Submitted != int64(len(f.jobs)) || rep.Submitted < 20 {
		t.Errorf("submitted %d, the server has %d jobs", rep.Submitted, len(f.jobs))
	}
	if rep.Unfinished != 0 || rep.Failed != int64(failing) || rep.Completed != rep.Submitted-int64(failing) {
		t.Errorf("completed %d, failed %d (want %d), unfinished %d", rep.Completed, rep.Failed, failing, rep.Unfinished)
	}
	if rep.Rejected429 != 1 || rep.SocketsOpen != 3 || rep.Instances != 1 {
		t.Errorf("429s %d, sockets %d, instances %d", rep.Rejected429, rep.SocketsOpen, rep.Instances)
	}
	if rep.SubmitLatency.N != rep.Submitted || rep.EndToEnd.N != rep.Completed || rep.ProgressEvents == 0 {
		t.Errorf("latencies %+v %+v, progress %d", rep.SubmitLatency, rep.EndToEnd, rep.ProgressEvents)
	}
	kinds := map[string]int64{}
	for _, e := range rep.Errors {
		kinds[e.Kind] = e.Count
	}
	if kinds["job_failed:attempts_exhausted"] != int64(failing) || kinds["socket_drop"] == 0 || len(kinds) != 2 {
		t.Errorf("errors %+v", rep.Errors)
	}
	if len(rep.Jobs) != len(f.jobs) {
		t.Fatalf("%d job records", len(rep.Jobs))
	}
	for _, j := range rep.Jobs {
		switch f.jobs[j.ID].state {
		case "done":
			sum := sha256.Sum256(fileOf(j.ID))
			if j.Status != "completed" || len(j.Files) != 1 || j.Files[0].SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("job %+v", j)
			}
		case "error":
			if j.Status != "failed" || !strings.Contains(j.Error, "attempts_exhausted") {
				t.Errorf("job %+v", j)
			}
		}
	}
	if rep.GPU.BusyServer == nil || *rep.GPU.BusyServer != 0.5 || rep.Fairness.JainServerGPU == nil {
		t.Errorf("gpu %+v fairness %+v", rep.GPU, rep.Fairness)
	}
	if rep.Fairness.JainCompleted <= 0 || rep.Fairness.JainCompleted > 1 {
		t.Errorf("fairness %+v", rep.Fairness)
	}
}

func TestRunNeedsSeats(t *testing.T) {
	f := &fakeServer{t: t, jobs: map[string]*fakeJob{}, socks: map[int]*fakeSock{}, got429: map[int]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	for _, c := range []Config{
		{Server: srv.URL, AdminToken: "tok", Participants: 4, Rate: 1, Duration: time.Second},               // seat 4 is disabled
		{Server: srv.URL, AdminToken: "tok", Participants: 2, SeatsFrom: 5, Rate: 1, Duration: time.Second}, // no seat 5
		{Server: srv.URL, AdminToken: "wrong", Participants: 1, Rate: 1, Duration: time.Second},
	} {
		r, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Run(context.Background()); err == nil {
			t.Errorf("%+v: ran", c)
		} else {
			t.Log(err)
		}
	}
}
