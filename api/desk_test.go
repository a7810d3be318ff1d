package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// storedLog is the activity log as stored, after what was queued to it.
func (r *roomEnv) storedLog() ([]activity.Entry, error) {
	r.db.Write(context.Background(), func(*store.Tx) error { return nil })
	return r.log.List("", "", 1000)
}

// activity waits for an activity entry that satisfies ok, then for the
// store to hold it (a write after the entry's commits behind it).
func (r *roomEnv) activity(what string, ok func(activity.Entry) bool) activity.Entry {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-r.acts.C:
			var e activity.Entry
			json.Unmarshal(ev.Data, &e)
			if ok(e) {
				if err := r.db.Write(context.Background(), func(*store.Tx) error { return nil }); err != nil {
					r.t.Fatal(err)
				}
				return e
			}
		case <-deadline:
			r.t.Fatalf("no activity entry: %s", what)
		}
	}
}

func (r *roomEnv) submit(user string) workshop.Job {
	r.t.Helper()
	var j workshop.Job
	if st := r.call("POST", "/api/jobs", `{"user_id":"`+user+`","workflow":`+graph+`}`, &j); st != 201 {
		r.t.Fatalf("submit for %s: %d", user, st)
	}
	return j
}

// complete runs the next job to the end with outputs named after it.
func (r *roomEnv) complete(names ...string) *workshop.Job {
	r.t.Helper()
	ctx := context.Background()
	j, err := r.q.Lease(ctx, "gpu-a/0", time.Minute)
	if err != nil {
		r.t.Fatal(err)
	}
	r.q.Started(ctx, j.ID, "gpu-a/0")
	res := &workshop.Result{}
	for _, n := range names {
		res.Outputs = append(res.Outputs, workshop.Output{Name: n, Filename: n, Type: "output", Size: 10})
	}
	done, err := r.q.Complete(ctx, j.ID, "gpu-a/0", res)
	if err != nil {
		r.t.Fatal(err)
	}
	return done
}

// browser is a signed-in admin browser: the session cookie and its CSRF token.
type browser struct {
	r      *roomEnv
	client *http.Client
	csrf   string
}

func (r *roomEnv) login(name string) *browser {
	r.t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &browser{r: r, client: &http.Client{Jar: jar}}
	var out struct{ CSRF, Name string }
	if st := b.call("POST", "/admin/login", fmt.Sprintf(`{"secret":%q,"name":%q}`, token, name), false, &out); st != 200 || out.CSRF == "" || out.Name != name {
		r.t.Fatalf("login: %d %+v", st, out)
	}
	b.csrf = out.CSRF
	return b
}

func (b *browser) call(method, path, body string, withCSRF bool, out any) int {
	b.r.t.Helper()
	req, _ := http.NewRequest(method, b.r.base+path, strings.NewReader(body))
	if withCSRF {
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.r.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

type cancelAnswer struct {
	DryRun bool           `json:"dry_run"`
	Count  int            `json:"count"`
	Counts map[string]int `json:"counts"`
	Jobs   []sched.Picked `json:"jobs"`
}

// "Cancel everything of seat 7" and "clear pending": what they would do,
// what they did, refused without CSRF or with a vague or bad selector, and
// logged in words under the instructor's name.
func TestCancelMany(t *testing.T) {
	r := startRoom(t, "", 3)
	var jobs []workshop.Job
	for _, u := range []string{"user002", "user001", "user002", "user003", "user002"} {
		jobs = append(jobs, r.submit(u))
	}
	if _, err := r.q.Lease(context.Background(), "gpu-a/0", time.Minute); err != nil { // #1 (seat 2) runs
		t.Fatal(err)
	}
	for _, body := range []string{``, `nope`, `{}`, `{"status":"completed"}`, `{"status":"done","seat":2}`,
		`{"seat":2,"user_id":"user003"}`, `{"seat":-1}`, `{"user_id":"../x","status":"pending"}`, `{"seat":"two"}`} {
		r.expectError("POST", "/api/queue/cancel", body, 400)
	}
	b := r.login("Ann")
	if st := b.call("POST", "/api/queue/cancel", `{"seat":2}`, false, nil); st != 403 {
		t.Errorf("without the CSRF token: %d", st)
	}
	var dry cancelAnswer
	if st := b.call("POST", "/api/queue/cancel", `{"seat":2,"dry_run":true}`, true, &dry); st != 200 || !dry.DryRun || dry.Count != 3 ||
		dry.Counts["running"] != 1 || dry.Counts["pending"] != 2 || dry.Jobs[0].Number != jobs[0].Seq || dry.Jobs[0].Status != "running" {
		t.Fatalf("dry run: %d %+v", st, dry)
	}
	if c := r.q.Status().Counts; c[workshop.StatusPending] != 4 || c[workshop.StatusRunning] != 1 {
		t.Fatalf("the dry run changed the queue: %v", c)
	}
	entries, _ := r.storedLog()
	for _, e := range entries {
		if e.Kind == "admin" && e.Actor == "Ann" && e.Action != "signed in" {
			t.Errorf("the dry run was logged: %+v", e)
		}
	}

	var got cancelAnswer
	if st := b.call("POST", "/api/queue/cancel", `{"seat":2}`, true, &got); st != 200 || got.DryRun || got.Count != 3 || fmt.Sprint(got.Jobs) != fmt.Sprint(dry.Jobs) {
		t.Fatalf("cancel seat 2: %d %+v", st, got)
	}
	for _, j := range []workshop.Job{jobs[0], jobs[2], jobs[4]} {
		var now workshop.Job
		r.call("GET", "/api/jobs/"+j.ID, "", &now)
		if now.Status != "cancelled" || now.Error == nil || now.Error.Message != "cancelled by the instructor" {
			t.Errorf("job #%d: %+v", j.Seq, now)
		}
	}
	e := r.activity("the bulk cancel", func(e activity.Entry) bool { return e.Kind == "admin" && strings.HasPrefix(e.Action, "cancelled") })
	if e.Actor != "Ann" || e.Action != "cancelled 3 jobs of seat 2" || e.UserID != "user002" {
		t.Errorf("activity %+v", e)
	}

	// Clear pending leaves the running job alone.
	r.submit("user001")
	r.q.Lease(context.Background(), "gpu-a/0", time.Minute)
	if st := r.call("POST", "/api/queue/cancel", `{"status":"pending"}`, &got); st != 200 || got.Count != 2 || got.Counts["running"] != 0 {
		t.Fatalf("clear pending: %d %+v", st, got)
	}
	if c := r.q.Status().Counts; c[workshop.StatusPending] != 0 || c[workshop.StatusRunning] != 1 {
		t.Errorf("after clearing pending: %v", c)
	}
	if st := r.call("POST", "/api/queue/cancel", `{"status":"pending"}`, &got); st != 200 || got.Count != 0 || got.Jobs == nil {
		t.Errorf("nothing left to clear: %d %+v", st, got)
	}
	e = r.activity("clear pending", func(e activity.Entry) bool { return e.Kind == "admin" && strings.Contains(e.Action, "every pending") })
	if e.Actor != "admin token" || e.Action != "cancelled every pending job (2)" {
		t.Errorf("activity %+v", e)
	}
	if st := r.call("POST", "/api/queue/cancel", `{"status":"active"}`, &got); st != 200 || got.Count != 1 || got.Counts["running"] != 1 {
		t.Errorf("cancel everything: %d %+v", st, got)
	}

	// With ids, only what the confirmation showed: not a job that came since.
	r.submit("user003")
	r.submit("user003")
	r.call("POST", "/api/queue/cancel", `{"seat":3,"dry_run":true}`, &dry)
	late := r.submit("user003")
	ids, _ := json.Marshal([]string{dry.Jobs[0].ID, dry.Jobs[1].ID})
	if st := r.call("POST", "/api/queue/cancel", `{"seat":3,"ids":`+string(ids)+`}`, &got); st != 200 || got.Count != 2 {
		t.Errorf("cancel the confirmed ones: %d %+v", st, got)
	}
	var still workshop.Job
	if r.call("GET", "/api/jobs/"+late.ID, "", &still); still.Status != "pending" {
		t.Errorf("the job submitted after the confirmation was cancelled: %+v", still)
	}
}

type detail struct {
	Job  workshop.Job `json:"job"`
	Seat *struct {
		Seat int    `json:"seat"`
		Name string `json:"name"`
	} `json:"seat"`
	Outputs []struct {
		Name, URL string
	} `json:"outputs"`
	Wait    *float64         `json:"wait_seconds"`
	Run     *float64         `json:"run_seconds"`
	History []activity.Entry `json:"history"`
}

// One job in full, and a job found by its number; the log says what
// happened to it in words, with its number and instance.
func TestJobDetailAndNumber(t *testing.T) {
	r := startRoom(t, "", 2)
	r.call("PATCH", "/api/seats/2", `{"name":"Alice"}`, nil)
	first := r.submit("user002")
	other := r.submit("user001")
	r.complete("ComfyUI_00001_.png", "ComfyUI_00002_.png")
	r.activity("the completion", func(e activity.Entry) bool { return e.JobID == first.ID && e.Action == "completed" })

	var d detail
	if st := r.call("GET", "/api/jobs/"+first.ID+"/detail", "", &d); st != 200 {
		t.Fatalf("detail: %d", st)
	}
	if d.Job.ID != first.ID || string(d.Job.Workflow) == "" || d.Job.Status != "completed" || d.Job.Worker != "gpu-a/0" || d.Job.Attempts != 1 {
		t.Errorf("job %+v", d.Job)
	}
	if d.Seat == nil || d.Seat.Seat != 2 || d.Seat.Name != "Alice" {
		t.Errorf("seat %+v", d.Seat)
	}
	if len(d.Outputs) != 2 || d.Outputs[0].URL != "/api/jobs/"+first.ID+"/outputs/ComfyUI_00001_.png" {
		t.Errorf("outputs %+v", d.Outputs)
	}
	if d.Wait == nil || d.Run == nil || *d.Wait < 0 || *d.Run < 0 {
		t.Errorf("wait %v run %v", d.Wait, d.Run)
	}
	var story []string
	for _, e := range d.History {
		story = append(story, fmt.Sprintf("%s %s #%d %s %s", e.Actor, e.Action, e.JobNumber, e.Worker, e.Detail))
	}
	if want := fmt.Sprintf("[user002 submitted #%d   system completed #%d gpu-a/0 2 outputs]", first.Seq, first.Seq); fmt.Sprint(story) != want {
		t.Errorf("history %s\nwant    %s", story, want)
	}

	// Cancelled by the instructor: the admin entry names the job in words.
	r.call("DELETE", "/api/jobs/"+other.ID, "", nil)
	var e activity.Entry
	for seen := 0; seen < 2; seen++ { // the admin's entry and the queue's
		got := r.activity("the cancel", func(e activity.Entry) bool { return e.JobID == other.ID && e.Action != "submitted" })
		if got.Kind == "admin" {
			e = got
		}
	}
	if e.Action != fmt.Sprintf("cancelled job #%d of seat 1", other.Seq) || e.JobNumber != other.Seq {
		t.Errorf("cancel entry %+v", e)
	}
	var d2 detail
	r.call("GET", "/api/jobs/"+other.ID+"/detail", "", &d2)
	if d2.Run != nil || d2.Job.Error == nil || len(d2.Outputs) != 0 || d2.Outputs == nil || len(d2.History) != 3 || d2.History[0].Action != "submitted" {
		t.Errorf("cancelled job detail %+v", d2)
	}
	r.expectError("GET", "/api/jobs/01a00000-0000-7000-8000-000000000000/detail", "", 404)

	var list struct{ Jobs []workshop.Job }
	for _, q := range []string{fmt.Sprint(other.Seq), "%23" + fmt.Sprint(other.Seq)} {
		if st := r.call("GET", "/api/jobs?number="+q, "", &list); st != 200 || len(list.Jobs) != 1 || list.Jobs[0].ID != other.ID || list.Jobs[0].Workflow != nil {
			t.Errorf("number %s: %d %+v", q, st, list)
		}
	}
	if st := r.call("GET", "/api/jobs?number=999", "", &list); st != 200 || len(list.Jobs) != 0 || list.Jobs == nil {
		t.Errorf("unknown number: %d %+v", st, list)
	}
	for _, q := range []string{"x", "0", "-3", "1.5"} {
		r.expectError("GET", "/api/jobs?number="+q, "", 400)
	}
}

type seatPage struct {
	Seats []struct {
		Seat     int    `json:"seat"`
		Name     string `json:"name"`
		Code     string `json:"code"`
		Disabled bool   `json:"disabled"`
		Online   *bool  `json:"online"`
		Pending  *int   `json:"pending"`
		Done     *int   `json:"done"`
	} `json:"seats"`
	Warning string         `json:"join_warning"`
	Total   int            `json:"total"`
	Offset  int            `json:"offset"`
	Limit   int            `json:"limit"`
	Summary map[string]int `json:"summary"`
}

func (p seatPage) numbers() string {
	var out []string
	for _, s := range p.Seats {
		out = append(out, fmt.Sprint(s.Seat))
	}
	return strings.Join(out, ",")
}

// 2,000 seats: pages, search by number, name and code, filters by state,
// and the live counts for the page shown.
func TestSeatsPagedAndSearched(t *testing.T) {
	r := startRoom(t, "", 2000)
	r.call("PATCH", "/api/seats/7", `{"name":"Alice Liddell"}`, nil)
	r.call("PATCH", "/api/seats/1207", `{"name":"alice b."}`, nil)
	r.call("PATCH", "/api/seats/9", `{"disabled":true}`, nil)
	r.submit("user007")
	r.complete("a.png")
	r.submit("user007")
	r.submit("user1207")

	var p seatPage
	if st := r.call("GET", "/api/seats?limit=50&offset=100", "", &p); st != 200 || p.Total != 2000 || len(p.Seats) != 50 || p.Seats[0].Seat != 101 || p.Offset != 100 || p.Limit != 50 {
		t.Fatalf("page 3: %d total %d, %d seats from %v", st, p.Total, len(p.Seats), p.numbers())
	}
	if !strings.Contains(p.Warning, "127.0.0.1") {
		t.Errorf("a page without the loopback warning: %q", p.Warning)
	}
	if p.Summary["seats"] != 2000 || p.Summary["disabled"] != 1 || p.Summary["busy"] != 2 || p.Summary["online"] != 0 {
		t.Errorf("summary %v", p.Summary)
	}
	if p.Seats[0].Done == nil || p.Seats[0].Online == nil {
		t.Errorf("live state missing: %+v", p.Seats[0])
	}
	var last seatPage
	r.call("GET", "/api/seats?limit=50&offset=1990", "", &last)
	if len(last.Seats) != 10 || last.Seats[9].Seat != 2000 {
		t.Errorf("last page: %s", last.numbers())
	}
	var past seatPage
	if st := r.call("GET", "/api/seats?offset=5000", "", &past); st != 200 || len(past.Seats) != 0 || past.Seats == nil {
		t.Errorf("past the end: %d %+v", st, past)
	}

	for q, want := range map[string]string{
		"alice": "7,1207", "ALICE L": "7", "7": "7", "%237": "7", "nobody": "",
	} {
		var s seatPage
		if st := r.call("GET", "/api/seats?q="+strings.ReplaceAll(q, " ", "+"), "", &s); st != 200 || s.numbers() != want || s.Total != len(s.Seats) {
			t.Errorf("q=%s: %d %s, want %s", q, st, s.numbers(), want)
		}
	}
	seven, _ := r.seats.Get(7)
	var byCode seatPage
	r.call("GET", "/api/seats?q="+strings.ToUpper(seven.Code), "", &byCode)
	if byCode.numbers() != "7" {
		t.Errorf("by code: %s", byCode.numbers())
	}
	if len(byCode.Seats) == 1 && (*byCode.Seats[0].Done != 1 || *byCode.Seats[0].Pending != 1) {
		t.Errorf("seat 7 counts: %+v", byCode.Seats[0])
	}
	for state, want := range map[string]string{"busy": "7,1207", "disabled": "9"} {
		var s seatPage
		r.call("GET", "/api/seats?state="+state, "", &s)
		if s.numbers() != want {
			t.Errorf("state=%s: %s", state, s.numbers())
		}
	}
	var off seatPage
	r.call("GET", "/api/seats?state=offline&limit=3", "", &off)
	if off.Total != 1999 || off.numbers() != "1,2,3" {
		t.Errorf("offline: %d %s", off.Total, off.numbers())
	}
	for _, q := range []string{"offset=-1", "limit=0", "limit=501", "state=sleepy", "limit=x"} {
		r.expectError("GET", "/api/seats?"+q, "", 400)
	}

	// Without paging: everything, as before (the CLI); live=0: no live state.
	var all, names seatPage
	r.call("GET", "/api/seats", "", &all)
	r.call("GET", "/api/seats?live=0", "", &names)
	if len(all.Seats) != 2000 || all.Total != 0 || all.Seats[6].Done == nil || *all.Seats[6].Done != 1 {
		t.Errorf("all: %d seats, total %d", len(all.Seats), all.Total)
	}
	if len(names.Seats) != 2000 || names.Warning == "" || names.Seats[6].Name != "Alice Liddell" || names.Seats[6].Done != nil || names.Seats[6].Online != nil {
		t.Errorf("names: %d seats, %+v", len(names.Seats), names.Seats[6])
	}
}

// The QR sheet's text is stored once; bad values are refused whole.
func TestSheetSettings(t *testing.T) {
	r := startRoom(t, "", 1)
	var sh map[string]string
	if st := r.call("GET", "/api/sheet", "", &sh); st != 200 || sh["title"] != "" || len(sh) != 4 {
		t.Fatalf("empty sheet: %d %v", st, sh)
	}
	r.expectError("GET", "/api/sheet/wifi.png", "", 404)
	good := `{"title":"ComfyUI day, room 3","wifi_name":"Guest;Net","wifi_password":" p:ss ","instructions":"Scan your code.\nAsk for help any time."}`
	if st := r.call("PUT", "/api/sheet", good, &sh); st != 200 || sh["wifi_password"] != " p:ss " || sh["title"] != "ComfyUI day, room 3" {
		t.Fatalf("put: %d %v", st, sh)
	}
	for _, bad := range []string{
		`nope`, `{"title":"` + strings.Repeat("x", 81) + `"}`, `{"title":"a\u0007b"}`, `{"wifi_name":"a\u202eb"}`,
		`{"instructions":"` + strings.Repeat("y", 401) + `"}`, `{"wifi_password":"secret"}`, `{"colour":"red"}`, `{"title":5}`,
	} {
		r.expectError("PUT", "/api/sheet", bad, 400)
	}
	var again map[string]string
	r.call("GET", "/api/sheet", "", &again)
	if fmt.Sprint(again) != fmt.Sprint(sh) {
		t.Errorf("a refused change changed the sheet: %v", again)
	}
	resp, err := http.DefaultClient.Do(r.authed("GET", "/api/sheet/wifi.png"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || len(body) < 100 {
		t.Errorf("wifi.png: %d %s %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}

// The gallery's orders, a seat's outputs alone, and pages that add up to
// the whole list in every order.
func TestOutputsOrders(t *testing.T) {
	r := startRoom(t, "", 3)
	var order []string // job ids, oldest first
	for i, u := range []string{"user002", "user001", "user003", "user002", "user001"} {
		r.submit(u)
		j := r.complete(fmt.Sprintf("out%d.png", i))
		order = append(order, j.UserID+"/"+fmt.Sprintf("out%d.png", i))
	}
	r.submit("user003") // pending: no outputs
	type page struct {
		Outputs []struct {
			UserID string `json:"user_id"`
			Name   string `json:"name"`
		} `json:"outputs"`
		Next string `json:"next"`
	}
	list := func(q string, limit int) string {
		t.Helper()
		var got []string
		cursor := ""
		for i := 0; i < 20; i++ {
			var p page
			path := fmt.Sprintf("/api/outputs?%s&limit=%d", q, limit)
			if cursor != "" {
				path += "&before=" + cursor
			}
			if st := r.call("GET", path, "", &p); st != 200 {
				t.Fatalf("%s: %d", path, st)
			}
			for _, o := range p.Outputs {
				got = append(got, o.UserID+"/"+o.Name)
			}
			if p.Next == "" {
				return strings.Join(got, " ")
			}
			cursor = p.Next
		}
		t.Fatalf("%s: pages never end", q)
		return ""
	}
	rev := func(s []string) string {
		var out []string
		for i := len(s) - 1; i >= 0; i-- {
			out = append(out, s[i])
		}
		return strings.Join(out, " ")
	}
	want := map[string]string{
		"order=newest":                 rev(order),
		"":                             rev(order),
		"order=oldest":                 strings.Join(order, " "),
		"order=seat":                   "user001/out4.png user001/out1.png user002/out3.png user002/out0.png user003/out2.png",
		"order=oldest&user_id=user002": "user002/out0.png user002/out3.png",
		"order=newest&user_id=user001": "user001/out4.png user001/out1.png",
		"order=seat&user_id=user003":   "user003/out2.png",
	}
	for q, w := range want {
		for _, limit := range []int{1, 2, 60} {
			if got := list(q, limit); got != w {
				t.Errorf("%s, limit %d:\n got %s\nwant %s", q, limit, got, w)
			}
		}
	}
	for _, q := range []string{"order=random", "user_id=../x", "order=oldest&before=zzz", "order=seat&before=x:y"} {
		r.expectError("GET", "/api/outputs?"+q, "", 400)
	}
}

// Admin actions are logged in words under who did them.
func TestAdminActivityInWords(t *testing.T) {
	r := startRoom(t, "", 3)
	b := r.login("Ann")
	j := r.submit("user003")
	steps := []struct{ method, path, body, want string }{
		{"POST", "/api/queue/pause", "", "paused the queue"},
		{"PUT", "/api/queue/mode", `{"mode":"round-robin"}`, "switched the queue to round-robin"},
		{"PATCH", "/api/jobs/" + j.ID + "/priority", `{"priority":1}`, fmt.Sprintf("gave job #%d of seat 3 priority 1", j.Seq)},
		{"POST", "/api/jobs/" + j.ID + "/move", `{"to":"top"}`, fmt.Sprintf("moved job #%d of seat 3 to the top of the queue", j.Seq)},
		{"PATCH", "/api/seats/2", `{"name":"Grace","max_pending":4}`, "renamed seat 2 to Grace; let seat 2 hold 4 pending jobs at a time"},
		{"PATCH", "/api/seats/2", `{"disabled":true,"max_pending":-1}`, "disabled seat 2; put seat 2 back on the default limit of pending jobs"},
		{"PATCH", "/api/seats/1", `{"max_pending":1,"rotate_code":true}`, "let seat 1 hold 1 pending job at a time; gave seat 1 a new join code"},
		{"POST", "/api/seats", `{"name":"Guest"}`, "added seat 4 (Guest)"},
		{"POST", "/api/seats/3/signout", "", "signed seat 3 out"},
		{"DELETE", "/api/seats/4", "", "removed seat 4"},
		{"PUT", "/api/sheet", `{"title":"Day one"}`, "updated the QR sheet"},
	}
	for _, s := range steps {
		if st := b.call(s.method, s.path, s.body, true, nil); st >= 300 {
			t.Fatalf("%s %s: %d", s.method, s.path, st)
		}
		e := r.activity(s.want, func(e activity.Entry) bool { return e.Kind == "admin" && e.Action != "signed in" })
		if e.Actor != "Ann" || e.Action != s.want {
			t.Errorf("%s %s: logged %q by %q, want %q", s.method, s.path, e.Action, e.Actor, s.want)
		}
	}
	for _, bad := range []string{`{"secret":"` + token + `","name":"` + strings.Repeat("n", 41) + `"}`, `{"secret":"` + token + `","name":"a\u0000b"}`} {
		r.expectError("POST", "/admin/login", bad, 400)
	}
}
