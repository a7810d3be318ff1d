package integration

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"
)

// adminBrowser is the instructor's browser: a cookie session and its CSRF
// token.
type adminBrowser struct {
	t      testing.TB
	base   string
	client *http.Client
	csrf   string
}

func (s *stack) adminLogin(secret string) (*adminBrowser, int) {
	jar, _ := cookiejar.New(nil)
	b := &adminBrowser{t: s.a.t, base: s.base, client: &http.Client{Jar: jar}}
	st, body := b.call("POST", "/admin/login", map[string]any{"secret": secret}, "")
	var r struct{ CSRF string }
	json.Unmarshal(body, &r)
	b.csrf = r.CSRF
	return b, st
}

// call sends a request with the session cookie and the given CSRF token.
func (b *adminBrowser) call(method, path string, body any, csrf string) (int, []byte) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, b.base+path, rd)
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Every admin action: refused without a session, with a bad CSRF token and
// with a participant's session; done with the admin's session and token.
func TestAdminActions(t *testing.T) {
	s := startStack(t, "--admin-password", "correct horse battery")
	if _, st := s.adminLogin("wrong"); st != 401 {
		t.Fatalf("wrong secret: %d", st)
	}
	b, st := s.adminLogin("correct horse battery")
	if st != 200 || b.csrf == "" {
		t.Fatalf("login with the password: %d", st)
	}
	if _, st := s.adminLogin(adminToken); st != 200 {
		t.Fatalf("login with the token: %d", st)
	}
	if st, body := b.call("GET", "/admin/session", nil, ""); st != 200 || !bytes.Contains(body, []byte(b.csrf)) {
		t.Errorf("session: %d %s", st, body)
	}
	part := s.join(1)

	// Things to act on.
	s.a.do("POST", "/api/queue/pause", nil, nil)
	j1 := s.a.submit("user001", imageGraph("a", 1))
	j2 := s.a.submit("user002", imageGraph("b", 2))
	j3 := s.a.submit("user002", imageGraph("c", 3))
	var note struct{ ID string }
	s.a.do("POST", "/api/announcements", map[string]any{"text": "first"}, &note)

	actions := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/api/jobs/" + j2.ID + "/move", map[string]any{"to": "top"}, 200},
		{"PATCH", "/api/jobs/" + j3.ID + "/priority", map[string]any{"priority": 0}, 200},
		{"DELETE", "/api/jobs/" + j3.ID, nil, 200},
		{"POST", "/api/jobs/" + j3.ID + "/retry", nil, 201},
		{"PUT", "/api/queue/mode", map[string]any{"mode": "fifo"}, 200},
		{"POST", "/api/workers/gpu-a/0/drain", nil, 200},
		{"POST", "/api/workers/gpu-a/0/undrain", nil, 200},
		{"POST", "/api/seats", map[string]any{"name": "Guest"}, 201},
		{"PATCH", "/api/seats/2", map[string]any{"name": "Bea", "max_pending": 3}, 200},
		{"DELETE", "/api/seats/4", nil, 200},
		{"POST", "/api/announcements", map[string]any{"text": "Break at 11"}, 201},
		{"DELETE", "/api/announcements/" + note.ID, nil, 200},
		{"PUT", "/api/workflows/demo.json", map[string]any{"nodes": []any{}}, 200},
		{"DELETE", "/api/workflows/demo.json", nil, 200},
		{"PUT", "/api/admin/password", map[string]any{"password": "another long one"}, 200},
		{"POST", "/api/queue/resume", nil, 200},
	}
	for _, a := range actions {
		// No session, a participant's session, the admin's without or with
		// a wrong CSRF token: refused, nothing done.
		if st, _ := anonymous(t, s.base).do(a.method, a.path, strings.NewReader("{}"), ""); st != 401 {
			t.Errorf("%s %s without a session: %d", a.method, a.path, st)
		}
		if st, _ := part.do(a.method, a.path, strings.NewReader("{}"), ""); st != 401 {
			t.Errorf("%s %s with a participant's session: %d", a.method, a.path, st)
		}
		if st, _ := b.call(a.method, a.path, a.body, ""); st != 403 {
			t.Errorf("%s %s without CSRF: %d", a.method, a.path, st)
		}
		if st, _ := b.call(a.method, a.path, a.body, "forged"); st != 403 {
			t.Errorf("%s %s with a bad CSRF token: %d", a.method, a.path, st)
		}
		if st, body := b.call(a.method, a.path, a.body, b.csrf); st != a.want {
			t.Errorf("%s %s: %d, want %d: %s", a.method, a.path, st, a.want, body)
		}
	}
	// A cross-site Origin is refused even with the token.
	req, _ := http.NewRequest("POST", s.base+"/api/queue/pause", nil)
	req.Header.Set("X-CSRF-Token", b.csrf)
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := b.client.Do(req); err != nil || resp.StatusCode != 403 {
		t.Errorf("cross-site origin: %v %v", resp.StatusCode, err)
	}
	if _, st := s.adminLogin("another long one"); st != 200 {
		t.Errorf("new password: %d", st)
	}

	// The jobs run; the room's views.
	s.ev.waitDone(60*time.Second, j1.ID, j2.ID)
	var spot struct{ Name, URL string }
	var gallery struct {
		Outputs []struct {
			JobID string `json:"job_id"`
			Name  string `json:"name"`
		}
	}
	if st, body := b.call("GET", "/api/outputs?limit=10", nil, ""); st != 200 || json.Unmarshal(body, &gallery) != nil || len(gallery.Outputs) < 2 {
		t.Fatalf("gallery: %d %s", st, body)
	}
	o := gallery.Outputs[0]
	if st, body := b.call("POST", "/api/spotlight", map[string]any{"job_id": o.JobID, "name": o.Name}, b.csrf); st != 200 || json.Unmarshal(body, &spot) != nil || spot.Name != o.Name {
		t.Errorf("spotlight: %d %s", st, body)
	}
	if st, body := b.call("GET", "/api/spotlight", nil, ""); st != 200 || !bytes.Contains(body, []byte(o.Name)) {
		t.Errorf("current spotlight: %d %s", st, body)
	}
	if st, _ := b.call("POST", "/api/spotlight", map[string]any{"job_id": o.JobID, "name": "nope.png"}, b.csrf); st != 404 {
		t.Errorf("spotlight of a missing output: %d", st)
	}
	if st, body := b.call("GET", "/api/seats/1/qr.png", nil, ""); st != 200 || !bytes.HasPrefix(body, []byte("\x89PNG")) {
		t.Errorf("qr: %d", st)
	}
	var seats struct {
		Seats []struct {
			Seat       int    `json:"seat"`
			Name       string `json:"name"`
			Online     *bool  `json:"online"`
			Done       *int   `json:"done"`
			MaxPending *int   `json:"max_pending"`
		}
	}
	b.call("GET", "/api/seats", nil, "")
	_, sb := b.call("GET", "/api/seats", nil, "")
	json.Unmarshal(sb, &seats)
	for _, st := range seats.Seats {
		if st.Seat == 2 && (st.Name != "Bea" || st.MaxPending == nil || *st.MaxPending != 3 || st.Done == nil || *st.Done < 1) {
			t.Errorf("seat 2: %+v", st)
		}
	}
	var metrics struct {
		JobsDone int `json:"jobs_done"`
		Timeline []any
		Wait     struct{ P50 *float64 } `json:"wait_seconds"`
	}
	if st, body := b.call("GET", "/api/metrics", nil, ""); st != 200 || json.Unmarshal(body, &metrics) != nil || metrics.JobsDone < 2 || len(metrics.Timeline) == 0 || metrics.Wait.P50 == nil {
		t.Errorf("metrics: %d %s", st, body)
	}
	var act struct {
		Entries []struct{ Actor, Kind, Action string }
	}
	_, ab := b.call("GET", "/api/activity?limit=500", nil, "")
	json.Unmarshal(ab, &act)
	kinds := map[string]bool{}
	for _, e := range act.Entries {
		kinds[e.Kind+":"+e.Action] = true
	}
	for _, want := range []string{"job:submitted", "job:completed", "job:cancelled", "agent:connected", "admin:signed in",
		"admin:paused the queue", "admin:drained GPU gpu-a/0", "admin:renamed seat 2 to Bea; let seat 2 hold 3 pending jobs at a time"} {
		if !kinds[want] {
			t.Errorf("activity has no %s: %v", want, kinds)
		}
	}
	if _, ab := b.call("GET", "/api/activity?kind=admin", nil, ""); bytes.Contains(ab, []byte(`"kind":"job"`)) {
		t.Errorf("activity filter: %s", ab)
	}
	st, csvBody := b.call("GET", "/api/export/jobs.csv", nil, "")
	rows, err := csv.NewReader(bytes.NewReader(csvBody)).ReadAll()
	if st != 200 || err != nil || len(rows) < 5 || rows[0][0] != "id" {
		t.Errorf("csv: %d %v %d rows", st, err, len(rows))
	}
	st, zipBody := b.call("GET", "/api/export/outputs.zip", nil, "")
	zr, err := zip.NewReader(bytes.NewReader(zipBody), int64(len(zipBody)))
	if st != 200 || err != nil || len(zr.File) < 2 || !strings.HasPrefix(zr.File[0].Name, "seat-00") {
		t.Errorf("zip: %d %v", st, err)
	}
	if st, _ := b.call("POST", "/admin/logout", nil, b.csrf); st != 200 {
		t.Errorf("logout: %d", st)
	}
	if st, _ := b.call("GET", "/api/jobs", nil, ""); st != 401 {
		t.Errorf("after logout: %d", st)
	}
}
