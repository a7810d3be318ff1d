package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// participant is a browser-like client signed in to one seat.
type participant struct {
	t      testing.TB
	base   string // the server
	seat   int
	client *http.Client
}

func (s *stack) seatCode(n int) string { return seatCodeOf(s.a, n) }

func (s *stack) join(n int) *participant {
	t := s.a.t
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(s.base + "/join/" + s.seatCode(n))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != fmt.Sprintf("/user/%d/", n) {
		t.Fatalf("join landed on %s", resp.Request.URL)
	}
	return &participant{t: t, base: s.base, seat: n, client: c}
}

func anonymous(t testing.TB, base string) *participant {
	return &participant{t: t, base: base, client: &http.Client{}}
}

func (p *participant) cookie() string {
	u, _ := url.Parse(p.base)
	for _, c := range p.client.Jar.Cookies(u) {
		if c.Name == "workshop_session" {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

// do requests path (absolute, e.g. /user/1/api/queue) and returns status
// and body.
func (p *participant) do(method, path string, body io.Reader, contentType string) (int, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.base+path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (p *participant) prompt(graph map[string]any) string {
	p.t.Helper()
	return p.promptWith(graph, nil)
}

// promptWith queues a graph with extra_data (nil: none) through the
// participant's ComfyUI and returns its id.
func (p *participant) promptWith(graph, extra map[string]any) string {
	p.t.Helper()
	req := map[string]any{"prompt": graph, "client_id": "test"}
	if extra != nil {
		req["extra_data"] = extra
	}
	b, _ := json.Marshal(req)
	st, body := p.do("POST", fmt.Sprintf("/user/%d/api/prompt", p.seat), bytes.NewReader(b), "")
	var r struct {
		PromptID string `json:"prompt_id"`
	}
	json.Unmarshal(body, &r)
	if st != 200 || r.PromptID == "" {
		p.t.Fatalf("prompt: %d %s", st, body)
	}
	return r.PromptID
}

func pngBytes(c color.Color) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < 64; i++ {
		img.Set(i%8, i/8, c)
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func (p *participant) upload(name string, data []byte) (int, map[string]any) {
	p.t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	f, _ := w.CreateFormFile("image", name)
	f.Write(data)
	w.WriteField("type", "input")
	w.Close()
	st, body := p.do("POST", fmt.Sprintf("/user/%d/api/upload/image", p.seat), &b, w.FormDataContentType())
	var out map[string]any
	json.Unmarshal(body, &out)
	return st, out
}

// A ComfyUI API client this project did not write, pointed at a
// participant's /user/1/ with their cookie, runs graphs end to end through
// server, tunnel and simulator.
func TestParticipantThirdPartyClient(t *testing.T) {
	node, err := exec.LookPath("node")
	dir := filepath.Join("..", "comfy", "sim", "npmclient")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "@stable-canvas")); err != nil || serr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node or the npm packages are missing (.ci/run installs them)")
		}
		t.Skip("needs node and `npm ci` in comfy/sim/npmclient")
	}
	s := startStack(t)
	p := s.join(1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", s.base+"/user/1/", p.cookie())
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var seen struct {
		Messages map[string]int `json:"messages"`
		Progress [][2]float64   `json:"progress"`
		Images   []struct {
			Status int  `json:"status"`
			PNG    bool `json:"png"`
		} `json:"images"`
		Images2     int      `json:"images2"`
		ErrorStatus int      `json:"errorStatus"`
		ErrorType   string   `json:"errorType"`
		ErrorNodes  []string `json:"errorNodes"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &seen); err != nil {
		t.Fatalf("bad output %q: %v", stdout.String(), err)
	}
	if len(seen.Images) != 1 || seen.Images[0].Status != 200 || !seen.Images[0].PNG {
		t.Errorf("output fetched through the server: %+v", seen.Images)
	}
	if len(seen.Progress) == 0 || seen.Images2 != 1 {
		t.Errorf("progress %v, images %d", seen.Progress, seen.Images2)
	}
	for _, typ := range []string{"status", "execution_start", "executing", "executed", "progress"} {
		if seen.Messages[typ] == 0 {
			t.Errorf("client saw no %s message: %v", typ, seen.Messages)
		}
	}
	if seen.ErrorStatus != 400 || seen.ErrorType != "prompt_outputs_failed_validation" {
		t.Errorf("broken graph: %d %s %v", seen.ErrorStatus, seen.ErrorType, seen.ErrorNodes)
	}
}

// Nothing crosses between participants, on any route, by any path trick.
func TestParticipantIsolation(t *testing.T) {
	s := startStack(t)
	p1, p2, anon := s.join(1), s.join(2), anonymous(t, s.base)

	// Seat 1's things: a finished job with an output, an upload, a saved
	// workflow, settings.
	job1 := p1.prompt(imageGraph("mine", 7))
	s.ev.waitDone(30*time.Second, job1)
	st, up := p1.upload("cat.png", pngBytes(color.RGBA{255, 0, 0, 255}))
	if st != 200 || up["name"] != "cat.png" {
		t.Fatalf("upload: %d %v", st, up)
	}
	if st, b := p1.do("POST", "/user/1/api/userdata/workflows%2Fmine.json", strings.NewReader(`{"nodes":[]}`), ""); st != 200 {
		t.Fatalf("save workflow: %d %s", st, b)
	}
	if st, b := p1.do("POST", "/user/1/api/settings/Comfy.Theme", strings.NewReader(`"dark"`), ""); st != 200 {
		t.Fatalf("settings: %d %s", st, b)
	}
	var hist map[string]struct {
		Outputs map[string]map[string][]struct {
			Filename  string `json:"filename"`
			Subfolder string `json:"subfolder"`
			Type      string `json:"type"`
		} `json:"outputs"`
	}
	_, hb := p1.do("GET", "/user/1/api/history", nil, "")
	json.Unmarshal(hb, &hist)
	out := hist[job1].Outputs["2"]["images"]
	if len(out) != 1 {
		t.Fatalf("seat 1 history: %s", hb)
	}
	viewQ := url.Values{"filename": {out[0].Filename}, "subfolder": {out[0].Subfolder}, "type": {"output"}}.Encode()
	if st, b := p1.do("GET", "/user/1/api/view?"+viewQ, nil, ""); st != 200 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("seat 1 sees its own output: %d", st)
	}

	// Seat 1's routes, tried with seat 2's session and with none.
	seat1Routes := [][2]string{
		{"GET", "/user/1/"}, {"GET", "/user/1/api/history"}, {"GET", "/user/1/api/history/" + job1}, {"GET", "/user/1/api/queue"},
		{"GET", "/user/1/api/prompt"}, {"GET", "/user/1/api/view?" + viewQ}, {"GET", "/user/1/api/view?filename=cat.png&type=input"},
		{"GET", "/user/1/api/userdata?dir=workflows"}, {"GET", "/user/1/api/userdata/workflows%2Fmine.json"},
		{"GET", "/user/1/api/settings"}, {"GET", "/user/1/api/workshop/me"}, {"GET", "/user/1/api/workshop/outputs"},
		{"GET", "/user/1/api/jobs"}, {"GET", "/user/1/api/object_info"}, {"POST", "/user/1/api/prompt"}, {"POST", "/user/1/api/queue"},
		{"POST", "/user/1/api/interrupt"}, {"POST", "/user/1/api/upload/image"}, {"POST", "/user/1/api/userdata/workflows%2Fmine.json"},
		{"DELETE", "/user/1/api/userdata/workflows%2Fmine.json"}, {"POST", "/user/1/api/userdata/workflows%2Fmine.json/move/workflows%2Fx.json"},
		{"POST", "/user/1/api/settings"}, {"GET", "/user/1/ws"},
	}
	for _, who := range []*participant{p2, anon} {
		for _, r := range seat1Routes {
			body := io.Reader(nil)
			if r[0] != "GET" {
				body = strings.NewReader(`{"prompt":{"1":{"class_type":"EmptyImage","inputs":{}}},"delete":["` + job1 + `"],"clear":true}`)
			}
			if st, b := who.do(r[0], r[1], body, ""); st != 401 && st != 403 && st != 404 {
				t.Errorf("%s %s by seat %d: %d %.80s", r[0], r[1], who.seat, st, b)
			}
		}
	}
	// Admin API: refused to participants.
	for _, r := range []string{"/api/jobs", "/api/seats", "/api/jobs/" + job1} {
		if st, _ := p2.do("GET", r, nil, ""); st != 401 {
			t.Errorf("participant on %s: %d", r, st)
		}
	}

	// Seat 2 in its own space, aiming at seat 1's things.
	tricks := []string{
		"/user/2/api/view?" + viewQ,
		"/user/2/api/view?filename=cat.png&type=input",
		"/user/2/api/view?filename=..%2Fuser001%2F_%2Fcat.png&type=input",
		"/user/2/api/view?filename=cat.png&subfolder=..%2F..%2Finputs%2Fuser001%2F_&type=input",
		"/user/2/api/view?filename=cat.png&subfolder=%2Fetc&type=input",
		"/user/2/api/view?filename=%2Fetc%2Fpasswd&type=input",
		"/user/2/api/view?filename=cat.png&subfolder=" + job1 + "&type=temp",
		"/user/2/api/userdata/..%2F..%2Fuser001%2Fworkflows%2Fmine.json",
		"/user/2/api/userdata/workflows%2F..%2F..%2Fuser001%2Fworkflows%2Fmine.json",
		"/user/2/api/userdata?dir=..%2Fuser001%2Fworkflows",
		"/user/2/api/jobs/" + job1,
	}
	for _, path := range tricks {
		if st, b := p2.do("GET", path, nil, ""); st != 400 && st != 403 && st != 404 {
			t.Errorf("GET %s: %d %.120s", path, st, b)
		}
	}
	if _, b := p2.do("GET", "/user/2/api/history/"+job1, nil, ""); string(bytes.TrimSpace(b)) != "{}" {
		t.Errorf("seat 2 reads seat 1's history entry: %s", b)
	}
	if _, b := p2.do("GET", "/user/2/api/history", nil, ""); bytes.Contains(b, []byte(job1)) {
		t.Errorf("seat 2's history lists seat 1's job")
	}
	if _, b := p2.do("GET", "/user/2/api/userdata?dir=workflows&recurse=true", nil, ""); bytes.Contains(b, []byte("mine.json")) {
		t.Errorf("seat 2 lists seat 1's workflow: %s", b)
	}
	if _, b := p2.do("GET", "/user/2/api/settings", nil, ""); bytes.Contains(b, []byte("Comfy.Theme")) {
		t.Errorf("seat 2 sees seat 1's settings: %s", b)
	}
	// LoadImage lists each participant's own uploads only.
	_, oi1 := p1.do("GET", "/user/1/api/object_info/LoadImage", nil, "")
	_, oi2 := p2.do("GET", "/user/2/api/object_info/LoadImage", nil, "")
	if !bytes.Contains(oi1, []byte("cat.png")) || bytes.Contains(oi2, []byte("cat.png")) {
		t.Errorf("LoadImage lists: seat 1 %.200s, seat 2 %.200s", oi1, oi2)
	}
	// A symlink planted in seat 2's input folder, pointing at seat 1's file.
	link := filepath.Join(s.data, "inputs", "user002", "_")
	os.MkdirAll(link, 0o750)
	if err := os.Symlink(filepath.Join(s.data, "inputs", "user001", "_", "cat.png"), filepath.Join(link, "link.png")); err != nil {
		t.Fatal(err)
	}
	if st, _ := p2.do("GET", "/user/2/api/view?filename=link.png&type=input", nil, ""); st != 404 {
		t.Errorf("symlink followed: %d", st)
	}
	// Uploads with path tricks land in seat 2's own folder or are refused.
	for _, name := range []string{"../../user001/_/cat.png", "/etc/cron.d/x.png", "..\\..\\cat.png"} {
		st, r := p2.upload(name, pngBytes(color.Black))
		if st == 200 && strings.ContainsAny(fmt.Sprint(r["name"]), "/\\") {
			t.Errorf("upload %q stored as %v", name, r)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(s.data, "inputs", "user001", "_", "cat.png")); !bytes.Equal(b, pngBytes(color.RGBA{255, 0, 0, 255})) {
		t.Error("seat 1's upload changed")
	}
	// Seat 2 deleting or interrupting seat 1's jobs does nothing.
	slow := p1.prompt(samplerGraph("slow", 3))
	p2.do("POST", "/user/2/api/queue", strings.NewReader(`{"delete":["`+slow+`"],"clear":true}`), "")
	p2.do("POST", "/user/2/api/interrupt", strings.NewReader(`{"prompt_id":"`+slow+`"}`), "")
	s.ev.waitDone(60*time.Second, slow)
	if j := s.a.job(slow); j.Status != "completed" {
		t.Errorf("seat 1's job after seat 2's attempts: %+v", j)
	}
}

// Each participant's socket carries their own jobs' events only.
func TestParticipantSockets(t *testing.T) {
	s := startStack(t)
	p1, p2 := s.join(1), s.join(2)
	dial := func(p *participant) *websocket.Conn {
		u := "ws" + strings.TrimPrefix(s.base, "http") + fmt.Sprintf("/user/%d/ws?clientId=c%d", p.seat, p.seat)
		h := http.Header{"Cookie": {p.cookie()}}
		c, _, err := websocket.DefaultDialer.Dial(u, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ws1, ws2 := dial(p1), dial(p2)
	first := func(c *websocket.Conn) map[string]any {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := first(ws1); m["type"] != "status" || m["data"].(map[string]any)["sid"] != "c1" {
		t.Fatalf("first message %v", m)
	}
	first(ws2)

	job1 := p1.prompt(samplerGraph("one", 1))
	// Seat 1's socket sees its job run, previews included.
	var types []string
	binaryFrames := 0
	for done := false; !done; {
		ws1.SetReadDeadline(time.Now().Add(30 * time.Second))
		kind, msg, err := ws1.ReadMessage()
		if err != nil {
			t.Fatalf("seat 1 socket: %v (saw %v)", err, types)
		}
		if kind == websocket.BinaryMessage {
			binaryFrames++
			continue
		}
		var m struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		json.Unmarshal(msg, &m)
		types = append(types, m.Type)
		if m.Type == "execution_success" && m.Data["prompt_id"] == job1 {
			done = true
		}
	}
	for _, want := range []string{"execution_start", "executing", "progress", "executed"} {
		if !strings.Contains(strings.Join(types, " "), want) {
			t.Errorf("seat 1 saw %v, no %s", types, want)
		}
	}
	if binaryFrames == 0 {
		t.Error("no preview frames")
	}
	// Then seat 2 runs its own; everything seat 2 saw before its own
	// success must be its own.
	job2 := p2.prompt(imageGraph("two", 2))
	for {
		ws2.SetReadDeadline(time.Now().Add(30 * time.Second))
		kind, msg, err := ws2.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if kind == websocket.BinaryMessage {
			continue
		}
		if bytes.Contains(msg, []byte(job1)) {
			t.Fatalf("seat 2 got seat 1's event: %s", msg)
		}
		if bytes.Contains(msg, []byte(`"execution_success"`)) && bytes.Contains(msg, []byte(job2)) {
			break
		}
	}
}

// After a server restart, before any GPU host is back, a participant's
// ComfyUI still loads: the server kept a copy of the host's frontend and
// object_info on disk.
func TestParticipantUIAfterRestartWithoutGPUs(t *testing.T) {
	s := startStack(t)
	p1 := s.join(1)
	st, page := p1.do("GET", "/user/1/", nil, "")
	if st != 200 {
		t.Fatalf("page: %d", st)
	}
	if st, _ := p1.do("GET", "/user/1/api/object_info", nil, ""); st != 200 {
		t.Fatalf("object_info: %d", st)
	}
	s.agent.kill9()
	s.kill9()

	srv2 := startGPUServer(t, s.data, "--seats", "3", "--listen", strings.TrimPrefix(s.base, "http://"))
	if st := (admin{t, srv2.base}).worker("gpu-a/0").State; st != "absent" {
		t.Fatalf("gpu-a/0 is %s, want absent", st)
	}
	req, _ := http.NewRequest("GET", srv2.base+"/user/1/", nil)
	resp, err := p1.client.Do(req) // the same session: it is in the store
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, page) || resp.Header.Get("X-Workshop-Cache") != "stale" {
		t.Fatalf("page after restart: %d, cache %q, same body %v", resp.StatusCode, resp.Header.Get("X-Workshop-Cache"), bytes.Equal(body, page))
	}
	var info map[string]any
	st, raw := p1.do("GET", "/user/1/api/object_info", nil, "")
	if err := json.Unmarshal(raw, &info); st != 200 || err != nil || info["KSampler"] == nil {
		t.Fatalf("object_info after restart: %d %v %.200s", st, err, raw)
	}
}

// The mask editor's /upload/mask stores the participant's own original
// with the painted mask as its alpha, as ComfyUI does; an original that is
// not theirs, or a mask of another size, is refused and stores nothing.
func TestParticipantMaskUpload(t *testing.T) {
	s := startStack(t)
	p1, p2 := s.join(1), s.join(2)
	if st, r := p1.upload("photo.png", pngBytes(color.NRGBA{0, 0, 255, 255})); st != 200 || r["name"] != "photo.png" {
		t.Fatalf("upload: %d %v", st, r)
	}
	mask := func(p *participant, name, ref string, data []byte) (int, string) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		f, _ := w.CreateFormFile("image", name)
		f.Write(data)
		w.WriteField("type", "input")
		w.WriteField("subfolder", "clipspace")
		w.WriteField("original_ref", ref)
		w.Close()
		st, body := p.do("POST", fmt.Sprintf("/user/%d/api/upload/mask", p.seat), &b, w.FormDataContentType())
		return st, string(body)
	}
	painted := pngBytes(color.NRGBA{0, 0, 0, 90})
	if st, body := mask(p1, "clipspace-mask-1.png", `{"filename":"photo.png","subfolder":"","type":"input"}`, painted); st != 200 || !strings.Contains(body, `"clipspace-mask-1.png"`) {
		t.Fatalf("mask upload: %d %s", st, body)
	}
	st, body := p1.do("GET", "/user/1/api/view?filename=clipspace-mask-1.png&subfolder=clipspace&type=input", nil, "")
	if st != 200 {
		t.Fatalf("view the composite: %d", st)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c := color.NRGBAModel.Convert(img.At(2, 2)).(color.NRGBA); c != (color.NRGBA{0, 0, 255, 90}) {
		t.Errorf("composite pixel %v, want the original's blue with the mask's alpha 90", c)
	}

	for name, c := range map[string]struct {
		p    *participant
		ref  string
		data []byte
		want int
	}{
		"someone else's original": {p2, `{"filename":"photo.png","type":"input"}`, painted, 404},
		"another size":            {p1, `{"filename":"photo.png [input]"}`, pngBytes4(), 400},
		"no original_ref":         {p1, ``, painted, 400},
		"a path in the name":      {p1, `{"filename":"../photo.png","type":"input"}`, painted, 403},
	} {
		if st, body := mask(c.p, "m-"+strings.ReplaceAll(name, " ", "-")+".png", c.ref, c.data); st != c.want {
			t.Errorf("%s: %d %s, want %d", name, st, body, c.want)
		}
	}
	// Nothing was stored for the refused ones.
	entries, _ := os.ReadDir(filepath.Join(s.data, "inputs", "user001", "clipspace"))
	if len(entries) != 1 {
		t.Errorf("seat 1's clipspace holds %d files, want 1", len(entries))
	}

	// The editor then points LoadImage at the composite, as
	// "clipspace/name [input]": the job ships it and runs.
	job := p1.prompt(map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "clipspace/clipspace-mask-1.png [input]"}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "masked"}},
	})
	s.ev.waitDone(60*time.Second, job)
	if j := s.a.job(job); j.Status != "completed" {
		t.Fatalf("job on the composite: %+v", j)
	}
}

// pngBytes4 is a 4x4 image: not the size of pngBytes's.
func pngBytes4() []byte {
	var b bytes.Buffer
	png.Encode(&b, image.NewNRGBA(image.Rect(0, 0, 4, 4)))
	return b.Bytes()
}

// A participant's extension learns that their place in the queue moved
// when someone else's job leaves it, and that the queue was paused or
// resumed, with no event of their own.
func TestParticipantPlaceFollowsRoom(t *testing.T) {
	s := startStack(t)
	p1, p2 := s.join(1), s.join(2)
	if st := s.a.do("POST", "/api/queue/pause", nil, nil); st != 200 {
		t.Fatalf("pause: %d", st)
	}
	other := p2.prompt(samplerGraph("ahead", 1))
	p1.prompt(samplerGraph("mine", 2))

	u := "ws" + strings.TrimPrefix(s.base, "http") + "/user/1/ws?clientId=c1"
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {p1.cookie()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	type queue struct {
		Paused   bool `json:"paused"`
		Pending  int  `json:"pending"`
		Position *int `json:"position"`
	}
	// next returns the queue part of the next workshop_status.
	next := func() queue {
		t.Helper()
		for {
			ws.SetReadDeadline(time.Now().Add(15 * time.Second))
			var m struct {
				Type string `json:"type"`
				Data struct {
					Queue *queue `json:"queue"`
				} `json:"data"`
			}
			if err := ws.ReadJSON(&m); err != nil {
				t.Fatalf("socket: %v", err)
			}
			if m.Type == "workshop_status" && m.Data.Queue != nil {
				return *m.Data.Queue
			}
		}
	}
	if q := next(); !q.Paused || q.Pending != 1 || q.Position == nil || *q.Position != 2 {
		t.Fatalf("on connect: %+v", q)
	}
	if st := s.a.do("DELETE", "/api/jobs/"+other, nil, nil); st != 200 {
		t.Fatalf("cancel: %d", st)
	}
	if q := next(); !q.Paused || q.Position == nil || *q.Position != 1 {
		t.Fatalf("after the job ahead left: %+v", q)
	}
	if st := s.a.do("POST", "/api/queue/resume", nil, nil); st != 200 {
		t.Fatalf("resume: %d", st)
	}
	for q := next(); q.Paused; q = next() {
	}
}

// Two participants' "cat.png" are two files on the GPU host: each job ships
// its owner's upload under the owner's own folder.
func TestParticipantInputsShipped(t *testing.T) {
	s := startStack(t)
	p1, p2 := s.join(1), s.join(2)
	red, blue := pngBytes(color.RGBA{255, 0, 0, 255}), pngBytes(color.RGBA{0, 0, 255, 255})
	if st, _ := p1.upload("cat.png", red); st != 200 {
		t.Fatal(st)
	}
	if st, _ := p2.upload("cat.png", blue); st != 200 {
		t.Fatal(st)
	}
	graph := func(prefix string) map[string]any {
		return map[string]any{
			"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "cat.png"}},
			"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": prefix}},
		}
	}
	j1, j2 := p1.prompt(graph("a")), p2.prompt(graph("b"))
	s.ev.waitDone(60*time.Second, j1, j2)
	for _, id := range []string{j1, j2} {
		if j := s.a.job(id); j.Status != "completed" {
			t.Fatalf("job %s: %+v", id, j)
		}
	}
	// A file seat 1 never uploaded is refused with ComfyUI's error.
	b, _ := json.Marshal(map[string]any{"prompt": map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "dog.png"}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "x"}},
	}})
	st, body := p1.do("POST", "/user/1/api/prompt", bytes.NewReader(b), "")
	if st != 400 || !bytes.Contains(body, []byte("prompt_outputs_failed_validation")) {
		t.Errorf("missing input: %d %s", st, body)
	}
}

// --nodes-deny hides a node type and refuses graphs that use it, in
// ComfyUI's error shape; a participant who reconnects mid-job gets the
// job's state at once.
func TestParticipantNodeDenyAndReconnect(t *testing.T) {
	s := startStack(t, "--nodes-deny", "ImageScale")
	p := s.join(1)
	if _, b := p.do("GET", "/user/1/api/object_info", nil, ""); bytes.Contains(b, []byte(`"ImageScale"`)) || !bytes.Contains(b, []byte(`"SaveImage"`)) {
		t.Errorf("object_info with ImageScale denied: %.200s", b)
	}
	graph, _ := json.Marshal(map[string]any{"prompt": map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 64, "height": 64, "batch_size": 1, "color": 0}},
		"2": map[string]any{"class_type": "ImageScale", "inputs": map[string]any{"image": []any{"1", 0}, "upscale_method": "nearest-exact", "width": 32, "height": 32, "crop": "disabled"}},
		"3": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "x"}},
	}})
	st, body := p.do("POST", "/user/1/api/prompt", bytes.NewReader(graph), "")
	var perr struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	json.Unmarshal(body, &perr)
	if st != 400 || perr.Error.Type == "" {
		t.Errorf("denied node: %d %s", st, body)
	}

	// Reconnect mid-job.
	slow := startSim(t, "--step-ms", "100", "--steps", "40")
	startAgent(t, s.base, "gpu-b", slow)
	s.ev.waitWorkers(s.a, 2, 30*time.Second)
	s.a.do("POST", "/api/workers/gpu-a/0/drain", nil, nil)
	job := p.prompt(samplerGraph("long", 9))
	s.ev.waitStage(job, "executing", 30*time.Second)
	s.ev.waitFor("a progress step", 30*time.Second, func(_ map[string]string, all []map[string]any) bool {
		for _, m := range all {
			if pr, ok := m["progress"].(map[string]any); ok && pr["job_id"] == job && pr["value"].(float64) > 0 {
				return true
			}
		}
		return false
	})
	u := "ws" + strings.TrimPrefix(s.base, "http") + "/user/1/ws?clientId=again"
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {p.cookie()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for len(got) < 4 {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, m.Type)
	}
	// status, then the running job's state, before any new event.
	if got[0] != "status" || got[1] != "execution_start" || got[2] != "executing" || got[3] != "progress" {
		t.Errorf("on reconnect: %v", got)
	}
}
