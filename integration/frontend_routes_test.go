package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/comfy-workshop/workshop/internal/browsertest"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// startFrontendStack is startStack with the simulator serving the kit's
// built ComfyUI frontend (as ComfyUI does with --front-end-root), so the
// UI's own files come through the mirror.
func startFrontendStack(t *testing.T) *stack {
	t.Helper()
	fe := realcomfy.KitFrontend()
	if fe == "" {
		t.Skip("no built ComfyUI frontend in the kit (../shared/comfyui/frontend-*)")
	}
	return startGPUStack(t, "--seats", "3").withSim("--front-end-root", fe)
}

// get requests path with extra headers and returns the response, body read.
func (p *participant) get(path string, header ...string) (*http.Response, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.base+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (p *participant) postJSON(path, body string) (int, map[string]any) {
	p.t.Helper()
	st, b := p.do("POST", path, strings.NewReader(body), "application/json")
	var m map[string]any
	json.Unmarshal(b, &m)
	return st, m
}

// The routes the current frontend reads beyond the old API, as a
// participant's browser calls them: the jobs API with its shapes, filters
// and cancel routes, per participant and numbered per participant; ranged
// /view; the frontend's root-absolute URLs; the workshop's template pack;
// an announcement on the open socket.
func TestFrontendRoutes(t *testing.T) {
	s := startFrontendStack(t)
	p1, p2 := s.join(1), s.join(2)
	if st := s.a.do("PUT", "/api/workflows/day-one.json", map[string]any{"nodes": []any{}, "links": []any{}, "version": 0.4}, nil); st != 200 {
		t.Fatalf("publish a workflow: %d", st)
	}

	// Numbered per participant: seat 1's second job is their number 2,
	// whatever seat 2 queued in between.
	number := func(p *participant, graph map[string]any, workflowID ...string) (string, float64) {
		req := map[string]any{"prompt": graph, "client_id": "c"}
		if len(workflowID) > 0 { // as the frontend sends its UI graph
			req["extra_data"] = map[string]any{"extra_pnginfo": map[string]any{"workflow": map[string]any{"id": workflowID[0], "nodes": []any{}}}}
		}
		b, _ := json.Marshal(req)
		st, m := p.postJSON(fmt.Sprintf("/user/%d/api/prompt", p.seat), string(b))
		if st != 200 {
			t.Fatalf("prompt: %d %v", st, m)
		}
		return m["prompt_id"].(string), m["number"].(float64)
	}
	first, n1 := number(p1, imageGraph("one", 10))
	other, _ := number(p2, imageGraph("two", 20))
	second, n2 := number(p1, imageGraph("three", 30), "wf-three")
	if n1 != 1 || n2 != 2 {
		t.Fatalf("seat 1's numbers %v, %v", n1, n2)
	}
	s.ev.waitDone(30*time.Second, first, other, second)

	// The list: this participant's jobs only, newest first, each with its
	// preview and count; the detail with outputs and the prompt.
	type item struct {
		ID            string         `json:"id"`
		Status        string         `json:"status"`
		Priority      int            `json:"priority"`
		CreateTime    int64          `json:"create_time"`
		OutputsCount  int            `json:"outputs_count"`
		PreviewOutput map[string]any `json:"preview_output"`
	}
	var list struct {
		Jobs       []item `json:"jobs"`
		Pagination struct {
			Offset, Limit, Total int
			HasMore              bool `json:"has_more"`
		} `json:"pagination"`
	}
	_, b := p1.get("/user/1/api/jobs?status=completed,failed,cancelled&limit=64&offset=0")
	if err := json.Unmarshal(b, &list); err != nil || len(list.Jobs) != 2 || list.Pagination.Total != 2 {
		t.Fatalf("seat 1's list: %v %s", err, b)
	}
	if j := list.Jobs[0]; j.ID != second || j.Status != "completed" || j.Priority != 2 || j.OutputsCount != 1 ||
		j.PreviewOutput["subfolder"] != second || j.PreviewOutput["type"] != "output" || j.PreviewOutput["nodeId"] != "2" ||
		j.PreviewOutput["mediaType"] != "images" || !strings.HasSuffix(j.PreviewOutput["filename"].(string), ".png") {
		t.Fatalf("newest job %+v", j)
	}
	_, b = p1.get("/user/1/api/jobs?sort_order=asc&limit=1&offset=1")
	json.Unmarshal(b, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != second || list.Pagination.HasMore || list.Pagination.Total != 2 {
		t.Fatalf("second page, oldest first: %s", b)
	}
	// The frontend's workflow id picks the jobs of one workflow; the
	// slowest first by run time.
	_, b = p1.get("/user/1/api/jobs?workflow_id=wf-three")
	if json.Unmarshal(b, &list); len(list.Jobs) != 1 || list.Jobs[0].ID != second || list.Pagination.Total != 1 || !bytes.Contains(b, []byte(`"workflow_id":"wf-three"`)) {
		t.Fatalf("jobs of workflow wf-three: %s", b)
	}
	type runTimes struct {
		Start int64 `json:"execution_start_time"`
		End   int64 `json:"execution_end_time"`
	}
	var slowest, all struct{ Jobs []runTimes }
	_, b = p1.get("/user/1/api/jobs?sort_by=execution_duration&limit=1")
	json.Unmarshal(b, &slowest)
	_, b = p1.get("/user/1/api/jobs?sort_by=execution_duration&sort_order=asc")
	json.Unmarshal(b, &all)
	run := func(j runTimes) int64 { return j.End - j.Start }
	if len(slowest.Jobs) != 1 || len(all.Jobs) != 2 || run(all.Jobs[0]) > run(all.Jobs[1]) || run(slowest.Jobs[0]) != run(all.Jobs[1]) {
		t.Fatalf("by run time: slowest %v, all %v", slowest.Jobs, all.Jobs)
	}
	// The history as the legacy frontend pages it: oldest first, the
	// newest max_items without an offset.
	for q, want := range map[string][]string{"": {first, second}, "?max_items=1": {second}, "?max_items=1&offset=0": {first}, "?offset=1": {second}, "?offset=5": {}} {
		_, b := p1.get("/user/1/api/history" + q)
		o, err := jsonobj.Parse(b)
		if err != nil || !slices.Equal(o.Keys(), want) {
			t.Errorf("history%s: %v, want %v (%v)", q, o.Keys(), want, err)
		}
	}
	// The extension's gallery pages through the outputs, newest first.
	var outs struct {
		Outputs []struct {
			JobID string `json:"job_id"`
		}
		Next string
	}
	_, b = p1.get("/user/1/api/workshop/outputs?limit=1")
	if json.Unmarshal(b, &outs); len(outs.Outputs) != 1 || outs.Outputs[0].JobID != second || outs.Next != second {
		t.Fatalf("the newest output: %s", b)
	}
	outs.Next = ""
	_, b = p1.get("/user/1/api/workshop/outputs?limit=1&before=" + second)
	if json.Unmarshal(b, &outs); len(outs.Outputs) != 1 || outs.Outputs[0].JobID != first || outs.Next != "" {
		t.Fatalf("the outputs before the newest: %s", b)
	}
	if resp, b := p1.get("/user/1/api/workshop/outputs?before=../x"); resp.StatusCode != 400 {
		t.Errorf("a bad cursor: %d %s", resp.StatusCode, b)
	}
	_, b = p1.get("/user/1/api/jobs?status=pending,in_progress")
	if json.Unmarshal(b, &list); len(list.Jobs) != 0 {
		t.Fatalf("nothing pending: %s", b)
	}
	for _, q := range []string{"status=done", "limit=0", "offset=-1", "sort_by=size", "sort_order=up"} {
		if resp, b := p1.get("/user/1/api/jobs?" + q); resp.StatusCode != 400 || !bytes.Contains(b, []byte(`"error"`)) {
			t.Errorf("?%s: %d %s", q, resp.StatusCode, b)
		}
	}
	var detail struct {
		item
		Outputs  map[string]map[string][]map[string]any `json:"outputs"`
		Workflow struct {
			Prompt map[string]any `json:"prompt"`
		} `json:"workflow"`
		ExecutionStatus map[string]any `json:"execution_status"`
	}
	_, b = p1.get("/user/1/api/jobs/" + first)
	if err := json.Unmarshal(b, &detail); err != nil || detail.Workflow.Prompt["2"] == nil ||
		len(detail.Outputs["2"]["images"]) != 1 || detail.ExecutionStatus["status_str"] != "success" {
		t.Fatalf("detail: %v %s", err, b)
	}
	if resp, _ := p2.get("/user/2/api/jobs/" + first); resp.StatusCode != 404 {
		t.Fatalf("seat 2 reads seat 1's job: %d", resp.StatusCode)
	}

	// Ranged /view, as a video element asks.
	img := detail.Outputs["2"]["images"][0]
	view := fmt.Sprintf("/user/1/api/view?filename=%s&subfolder=%s&type=output", img["filename"], img["subfolder"])
	resp, whole := p1.get(view)
	if resp.StatusCode != 200 || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("view: %d %v", resp.StatusCode, resp.Header)
	}
	resp, part := p1.get(view, "Range", "bytes=0-9")
	if resp.StatusCode != 206 || !bytes.Equal(part, whole[:10]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 0-9/%d", len(whole)) {
		t.Fatalf("ranged view: %d %q %v", resp.StatusCode, resp.Header.Get("Content-Range"), len(part))
	}
	resp, tail := p1.get(view, "Range", "bytes=-4")
	if resp.StatusCode != 206 || !bytes.Equal(tail, whole[len(whole)-4:]) {
		t.Fatalf("suffix range: %d %d", resp.StatusCode, len(tail))
	}
	if resp, _ := p1.get(view, "Range", fmt.Sprintf("bytes=%d-", len(whole))); resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(whole)) {
		t.Fatalf("range past the end: %d %v", resp.StatusCode, resp.Header)
	}

	// Root-absolute URLs: for the seated participant, their own surface;
	// for anyone else, the site's routes as before.
	resp, b = p1.get("/assets/images/favicon_progress_16x16/frame_0.png")
	if _, err := png.Decode(bytes.NewReader(b)); resp.StatusCode != 200 || err != nil {
		t.Fatalf("progress favicon: %d %v", resp.StatusCode, err)
	}
	if resp, b := p1.get(strings.TrimPrefix(view, "/user/1")); resp.StatusCode != 200 || !bytes.Equal(b, whole) {
		t.Fatalf("root /api/view: %d", resp.StatusCode)
	}
	if resp, _ := p2.get(strings.TrimPrefix(view, "/user/1")); resp.StatusCode != 404 {
		t.Fatalf("seat 2 at root /api/view of seat 1's file: %d", resp.StatusCode)
	}
	nobody := anonymous(t, s.base)
	if st, _ := nobody.do("GET", "/assets/images/favicon_progress_16x16/frame_0.png", nil, ""); st != 404 {
		t.Fatalf("root asset without a seat: %d", st)
	}
	if resp, _ := p1.get("/api/jobs"); resp.StatusCode != 401 {
		t.Fatalf("the admin API with a seat's cookie: %d", resp.StatusCode)
	}
	if st := s.a.do("GET", "/api/jobs?limit=1", nil, nil); st != 200 {
		t.Fatalf("the admin API: %d", st)
	}
	// The web app manifest is fetched without cookies.
	_, page := p1.get("/user/1/")
	manifest := ""
	if i := bytes.Index(page, []byte(`assets/manifest-`)); i >= 0 {
		manifest = string(page[i : i+bytes.IndexByte(page[i:], '"')])
	}
	if manifest == "" {
		t.Fatalf("no manifest in the page")
	}
	if st, _ := nobody.do("GET", "/user/1/"+manifest, nil, ""); st != 200 {
		t.Fatalf("manifest without a cookie: %d", st)
	}
	if st, _ := nobody.do("GET", "/user/1/", nil, ""); st != 401 {
		t.Fatalf("the page without a cookie: %d", st)
	}

	// The core template index lists the workshop workflows first, as the
	// Workshop pack, which serves them (and only there: the frontend
	// merges the packs with the index).
	_, b = p1.get("/user/1/templates/index.json")
	var index []struct {
		ModuleName string `json:"moduleName"`
		Templates  []struct{ Name string }
	}
	if err := json.Unmarshal(b, &index); err != nil || len(index) != 1 || index[0].ModuleName != "Workshop" ||
		len(index[0].Templates) != 1 || index[0].Templates[0].Name != "day-one" {
		t.Fatalf("core templates: %v %s", err, b)
	}
	if _, b = p1.get("/user/1/api/workflow_templates"); string(b) != "{}" {
		t.Fatalf("template packs: %s", b)
	}
	if resp, b := p1.get("/user/1/api/workflow_templates/Workshop/day-one.json"); resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"nodes"`)) {
		t.Fatalf("template: %d %s", resp.StatusCode, b)
	}
	if resp, _ := p1.get("/user/1/api/workflow_templates/Workshop/day-one.jpg"); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail: %d", resp.StatusCode)
	}
	if resp, _ := p1.get("/user/1/api/workflow_templates/Workshop/other.json"); resp.StatusCode != 404 {
		t.Fatalf("unknown template: %d", resp.StatusCode)
	}
	// Marked to open by default, it is in the participant's status.
	if st := s.a.do("PUT", "/api/workflows/day-one.json/default", nil, nil); st != 200 {
		t.Fatalf("mark default: %d", st)
	}
	if st := s.a.do("PUT", "/api/workflows/none.json/default", nil, nil); st != 404 {
		t.Fatalf("mark a missing workflow: %d", st)
	}
	var me struct {
		DefaultWorkflow string `json:"default_workflow"`
	}
	if _, b := p2.get("/user/2/api/workshop/me"); json.Unmarshal(b, &me) != nil || me.DefaultWorkflow != "day-one.json" {
		t.Fatalf("me: %s", b)
	}
	// Taken off the disk behind the server's back, it no longer opens.
	day1 := filepath.Join(s.data, "workflows", "day-one.json")
	kept, err := os.ReadFile(day1)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(day1)
	me.DefaultWorkflow = ""
	if _, b := p2.get("/user/2/api/workshop/me"); json.Unmarshal(b, &me) != nil || me.DefaultWorkflow != "" {
		t.Fatalf("me with the default workflow gone: %s", b)
	}
	if err := os.WriteFile(day1, kept, 0o644); err != nil {
		t.Fatal(err)
	}

	// Cancel routes: only the participant's own active jobs.
	s.a.do("POST", "/api/queue/pause", nil, nil)
	a, _ := number(p1, imageGraph("c1", 1))
	c, _ := number(p1, imageGraph("c2", 2))
	theirs, _ := number(p2, imageGraph("c3", 3))
	path := func(id string) string { return "/user/1/api/jobs/" + id + "/cancel" }
	if st, m := p1.postJSON(path(a), ""); st != 200 || m["cancelled"] != true {
		t.Fatalf("cancel: %d %v", st, m)
	}
	for _, id := range []string{a, first, theirs, "nope"} {
		if st, m := p1.postJSON(path(id), ""); st != 200 || m["cancelled"] != false {
			t.Fatalf("cancel %s again/finished/theirs/unknown: %d %v", id, st, m)
		}
	}
	if st, m := p1.postJSON("/user/1/api/jobs/cancel", `{"job_ids":["`+c+`","x"]}`); st != 400 || fmt.Sprint(m["invalid_ids"]) != "[x]" {
		t.Fatalf("batch with a malformed id: %d %v", st, m)
	}
	if st, m := p1.postJSON("/user/1/api/jobs/cancel", `{"job_ids":["`+c+`","`+theirs+`"]}`); st != 404 || fmt.Sprint(m["unknown_ids"]) != "["+theirs+"]" {
		t.Fatalf("batch with someone else's id: %d %v", st, m)
	}
	if st, _ := p1.postJSON("/user/1/api/jobs/cancel", `{}`); st != 400 {
		t.Fatalf("batch without ids: %d", st)
	}
	if s.a.job(c).Status != "pending" || s.a.job(theirs).Status != "pending" {
		t.Fatal("a refused batch cancelled something")
	}
	if st, m := p1.postJSON("/user/1/api/jobs/cancel", `{"job_ids":["`+c+`","`+first+`"]}`); st != 200 || fmt.Sprint(m["cancelled"]) != "["+c+"]" {
		t.Fatalf("batch: %d %v", st, m)
	}
	if s.a.job(c).Status != "cancelled" || s.a.job(theirs).Status != "pending" {
		t.Fatal("batch cancel")
	}
	// Taken out of the queue before they ran, they are gone from the list
	// (as from ComfyUI's), and still answer by id.
	_, b = p1.get("/user/1/api/jobs?status=completed,failed,cancelled")
	if json.Unmarshal(b, &list); len(list.Jobs) != 2 || list.Jobs[0].ID == c || list.Jobs[0].ID == a {
		t.Fatalf("finished jobs after cancels: %s", b)
	}
	if _, b := p1.get("/user/1/api/jobs/" + c); !bytes.Contains(b, []byte(`"status":"cancelled"`)) {
		t.Fatalf("a cancelled job by id: %s", b)
	}

	// An announcement reaches an open socket (no poll needed).
	u := "ws" + strings.TrimPrefix(s.base, "http") + "/user/1/ws?clientId=ann"
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {p1.cookie()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	for ws.ReadJSON(&m) == nil && m.Type != "workshop_status" {
	}
	s.a.do("POST", "/api/announcements", map[string]any{"text": "Break at eleven"}, nil)
	for {
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("no announcement on the socket: %v", err)
		}
		if m.Type == "workshop_announcement" {
			if m.Data["text"] != "Break at eleven" {
				t.Fatalf("announcement %v", m.Data)
			}
			break
		}
	}
}

// The demo shows participants the real ComfyUI frontend when one is on the
// machine (here the kit's, by --front-end-root), served by the simulators
// through the real mirror path; without one it says how to get it.
func TestDemoShowsRealFrontend(t *testing.T) {
	fe := realcomfy.KitFrontend()
	if fe == "" {
		t.Skip("no built ComfyUI frontend in the kit (../shared/comfyui/frontend-*)")
	}
	// Without python3 on PATH nothing is found.
	plain := startProcEnv(t, []string{"PATH=" + t.TempDir()}, "workshop", "demo", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--sims", "1")
	plain.waitLine(`Their page:\s+the simulator's own page. For the real ComfyUI frontend participants get: pip install comfyui-frontend-package`, 30*time.Second)
	plain.kill()
	// The installed package, found as ComfyUI finds it (CI installs it
	// with pip --target, so it is put on python3's path here).
	if latest := realcomfy.LatestFrontend(); strings.HasSuffix(latest, filepath.Join("comfyui_frontend_package", "static")) {
		pkg := startProcEnv(t, []string{"PYTHONPATH=" + filepath.Dir(filepath.Dir(latest))}, "workshop", "demo", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--sims", "1")
		pkg.waitLine(`Their page:\s+the real ComfyUI frontend, \S*comfyui_frontend_package/static \(the comfyui-frontend-package of python3\)`, 30*time.Second)
		pkg.kill()
	}

	d := startProc(t, "workshop", "demo", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--sims", "1", "--front-end-root", fe)
	d.waitLine(`Their page:\s+the real ComfyUI frontend, `+regexp.QuoteMeta(fe), 30*time.Second)
	join := d.waitLine(`Participant:\s+(http://\S+/join/\S+)`, 30*time.Second)[1]
	ctx := browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(join),
		// The Vue frontend's Run button, and the workshop's badge in it.
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="queue-button"]`)),
		browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "GPUs ready"),
	)
	if err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 500)`))
		t.Fatalf("the demo's participant page: %v\n%s", err, page)
	}
}
