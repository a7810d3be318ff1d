package integration

// The attacks of issue 13 ("close what an attacker in the room can do"),
// each reproduced against a real `workshop serve` process over real
// sockets, and now refused. docs/SECURITY.md lists them with the controls.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/comfy-workshop/workshop/internal/procstat"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// rawHTTP sends request bytes exactly as given (no client normalizing the
// path) and reads the answer.
func rawHTTP(t testing.TB, base, request string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", strings.SplitN(request, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// rawGet is a raw GET of path, with extra header lines.
func rawGet(t testing.TB, base, path string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(base, "http://") + "\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	return rawHTTP(t, base, req+"\r\n")
}

// send is participant.do with headers and the answer's headers.
func (p *participant) send(method, path string, body io.Reader, headers map[string]string) (int, http.Header, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.base+path, body)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// uploadWith is participant.upload with extra headers.
func (p *participant) uploadWith(name string, data []byte, headers map[string]string) (int, []byte) {
	p.t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	f, _ := w.CreateFormFile("image", name)
	f.Write(data)
	w.Close()
	if headers == nil {
		headers = map[string]string{}
	}
	headers["Content-Type"] = w.FormDataContentType()
	st, _, body := p.send("POST", fmt.Sprintf("/user/%d/api/upload/image", p.seat), &b, headers)
	return st, body
}

// dialSocket opens a participant's ComfyUI socket with an Origin.
func (p *participant) dialSocket(origin string) (*websocket.Conn, *http.Response, error) {
	u, _ := url.Parse(p.base)
	h := http.Header{}
	if c := p.cookie(); c != "" {
		h.Set("Cookie", c)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/user/%d/ws?clientId=t", u.Host, p.seat), h)
}

// joinCode signs a new browser in with a code.
func joinCode(t testing.TB, base, code string) (*participant, int) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/join/" + code)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	seat := 0
	if m := regexp.MustCompile(`^/user/(\d+)/$`).FindStringSubmatch(resp.Header.Get("Location")); m != nil {
		seat, _ = strconv.Atoi(m[1])
	}
	return &participant{t: t, base: base, seat: seat, client: c}, resp.StatusCode
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// seatCodeOf is seat n's join code, from the admin API.
func seatCodeOf(a admin, n int) string {
	var seats struct {
		Seats []struct {
			Seat int    `json:"seat"`
			Code string `json:"code"`
		} `json:"seats"`
	}
	a.do("GET", "/api/seats", nil, &seats)
	for _, s := range seats.Seats {
		if s.Seat == n {
			return s.Code
		}
	}
	a.t.Fatalf("no seat %d", n)
	return ""
}

// startAgentWithToken is startAgent with a token of its own, for the
// ComfyUI instances at the given URLs.
func startAgentWithToken(t testing.TB, server, name, token string, comfy ...string) *proc {
	t.Helper()
	args := []string{"--server", server, "--token", token, "--name", name, "--report-interval", "500ms"}
	for _, u := range comfy {
		args = append(args, "--comfy", u)
	}
	return startProc(t, "gpu-agent", args...)
}

// Attacks that need a GPU host: one server, agent and simulator for all.
func TestSecurityWithGPU(t *testing.T) {
	s := startStack(t, "--upload-quota-mb", "1", "--max-sockets", "3", "--max-outputs", "4", "--max-output-mb", "1")
	p1, p2 := s.join(1), s.join(2)

	// 1: an upload named .shtml (or .xht, .xsl...) was served inline as
	// HTML on the admin's origin; a PNG that is really HTML was sniffed.
	t.Run("uploads are never served as active content", func(t *testing.T) {
		html := []byte("<html><script>fetch('/admin/session')</script></html>")
		for _, name := range []string{"cat.shtml", "cat.xht", "cat.xsl", "cat.xsd", "cat.rdf", "cat.mml", "cat.jsm", "cat.svg", "cat.html", "fake.png"} {
			if st, b := p1.uploadWith(name, html, nil); st != 200 {
				t.Fatalf("upload %s: %d %s", name, st, b)
			}
			st, h, _ := p1.send("GET", "/user/1/api/view?type=input&filename="+url.QueryEscape(name), nil, nil)
			if st != 200 || h.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") ||
				!strings.Contains(h.Get("Content-Security-Policy"), "sandbox") || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s served as %d %v", name, st, h)
			}
		}
		png := pngBytes(colorRed)
		p1.uploadWith("real.png", png, nil)
		if st, h, b := p1.send("GET", "/user/1/api/view?type=input&filename=real.png", nil, nil); st != 200 || h.Get("Content-Type") != "image/png" ||
			!strings.HasPrefix(h.Get("Content-Disposition"), "inline") || !bytes.Equal(b, png) {
			t.Errorf("a real PNG: %d %v", st, h)
		}
	})

	// 1, outputs: what a GPU host sends back is judged by its bytes too,
	// on the participant's /view and on the admin's output links.
	t.Run("outputs that are not what they claim are downloads", func(t *testing.T) {
		id := p1.prompt(imageGraph("out", 5))
		s.ev.waitDone(30*time.Second, id)
		j := s.a.job(id)
		if j.Status != "completed" || j.Result == nil || len(j.Result.Outputs) != 1 {
			t.Fatalf("job: %+v", j)
		}
		o := j.Result.Outputs[0]
		name := filepath.Base(o.URL)
		adminGet := func() http.Header {
			req, _ := http.NewRequest("GET", s.base+o.URL, nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d", o.URL, resp.StatusCode)
			}
			return resp.Header
		}
		if h := adminGet(); h.Get("Content-Type") != "image/png" || !strings.HasPrefix(h.Get("Content-Disposition"), "inline") {
			t.Errorf("a real output: %v", h)
		}
		// The GPU host sent HTML under the PNG's name.
		stored := filepath.Join(s.data, "outputs", "user001", id, name)
		if err := os.WriteFile(stored, []byte("<html><script>alert(1)</script>"), 0o640); err != nil {
			t.Fatal(err)
		}
		if h := adminGet(); h.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") || !strings.Contains(h.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("admin outputs route: %v", h)
		}
		q := url.Values{"filename": {name}, "subfolder": {id}, "type": {"output"}}.Encode()
		if _, h, _ := p1.send("GET", "/user/1/api/view?"+q, nil, nil); h.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") {
			t.Errorf("participant /view: %v", h)
		}
	})

	// 3: escaped spellings of refused routes passed the refuse rules and
	// reached the GPU host (its logs hold everyone's prompts).
	t.Run("encoded paths are not forwarded", func(t *testing.T) {
		cookie := "Cookie: " + p1.cookie()
		for _, path := range []string{
			"/user/1/api/%69nternal/logs", "/user/1/%69nternal/logs", "/user/1/api/internal/logs",
			"/user/1/api/%69nternal/folder_paths", "/user/1/api/%69nternal/files/output",
			"/user/1/api/%6danager/reboot", "/user/1/%73im/stats", "/user/1/%73%69%6D/stats", "/user/1/api/%2569nternal/logs",
			"/user/1/api/internal%2Flogs", "/user/1/assets/../internal/logs", "/user/1/assets/%2e%2e/internal/logs",
			"/user/1/assets/%2E%2E/%2E%2E/sim/stats", "/user/1/./sim/stats", "/user/1/api\\internal\\logs",
			"/user/1/api%5Cinternal%5Clogs", "/user/1/api/%66ree", "/user/1/api/%6fbject_info", "/user/1/api/%76iew?filename=x.png",
		} {
			resp, body := rawGet(t, s.base, path, cookie)
			if resp.StatusCode < 400 && !strings.Contains(path, "bject_info") {
				t.Errorf("%s: %d %.100s", path, resp.StatusCode, body)
			}
			if bytes.Contains(body, []byte("executions")) || bytes.Contains(body, []byte(`"entries"`)) || bytes.Contains(body, []byte(`"input"`)) && strings.Contains(path, "files") {
				t.Errorf("%s reached the GPU host: %.200s", path, body)
			}
		}
		// object_info, however spelled, is the participant's own view:
		// LoadImage lists their uploads, not the host's input folder.
		_, oi := rawGet(t, s.base, "/user/2/api/%6fbject_info/LoadImage", "Cookie: "+p2.cookie())
		if bytes.Contains(oi, []byte("real.png")) || !bytes.Contains(oi, []byte("LoadImage")) {
			t.Errorf("object_info, escaped: %.300s", oi)
		}
		// The admin API is not a way to the GPU host either.
		if resp, body := rawGet(t, s.base, "/api/%69nternal/files/output", "Authorization: Bearer "+adminToken); resp.StatusCode != 404 || bytes.Contains(body, []byte("[")) {
			t.Errorf("/api/%%69nternal/files/output: %d %s", resp.StatusCode, body)
		}
		// What the UI needs still comes through.
		for _, path := range []string{"/user/1/", "/user/1/api/system_stats", "/user/1/api/%73ystem_stats", "/user/1/api/embeddings"} {
			if resp, body := rawGet(t, s.base, path, cookie); resp.StatusCode != 200 {
				t.Errorf("%s: %d %.100s", path, resp.StatusCode, body)
			}
		}
	})

	// 6: validation ran before any size check: a 90,000-node graph took a
	// core for most of a minute and was accepted.
	t.Run("a huge graph is refused before validation", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`{"prompt":{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":0}}`)
		for i := 2; i <= 90000; i++ {
			fmt.Fprintf(&b, `,"%d":{"class_type":"ImageScaleBy","inputs":{"image":["%d",0]}}`, i, i-1)
		}
		b.WriteString(`,"90001":{"class_type":"SaveImage","inputs":{"images":["90000",0],"filename_prefix":"x"}}}}`)
		start := time.Now()
		st, _, body := p1.send("POST", "/user/1/api/prompt", strings.NewReader(b.String()), nil)
		t.Logf("90,001 nodes (%d bytes) refused in %s", b.Len(), time.Since(start).Round(time.Millisecond))
		var e struct {
			Error struct{ Type, Details string } `json:"error"`
		}
		json.Unmarshal(body, &e)
		if st != 400 || e.Error.Type != "invalid_prompt" || !strings.Contains(e.Error.Details, "5000") {
			t.Errorf("90,001 nodes: %d %.200s", st, body)
		}
		// Under the cap a long chain is validated in linear time: this one
		// fails (its last input is missing), and says so.
		b.Reset()
		b.WriteString(`{"prompt":{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":0}}`)
		for i := 2; i <= 4990; i++ {
			fmt.Fprintf(&b, `,"%d":{"class_type":"ImageScaleBy","inputs":{"image":["%d",0],"upscale_method":"nearest-exact","scale_by":1}}`, i, i-1)
		}
		b.WriteString(`,"4991":{"class_type":"SaveImage","inputs":{"images":["4990",0]}}}}`)
		start = time.Now()
		st, _, body = p1.send("POST", "/user/1/api/prompt", strings.NewReader(b.String()), nil)
		t.Logf("a 4,991-node chain validated in %s", time.Since(start).Round(time.Millisecond))
		if st != 400 || !bytes.Contains(body, []byte("prompt_outputs_failed_validation")) {
			t.Errorf("4,991 nodes: %d %.200s", st, body)
		}
	})

	// 10: a CR/LF in filename_prefix left the job running, its outputs
	// retried every 2 s forever.
	t.Run("control characters in output names", func(t *testing.T) {
		for _, prefix := range []string{"a\r\nb", "x\u202egnp", "ok/\x00"} {
			graph, _ := json.Marshal(map[string]any{"prompt": imageGraph(prefix, 1)})
			st, _, body := p1.send("POST", "/user/1/api/prompt", bytes.NewReader(graph), nil)
			var e struct {
				Error      struct{ Type string } `json:"error"`
				NodeErrors map[string]struct {
					Errors []struct{ Type, Details string } `json:"errors"`
				} `json:"node_errors"`
			}
			json.Unmarshal(body, &e)
			ne := e.NodeErrors["2"]
			if st != 400 || e.Error.Type != "prompt_outputs_failed_validation" || len(ne.Errors) != 1 ||
				ne.Errors[0].Type != "custom_validation_failed" || !strings.Contains(ne.Errors[0].Details, "filename_prefix") {
				t.Errorf("prefix %q: %d %s", prefix, st, body)
			}
		}
		// The admin API does not validate graphs; such a job still ends.
		j := s.a.submit("user001", imageGraph("a\r\nb", 2))
		s.ev.waitDone(60*time.Second, j.ID)
		got := s.a.job(j.ID)
		if got.Status != "completed" || got.Result == nil || strings.ContainsAny(got.Result.Outputs[0].URL, "\r\n") {
			t.Errorf("a CR/LF job: %+v", got)
		}
	})

	// 9: outputs had no size or count limit (300 MB accepted).
	t.Run("outputs over the caps fail the job", func(t *testing.T) {
		many := imageGraph("many", 3)
		many["1"].(map[string]any)["inputs"].(map[string]any)["batch_size"] = 6
		big := map[string]any{
			"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 64, "height": 64, "batch_size": 1100, "color": 0}},
			"2": map[string]any{"class_type": "CreateVideo", "inputs": map[string]any{"images": []any{"1", 0}, "fps": 24.0}},
			"3": map[string]any{"class_type": "SaveVideo", "inputs": map[string]any{"video": []any{"2", 0}, "filename_prefix": "video/big", "format": "auto", "codec": "auto"}},
		}
		for want, graph := range map[string]map[string]any{"6 output files": many, "over 1 MB": big} {
			id := p1.prompt(graph)
			s.ev.waitDone(60*time.Second, id)
			j := s.a.job(id)
			if j.Status != "failed" || j.Error == nil || !strings.Contains(j.Error.Message, want) {
				t.Errorf("want a failure with %q: %+v %+v", want, j, j.Error)
			}
			if entries, _ := os.ReadDir(filepath.Join(s.data, "outputs", "user001", id)); len(entries) != 0 {
				t.Errorf("%d files of a failed job kept", len(entries))
			}
		}
	})

	// 12: an output saved in a subfolder 404ed on the admin's route.
	t.Run("outputs in a subfolder are served", func(t *testing.T) {
		id := p1.prompt(imageGraph("sub/cat", 4))
		s.ev.waitDone(30*time.Second, id)
		j := s.a.job(id)
		if j.Result == nil || len(j.Result.Outputs) != 1 || j.Result.Outputs[0].Subfolder != "sub" {
			t.Fatalf("job: %+v", j)
		}
		req, _ := http.NewRequest("GET", s.base+j.Result.Outputs[0].URL, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s: %d", j.Result.Outputs[0].URL, resp.StatusCode)
		}
	})

	// 12: no upload quota, no cap on sockets.
	t.Run("upload quota and socket cap", func(t *testing.T) {
		if st, b := p2.uploadWith("a.bin", randomBytes(700<<10), nil); st != 200 {
			t.Fatalf("first upload: %d %s", st, b)
		}
		if st, b := p2.uploadWith("b.bin", randomBytes(700<<10), nil); st != 413 || !bytes.Contains(b, []byte("quota")) {
			t.Errorf("over the quota: %d %s", st, b)
		}
		p3 := s.join(3)
		var open []*websocket.Conn
		for i := 0; i < 3; i++ {
			c, _, err := p3.dialSocket("")
			if err != nil {
				t.Fatalf("socket %d: %v", i+1, err)
			}
			c.ReadMessage() // the first status: it is registered
			open = append(open, c)
		}
		if c, resp, err := p3.dialSocket(""); err == nil || resp == nil || resp.StatusCode != 429 {
			t.Errorf("a fourth socket: %v %v", err, resp)
			if c != nil {
				c.Close()
			}
		}
		for _, c := range open {
			c.Close()
		}
	})

	// 12: names with control or bidi characters.
	t.Run("names with control or bidi characters are refused", func(t *testing.T) {
		var e apiErr
		if st := s.a.do("PATCH", "/api/seats/1", map[string]any{"name": "Eve\u202etxt.exe"}, &e); st != 400 {
			t.Errorf("seat name: %d %+v", st, e)
		}
		if st, b := p1.uploadWith("x\u202egnp.png", pngBytes(colorRed), nil); st != 400 {
			t.Errorf("upload name: %d %s", st, b)
		}
		req, _ := http.NewRequest("PUT", s.base+"/api/workflows/"+url.PathEscape("a\u202e.json"), strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
			t.Errorf("workflow name: %v %v", err, resp)
		} else {
			resp.Body.Close()
		}
		if st, _, b := p1.send("POST", "/user/1/api/userdata/"+url.PathEscape("workflows/a\u202e.json"), strings.NewReader(`{}`), nil); st < 400 {
			t.Errorf("userdata name: %d %s", st, b)
		}
	})

	// 12: /health told anyone the version, uptime and queue; the profiler's
	// cmdline showed the admin token; /user/N/ could be framed.
	t.Run("health, profiler and framing", func(t *testing.T) {
		resp, body := rawGet(t, s.base, "/health")
		if resp.StatusCode != 200 || string(bytes.TrimSpace(body)) != `{"status":"ok"}` {
			t.Errorf("anonymous /health: %d %s", resp.StatusCode, body)
		}
		var h map[string]any
		s.a.do("GET", "/health", nil, &h)
		if h["version"] == nil || h["queue"] == nil {
			t.Errorf("admin /health: %v", h)
		}
		if resp, body := rawGet(t, s.base, "/debug/pprof/cmdline", "Authorization: Bearer "+adminToken); resp.StatusCode != 200 ||
			bytes.Contains(body, []byte(adminToken)) || bytes.Contains(body, []byte(agentToken)) || !bytes.Contains(body, []byte("REDACTED")) {
			t.Errorf("cmdline: %d %q", resp.StatusCode, body)
		}
		_, hdr, _ := p1.send("GET", "/user/1/", nil, nil)
		if hdr.Get("X-Frame-Options") != "SAMEORIGIN" || !strings.Contains(hdr.Get("Content-Security-Policy"), "frame-ancestors 'self'") {
			t.Errorf("/user/1/ headers: %v", hdr)
		}
	})

	// 9: one agent token for all hosts let anyone holding it take a host's
	// name and its jobs; now each host can have its own.
	t.Run("per-host agent tokens", func(t *testing.T) {
		out, err := runCLI(t, s.server, "agents", "add", "gpu-own")
		m := regexp.MustCompile(`(?m)^([A-Za-z0-9_-]{40,})$`).FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("agents add: %v\n%s", err, out)
		}
		own := m[1]
		sim2 := startSim(t)
		host := startAgentWithToken(t, s.base, "gpu-own", own, sim2.base)
		s.ev.waitWorkers(s.a, 2, 30*time.Second)
		connectedAt := func() string {
			var res struct {
				Agents []struct {
					Name        string `json:"name"`
					Connected   bool   `json:"connected"`
					ConnectedAt string `json:"connected_at"`
				} `json:"agents"`
			}
			s.a.do("GET", "/api/agents", nil, &res)
			for _, a := range res.Agents {
				if a.Name == "gpu-own" && a.Connected {
					return a.ConnectedAt
				}
			}
			return ""
		}
		first := connectedAt()
		if first == "" {
			t.Fatal("gpu-own is not listed as connected")
		}
		if out, err := runCLI(t, s.server, "agents", "list"); err != nil || !strings.Contains(out, "gpu-own") || !strings.Contains(out, "gpu-a") {
			t.Errorf("agents list: %v\n%s", err, out)
		}
		// Its token under another host's name, and the shared token under
		// its name: both refused, and gpu-own's session stays.
		thief := startAgentWithToken(t, s.base, "gpu-a", own, sim2.base)
		thief.waitLine(`refused the hello.*belongs to agent .{0,2}gpu-own`, 30*time.Second)
		impostor := startAgentWithToken(t, s.base, "gpu-own", agentToken, sim2.base)
		impostor.waitLine(`refused the hello.*has a token of its own`, 30*time.Second)
		if now := connectedAt(); now != first {
			t.Errorf("gpu-own's session was replaced: %s -> %s", first, now)
		}
		thief.kill()
		impostor.kill()
		// Revoked: the session ends at once and the token is refused.
		if out, err := runCLI(t, s.server, "agents", "revoke", "gpu-own"); err != nil || !strings.Contains(out, "1 session(s) closed") {
			t.Errorf("agents revoke: %v\n%s", err, out)
		}
		host.waitLine(`rejected the agent token`, 30*time.Second)
		if connectedAt() != "" {
			t.Error("gpu-own still connected after the revoke")
		}
	})
}

var colorRed = color.RGBA{255, 0, 0, 255}

type apiErr struct {
	Error struct{ Code, Message string } `json:"error"`
}

// 2: the login limiter counted failures after the argon2id hash, so 60
// parallel guesses all ran it (64 MiB each): 4 GB and no 429.
func TestSecurityLoginFlood(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--admin-password", "correct horse battery staple")
	pid := srv.cmd.Process.Pid
	t.Logf("server peak memory before: %d MiB", peakRSS(t, pid)>>20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	for i := 0; i < 40; i++ {
		wg.Go(func() {
			<-start
			resp, err := http.Post(srv.base+"/admin/login", "application/json", strings.NewReader(fmt.Sprintf(`{"secret":"wrong guess %d"}`, i)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	peak := peakRSS(t, pid)
	t.Logf("40 parallel wrong logins: %v; server peak memory %d MiB", codes, peak>>20)
	if codes[429] < 25 || codes[200] != 0 || codes[401]+codes[429] != 40 {
		t.Errorf("answers %v: want mostly 429 and no success", codes)
	}
	if peak >= 1<<30 {
		t.Errorf("peak memory %d MiB", peak>>20)
	}
}

// peakRSS is a process's peak resident memory (VmHWM), in bytes.
func peakRSS(t testing.TB, pid int) int64 {
	t.Helper()
	st, err := procstat.Read(pid)
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return st.HWM
}

// 4: with no node list yet (before any GPU host), /prompt skipped
// validation and input rewriting: seat 2 ran a LoadImage of seat 1's file.
func TestSecurityNoPromptBeforeNodeList(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "2")
	a := admin{t, srv.base}
	p, _ := joinCode(t, srv.base, seatCodeOf(a, 2))
	graph := `{"prompt":{"1":{"class_type":"LoadImage","inputs":{"image":"workshop-user001/cat.png"}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"x"}}}}`
	st, _, body := p.send("POST", "/user/2/api/prompt", strings.NewReader(graph), nil)
	var e struct {
		Error struct {
			Type, Message string
		} `json:"error"`
		NodeErrors map[string]any `json:"node_errors"`
	}
	json.Unmarshal(body, &e)
	if st != 503 || e.Error.Type != "server_unavailable" || e.NodeErrors == nil {
		t.Errorf("prompt before any GPU host: %d %s", st, body)
	}
	var q struct{ Counts map[string]int }
	a.do("GET", "/api/queue/status", nil, &q)
	if q.Counts["pending"] != 0 {
		t.Errorf("a job was queued: %v", q.Counts)
	}
}

// 5: bodies up to 110 MiB were read before authentication on every route,
// and slow-header connections were held for minutes.
func TestSecurityBodiesAndConnections(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "1", "--header-timeout", "1s")
	host := strings.TrimPrefix(srv.base, "http://")

	// An anonymous 50 MB upload: the answer comes with the headers alone,
	// so the body was never read.
	resp, body := rawHTTP(t, srv.base, "POST /user/1/api/upload/image HTTP/1.1\r\nHost: "+host+
		"\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 52428800\r\n\r\n")
	if resp.StatusCode != 413 || !bytes.Contains(body, []byte("too_large")) {
		t.Errorf("anonymous 50 MB upload: %d %s", resp.StatusCode, body)
	}
	// The same for any route, and for a chunked body.
	resp, _ = rawHTTP(t, srv.base, "POST /admin/login HTTP/1.1\r\nHost: "+host+"\r\nContent-Length: 10485760\r\n\r\n")
	if resp.StatusCode != 413 {
		t.Errorf("anonymous 10 MB login body: %d", resp.StatusCode)
	}
	// A signed-in seat may send more (the server waits for the body).
	p, _ := joinCode(t, srv.base, seatCodeOf(admin{t, srv.base}, 1))
	if st, b := p.uploadWith("big.png", randomBytes(2<<20), nil); st != 200 {
		t.Errorf("a seat's 2 MiB upload: %d %s", st, b)
	}

	// A socket opened now must outlive the header timeout.
	ws, _, err := p.dialSocket("")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	// Slow headers: every connection is closed by the server.
	var conns []net.Conn
	for i := 0; i < 40; i++ {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: "+host+"\r\nX-Slow: ")
		conns = append(conns, c)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow-header connection %d still open after 60 s", i)
		}
	}
	// They were cut after the header timeout; the socket, older, is not.
	pong := make(chan struct{}, 1)
	ws.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("the socket was cut: %v", err)
	}
	select {
	case <-pong:
	case <-time.After(30 * time.Second):
		t.Error("the socket does not answer after the header timeout")
	}
}

// 5: a per-address cap on connections. Admin sockets hold their
// connections (no read deadline once upgraded), so the cap is reached
// deterministically.
func TestSecurityConnectionCap(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "1", "--max-conns-per-ip", "20")
	u := "ws" + strings.TrimPrefix(srv.base, "http") + "/ws?token=" + adminToken
	for i := 0; i < 20; i++ {
		c, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			t.Fatalf("socket %d: %v", i+1, err)
		}
		defer c.Close()
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	got, _ := io.ReadAll(c)
	if !bytes.Contains(got, []byte("exceeds MaxConnsPerIP")) {
		t.Errorf("the 21st connection: %q", got)
	}
}

// 7: sessions survived a new join code, and re-enabling a seat revived
// them; the instructor could not sign a seat out.
func TestSecuritySessionsEnd(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "2")
	a := admin{t, srv.base}
	p, st := joinCode(t, srv.base, seatCodeOf(a, 1))
	if st != 303 || p.seat != 1 {
		t.Fatalf("join: %d seat %d", st, p.seat)
	}
	signedIn := func(p *participant) int {
		st, _, _ := p.send("GET", fmt.Sprintf("/user/%d/api/settings", p.seat), nil, nil)
		return st
	}
	closedSocket := func(c *websocket.Conn) bool {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				ne, timeout := err.(net.Error)
				return !(timeout && ne.Timeout())
			}
		}
	}
	ws, _, err := p.dialSocket("")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if st := a.do("PATCH", "/api/seats/1", map[string]any{"rotate_code": true}, nil); st != 200 {
		t.Fatalf("rotate: %d", st)
	}
	if st := signedIn(p); st != 401 {
		t.Errorf("the old session of a rotated seat: %d", st)
	}
	if !closedSocket(ws) {
		t.Error("the rotated seat's socket stayed open")
	}

	p, _ = joinCode(t, srv.base, seatCodeOf(a, 1))
	a.do("PATCH", "/api/seats/1", map[string]any{"disabled": true}, nil)
	a.do("PATCH", "/api/seats/1", map[string]any{"disabled": false}, nil)
	if st := signedIn(p); st != 401 {
		t.Errorf("a session from before a disable, after re-enabling: %d", st)
	}

	p, _ = joinCode(t, srv.base, seatCodeOf(a, 1))
	ws, _, err = p.dialSocket("")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if out, err := runCLI(t, srv, "seats", "signout", "1"); err != nil || !strings.Contains(out, "1 sessions ended") {
		t.Errorf("seats signout: %v %s", err, out)
	}
	if st := signedIn(p); st != 401 {
		t.Errorf("after a sign-out: %d", st)
	}
	if !closedSocket(ws) {
		t.Error("the signed-out seat's socket stayed open")
	}
	if p, _ = joinCode(t, srv.base, seatCodeOf(a, 1)); signedIn(p) != 200 {
		t.Error("the code no longer joins after a sign-out")
	}
}

// 8: the join limiter was per address only and refused valid codes too:
// ten wrong codes from a venue's NAT locked the whole room out.
func TestSecurityJoinGuesses(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "2")
	a := admin{t, srv.base}
	codes := map[int]int{}
	for i := 0; i < 12; i++ {
		_, st := joinCode(t, srv.base, fmt.Sprintf("wrongcode%02d", i))
		codes[st]++
	}
	if codes[404] != 10 || codes[429] != 2 {
		t.Errorf("12 wrong codes: %v", codes)
	}
	for n := 1; n <= 2; n++ {
		if p, st := joinCode(t, srv.base, seatCodeOf(a, n)); st != 303 || p.seat != n {
			t.Errorf("seat %d's valid code after 12 wrong ones: %d", n, st)
		}
	}
}

// 11: participant changes and sockets checked no Origin (a page on another
// port wrote a seat's settings); the instructor's cookie acted on
// participant routes without CSRF; /join signed the instructor out.
func TestSecurityOrigins(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "2")
	a := admin{t, srv.base}
	p, _ := joinCode(t, srv.base, seatCodeOf(a, 1))
	other := "http://" + strings.Replace(strings.TrimPrefix(srv.base, "http://"), ":", ":1", 1) // another port
	settings := func(hdr map[string]string) int {
		st, _, _ := p.send("POST", "/user/1/api/settings/Comfy.Evil", strings.NewReader(`"x"`), hdr)
		return st
	}
	if st := settings(map[string]string{"Origin": other}); st != 403 {
		t.Errorf("settings from another origin: %d", st)
	}
	if st := settings(map[string]string{"Sec-Fetch-Site": "same-site"}); st != 403 {
		t.Errorf("settings from a same-site page: %d", st)
	}
	if st, b := p.uploadWith("x.png", pngBytes(colorRed), map[string]string{"Origin": other}); st != 403 {
		t.Errorf("upload from another origin: %d %s", st, b)
	}
	if _, _, b := p.send("GET", "/user/1/api/settings", nil, nil); bytes.Contains(b, []byte("Comfy.Evil")) {
		t.Errorf("the setting was written: %s", b)
	}
	if st := settings(map[string]string{"Origin": srv.base}); st != 200 {
		t.Errorf("settings from the server's own page: %d", st)
	}
	if c, resp, err := p.dialSocket(other); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("socket from another origin: %v %v", err, resp)
		if c != nil {
			c.Close()
		}
	}
	if c, _, err := p.dialSocket(srv.base); err != nil {
		t.Errorf("socket from the server's own page: %v", err)
	} else {
		c.Close()
	}

	// The instructor's browser: signed in, it opens a join link.
	jar, _ := cookiejar.New(nil)
	ab := &adminBrowser{t: t, base: srv.base, client: &http.Client{Jar: jar}}
	st, body := ab.call("POST", "/admin/login", map[string]any{"secret": adminToken}, "")
	var r struct{ CSRF string }
	json.Unmarshal(body, &r)
	if st != 200 {
		t.Fatalf("login: %d", st)
	}
	if st, _ := ab.call("GET", "/user/2/api/settings", nil, ""); st != 200 {
		t.Errorf("the instructor looks into seat 2: %d", st)
	}
	if st, _ := ab.call("POST", "/user/2/api/settings/Comfy.X", "x", ""); st != 403 {
		t.Errorf("the instructor's cookie acts in seat 2 without CSRF: %d", st)
	}
	resp, err := ab.client.Get(srv.base + "/join/" + seatCodeOf(a, 2))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/user/2/" {
		t.Errorf("join in the instructor's browser landed on %s", resp.Request.URL)
	}
	if st, _ := ab.call("GET", "/admin/session", nil, ""); st != 200 {
		t.Errorf("the join link signed the instructor out: %d", st)
	}
	// The admin events socket from another port's page.
	h := http.Header{"Origin": {other}}
	for _, c := range jar.Cookies(resp.Request.URL) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	if c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.base, "http")+"/ws", h); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("admin socket from another origin: %v %v", err, resp)
		if c != nil {
			c.Close()
		}
	}

	// A browser in seat 1 opening seat 2's link is asked first.
	resp, err = p.client.Get(srv.base + "/join/" + seatCodeOf(a, 2))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("Switch to seat 2?")) {
		t.Errorf("join link of another seat: %d %s", resp.StatusCode, page)
	}
	if settings(map[string]string{"Origin": srv.base}) != 200 {
		t.Error("asking moved the browser")
	}
	st, _, _ = p.send("POST", "/join/"+seatCodeOf(a, 2), nil, map[string]string{"Origin": srv.base})
	p.seat = 2
	if _, _, b := p.send("GET", "/user/2/api/settings", nil, nil); st != 303 || bytes.Contains(b, []byte("error")) {
		t.Errorf("switching seats: %d %s", st, b)
	}
}

// Against a real ComfyUI (whose /internal routes do hold the logs): the
// encoded spellings are refused, and its frontend still loads in a browser
// with the frame headers set on every /user/N/ answer.
func TestSecurityRealComfyUI(t *testing.T) {
	v := realcomfy.Get(t, "0.3.64")
	in := realcomfy.Start(t, v, realcomfy.Options{FrontEndRoot: realcomfy.KitFrontend()})
	stk := startGPUStack(t, "--seats", "1")
	srv, a := stk.server, stk.a
	stk.addAgent("gpu-real", in.URL)
	code := seatCodeOf(a, 1)
	p, _ := joinCode(t, srv.base, code)

	resp, err := http.Get(in.URL + "/internal/logs")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ComfyUI's own /internal/logs: %v %v", err, resp)
	}
	resp.Body.Close()
	for _, path := range []string{"/user/1/internal/logs", "/user/1/%69nternal/logs", "/user/1/api/%69nternal/logs",
		"/user/1/api/%69nternal/folder_paths", "/user/1/%69nternal/files/output", "/user/1/api/%6danager/queue/start", "/user/1/api/%66ree"} {
		if resp, body := rawGet(t, srv.base, path, "Cookie: "+p.cookie()); resp.StatusCode < 400 {
			t.Errorf("%s: %d %.100s", path, resp.StatusCode, body)
		}
	}

	ctx := browser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.base+"/join/"+code),
		chromedp.Poll[chromedp.Void](`!!document.querySelector("#graph-canvas") && !!window.comfyAPI`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second)),
	); err != nil {
		t.Fatalf("the ComfyUI frontend did not load at /user/1/: %v", err)
	}
	frame, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(location.href).then(r => r.headers.get("x-frame-options"))`, chromedp.EvalAwaitPromise))
	if err != nil || frame != "SAMEORIGIN" {
		t.Errorf("X-Frame-Options %q (%v)", frame, err)
	}
}

// 7: the instructor signs a seat out from the participants view: its
// socket closes at once and its session is gone.
func TestSecuritySignOutButton(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--seats", "2")
	a := admin{t, srv.base}
	p, _ := joinCode(t, srv.base, seatCodeOf(a, 1))
	ws, _, err := p.dialSocket("")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ctx := browser(t)
	signOut := chromedp.CSS(`button[aria-label="Sign out every browser of seat 1"]`)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.base+"/admin"),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#secret"), adminToken),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		chromedp.Click(chromedp.CSS("#tab-participants")),
		chromedp.WaitVisible(signOut),
		chromedp.Click(signOut), // arms it
		chromedp.Click(signOut), // confirms
	); err != nil {
		t.Fatalf("the sign-out button: %v", err)
	}
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the seat's socket stayed open")
			}
			break
		}
	}
	if st, _, _ := p.send("GET", "/user/1/api/settings", nil, nil); st != 401 {
		t.Errorf("after the sign-out button: %d", st)
	}
}
