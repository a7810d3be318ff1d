package integration

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/comfy-workshop/workshop/internal/browsertest"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// The participant's day in real Chromium, through /user/1/ of the real
// server, a real gpu-agent and tunnel, and real ComfyUI serving the
// frontend participants get: 0.3.64 with the kit's v1.44.17 and with the
// newest published comfyui-frontend-package, and 2024-08-15 with its own
// legacy frontend. One ComfyUI per frontend serves every step.

// realStack is the server and a GPU agent in front of one real ComfyUI.
type realStack struct {
	*stack
	comfy *realcomfy.Instance
}

func startRealStack(t *testing.T, v realcomfy.Version, frontEnd string, extra ...string) *realStack {
	t.Helper()
	in := realcomfy.Start(t, v, realcomfy.Options{FrontEndRoot: frontEnd})
	data := t.TempDir()
	srv := startGPUServer(t, data, append([]string{"--seats", "3"}, extra...)...)
	st := &stack{server: srv, a: admin{t, srv.base}, ev: watch(t, srv.base), data: data}
	st.agent = startAgent(t, srv.base, "gpu-real", &sim{base: in.URL})
	st.ev.waitWorkers(st.a, 1, 60*time.Second)
	return &realStack{stack: st, comfy: in}
}

// uiNode is one node of a workflow in the UI's format.
type uiNode struct {
	id      int
	typ     string
	in      []string // input slot types, each linked from the node before
	out     []string // output slot types
	widgets []any
}

// uiWorkflow lays out a chain of nodes, each fed by the one before, in
// the format the frontend saves (nodes, links, widgets_values).
func uiWorkflow(nodes ...uiNode) map[string]any {
	var ns, links []any
	link := 0
	for i, n := range nodes {
		node := map[string]any{"id": n.id, "type": n.typ, "pos": []int{100 + 330*i, 100}, "size": []int{300, 200},
			"flags": map[string]any{}, "order": i, "mode": 0, "properties": map[string]any{}, "widgets_values": n.widgets}
		var ins, outs []any
		for slot, typ := range n.in {
			prev := nodes[i-1]
			link++
			links = append(links, []any{link, prev.id, 0, n.id, slot, typ})
			ins = append(ins, map[string]any{"name": strings.ToLower(typ), "type": typ, "link": link})
		}
		for slot, typ := range n.out {
			var to []int
			if i+1 < len(nodes) && len(nodes[i+1].in) > 0 {
				to = []int{link + 1}
			}
			outs = append(outs, map[string]any{"name": typ, "type": typ, "links": to, "slot_index": slot})
		}
		if n.typ == "SaveImage" || n.typ == "SaveAnimatedWEBP" {
			ins[0].(map[string]any)["name"] = "images"
		}
		if n.typ == "CreateVideo" {
			ins[0].(map[string]any)["name"] = "images"
		}
		if n.typ == "SaveVideo" {
			ins[0].(map[string]any)["name"] = "video"
		}
		if ins != nil {
			node["inputs"] = ins
		}
		if outs != nil {
			node["outputs"] = outs
		}
		ns = append(ns, node)
	}
	last := nodes[len(nodes)-1]
	return map[string]any{"last_node_id": last.id, "last_link_id": link, "nodes": ns, "links": links,
		"groups": []any{}, "config": map[string]any{}, "extra": map[string]any{}, "version": 0.4}
}

// The day's workflows, none of which needs model weights.
func imageWorkflow() map[string]any {
	return uiWorkflow(
		uiNode{id: 1, typ: "EmptyImage", out: []string{"IMAGE"}, widgets: []any{64, 64, 1, 0}},
		uiNode{id: 2, typ: "SaveImage", in: []string{"IMAGE"}, widgets: []any{"day"}},
	)
}

// videoWorkflow makes a real 4-second H.264 video on the CPU: the LTX-2
// workflows end in the same SaveVideo node, which real ComfyUI without
// weights cannot reach.
func videoWorkflow() map[string]any {
	return uiWorkflow(
		uiNode{id: 1, typ: "EmptyImage", out: []string{"IMAGE"}, widgets: []any{128, 128, 48, 0}},
		uiNode{id: 2, typ: "CreateVideo", in: []string{"IMAGE"}, out: []string{"VIDEO"}, widgets: []any{12}},
		uiNode{id: 3, typ: "SaveVideo", in: []string{"VIDEO"}, widgets: []any{"video/day", "mp4", "h264"}},
	)
}

// day drives one participant's page.
type day struct {
	t       *testing.T
	s       *realStack
	ctx     context.Context
	reqs    *browsertest.Requests
	dialogs *browsertest.Dialogs
	name    string // the frontend, for screenshots
	// expected are failures the day causes on purpose (path substrings).
	expected []string
}

func (d *day) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	d.t.Helper()
	if err := chromedp.Do(d.ctx, actions...); err != nil {
		page, _ := chromedp.Run(d.ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 1500)`))
		var last []string
		for _, r := range d.reqs.All() {
			last = append(last, r.String())
		}
		if len(last) > 12 {
			last = last[len(last)-12:]
		}
		state, _ := chromedp.Run(d.ctx, chromedp.Evaluate[string](`JSON.stringify({
			workflow: window.app?.extensionManager?.workflow?.activeWorkflow?.path,
			tabs: [...document.querySelectorAll('.workflow-tabs *, [role=tablist] *')].map(e => e.textContent.trim()).filter(Boolean).slice(0, 12),
			toasts: [...document.querySelectorAll('.p-toast-message, [data-toast-kind], .cw-toast')].map(e => e.textContent),
		})`))
		d.t.Fatalf("%s: %v\nstate: %s\nlast requests:\n%s\npage: %s", what, err, state, strings.Join(last, "\n"), page)
	}
}

// poll waits until expr holds (60 s at most: a loaded CI machine).
func (d *day) poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))
}

func eval[T any](d *day, expr string) T {
	d.t.Helper()
	v, err := chromedp.Run(d.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		d.t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// run evaluates a page script and waits for its promise.
func (d *day) run(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](expr, chromedp.EvalAwaitPromise)
}

// shot keeps a screenshot in docs/screenshots with SCREENSHOTS=1.
func (d *day) shot(name string) {
	if os.Getenv("SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(d.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		d.t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.MkdirAll("../docs/screenshots", 0o755)
	os.WriteFile(filepath.Join("../docs/screenshots", "participant-"+d.name+"-"+name+".png"), png, 0o644)
}

// checkFailures fails the test on any request of the page that failed,
// unless real ComfyUI fails it too: each failed GET of the participant's
// surface is asked again of the ComfyUI process itself, without the
// /user/1 prefix. Routes whose answers are the workshop's own state (jobs,
// history, outputs, uploads, its templates) are never excused that way: the
// real ComfyUI's are of other jobs, or it has no such route. Requests to
// other hosts (the frontend asks comfy.org for release notes) are not the
// workshop's. The excused ones are logged.
func (d *day) checkFailures() {
	d.t.Helper()
	origin := d.s.base
	var bad, excused []string
	for _, r := range d.reqs.Failed() {
		rest, ours := strings.CutPrefix(r.URL, origin)
		if !ours || slices.ContainsFunc(d.expected, func(e string) bool { return strings.Contains(rest, e) }) {
			continue
		}
		real := 0
		if r.Method == "GET" && !workshopState(rest) {
			if resp, err := http.Get(d.s.comfy.URL + strings.TrimPrefix(rest, "/user/1")); err == nil {
				real = resp.StatusCode
				resp.Body.Close()
			}
		}
		if real >= 400 {
			excused = append(excused, fmt.Sprintf("%s (real ComfyUI: %d)", r, real))
			continue
		}
		bad = append(bad, fmt.Sprintf("%s (real ComfyUI: %d)", r, real))
	}
	if len(excused) > 0 {
		d.t.Logf("requests that real ComfyUI fails too:\n%s", strings.Join(excused, "\n"))
	}
	if len(bad) > 0 {
		d.t.Errorf("requests that failed on the workshop but not on real ComfyUI:\n%s", strings.Join(bad, "\n"))
	}
}

// workshopState reports whether a path of the participant's surface is
// answered from the workshop's own state rather than passed on.
func workshopState(rest string) bool {
	p, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(rest, "/user/1"), "/api"), "?")
	for _, own := range []string{"/view", "/jobs", "/history", "/prompt", "/queue", "/interrupt", "/upload/", "/workshop/", "/workflow_templates", "/templates/index."} {
		if strings.HasPrefix(p, own) {
			return true
		}
	}
	return false
}

// startDay publishes the day's workflows, opens Chromium and joins seat 1.
func startDay(t *testing.T, v realcomfy.Version, frontEnd, name string, flows map[string]map[string]any) *day {
	s := startRealStack(t, v, frontEnd)
	for file, wf := range flows {
		if st := s.a.do("PUT", "/api/workflows/"+file, wf, nil); st != 200 {
			t.Fatalf("publish %s: %d", file, st)
		}
	}
	reqs := browsertest.NewRequests()
	ctx := browsertest.Start(t, 1400, 900, 8*time.Minute, reqs.Listener())
	d := &day{t: t, s: s, ctx: ctx, reqs: reqs, name: name}
	if err := chromedp.Do(ctx); err != nil { // start the tab, then answer its dialogs
		t.Fatal(err)
	}
	d.dialogs = browsertest.AcceptDialogs(ctx)
	t.Cleanup(func() {
		if !t.Failed() {
			d.checkFailures()
		}
	})
	return d
}

func TestParticipantDay(t *testing.T) {
	t.Run("legacy-2024-08-15", func(t *testing.T) {
		legacyDay(t, realcomfy.Get(t, "2024-08-15"))
	})
	v := realcomfy.Get(t, "0.3.64")
	t.Run("frontend-1.44.17", func(t *testing.T) {
		fe := realcomfy.KitFrontend()
		if fe == "" {
			t.Skip("the kit has no built frontend (../shared/comfyui/frontend-*)")
		}
		currentFrontendDay(t, v, fe, "1.44.17")
	})
	t.Run("frontend-latest", func(t *testing.T) {
		fe := realcomfy.LatestFrontend()
		if fe == "" {
			t.Skip("comfyui-frontend-package is not installed (.ci/run installs it into .cache/frontend; or set COMFYUI_FRONTEND_LATEST)")
		}
		currentFrontendDay(t, v, fe, "latest")
	})
}

// currentFrontendDay is the day on the Vue frontend.
func currentFrontendDay(t *testing.T, v realcomfy.Version, fe, name string) {
	d := startDay(t, v, fe, name, map[string]map[string]any{"day-image.json": imageWorkflow(), "day-video.json": videoWorkflow()})
	s := d.s
	// The instructor wants newcomers to start on the image workflow.
	if st := s.a.do("PUT", "/api/workflows/day-image.json/default", nil, nil); st != 200 {
		t.Fatalf("mark the default workflow: %d", st)
	}
	// Boot: the first-run Templates dialog shows the day's workflows as it
	// opens, each once, and so do its "All Templates" and "Getting
	// Started" (the workshop's category, which v1.44.17 opens on for a
	// user it takes as new). v1.44.17 used to open on "No templates
	// found", with the workshop's pack only under Extensions.
	d.do("boot",
		chromedp.Navigate(s.base+"/join/"+s.seatCode(1)),
		d.poll(`!!document.querySelector('[data-testid="queue-button"]') && !!window.app?.graph`),
		d.poll(tilesNamed("day-image")+` === 1 && `+tilesNamed("day-video")+` === 1`),
		d.poll(templateThumbnails(2)),
	)
	d.shot("templates")
	if txt := eval[string](d, `[...document.querySelectorAll('[role=dialog]')].map(e => e.textContent).join(" ")`); strings.Contains(txt, "No templates found") {
		t.Errorf("the first-run dialog says: %.300s", txt)
	}
	for _, view := range []string{"Getting Started", "All Templates"} {
		d.do(view,
			d.run(clickText(`[role=dialog] *`, view, false)),
			d.poll(tilesNamed("day-image")+` === 1 && `+tilesNamed("day-video")+` === 1`),
		)
	}
	if loc := eval[string](d, `location.pathname`); loc != "/user/1/" {
		t.Fatalf("landed on %s", loc)
	}
	d.do("the default workflow opened behind the dialog",
		d.poll(`app.extensionManager.workflow.openWorkflows.some(w => w.path === "workflows/workshop/day-image.json")`))
	if open := eval[[]string](d, `app.extensionManager.workflow.openWorkflows.map(w => w.path)`); len(slices.DeleteFunc(open, func(p string) bool { return !strings.Contains(p, "day-image") })) != 1 {
		t.Errorf("the default workflow opened more than once: %q", open)
	}

	// A workshop workflow opens from the dialog; Run runs it (a new colour
	// each time, so real ComfyUI does not answer from its cache); the image
	// shows in the node.
	d.do("open a template",
		d.run(clickText(`[role=dialog] *`, "day-image", false)),
		d.poll(`!document.querySelector('[role=dialog]') && app.graph.nodes.some(n => n.type === "SaveImage")`),
	)
	d.runWorkflow(0x3366ff)
	d.do("the image in the node", d.poll(nodeImageLoaded("SaveImage")))
	d.shot("image")

	// Someone else's job: it must show nowhere on this page.
	p2 := s.join(2)
	other := p2.prompt(imageGraph("other", 0x00ff00))
	s.ev.waitDone(60*time.Second, other)

	// The Job Queue panel and the Assets panel list this participant's
	// job with its thumbnail, and only theirs.
	d.do("the job queue panel",
		d.run(clickLabel("Expand job queue")),
		d.poll(thumbnailShown(`body`, "day_")),
	)
	d.shot("job-queue")
	d.do("the assets panel",
		d.run(clickLabel("Assets (a)")),
		d.poll(thumbnailShown(`.side-bar-panel`, "day_")),
	)
	d.shot("assets")
	// The workshop's own panel sits among the sidebar tabs, in their style.
	d.do("the workshop panel",
		d.run(clickLabel("Workshop: my outputs")),
		d.poll(thumbnailShown(`.cw-panel`, "day_")),
	)
	d.shot("workshop-panel")
	if n := eval[int](d, `[...document.querySelectorAll("img")].filter(i => i.src.includes("other_")).length + document.body.innerHTML.split("`+other+`").length - 1`); n != 0 {
		t.Errorf("seat 2's job shows on seat 1's page (%d places)", n)
	}

	// Cancel from the queue panel: with the queue paused the job waits,
	// and the panel's cancel button takes it out.
	s.a.do("POST", "/api/queue/pause", nil, nil)
	d.runWorkflow(0x993300)
	d.do("a waiting job in the panel", d.poll(`document.body.textContent.includes("1 active")`))
	d.shot("job-waiting")
	pending := s.a.pendingOf("user001")
	d.do("cancel it from the panel",
		// Its actions show while the pointer is over it.
		d.run(fmt.Sprintf(`document.querySelector('[data-job-id=%q]').dispatchEvent(new MouseEvent("mouseenter"))`, pending)),
		d.poll(fmt.Sprintf(`!!document.querySelector('[data-job-id=%q] button[aria-label=Cancel]')`, pending)),
		d.run(fmt.Sprintf(`document.querySelector('[data-job-id=%q] button[aria-label=Cancel]').click()`, pending)),
		d.poll(`document.body.textContent.includes("0 active")`),
	)
	s.ev.waitDone(30*time.Second, pending)
	if st := s.a.job(pending).Status; st != "cancelled" {
		t.Fatalf("after the panel's cancel the job is %s", st)
	}
	s.a.do("POST", "/api/queue/resume", nil, nil)

	// Save (Ctrl+S asks a name for a new workflow), reload, open it again
	// from the workflows sidebar.
	// (Ctrl+S runs the Comfy.SaveWorkflow command; run it directly, as a
	// key press depends on where the focus is.)
	d.do("save",
		d.run(saveWorkflow),
		d.poll(`!!document.querySelector('[role=dialog] input')`),
		d.run(`(() => { const i = document.querySelector('[role=dialog] input'); i.value = "my-first"; i.dispatchEvent(new Event("input", {bubbles: true})); })()`),
		chromedp.SendKeys(chromedp.CSS(`[role=dialog] input`), "\r"),
		d.poll(`[...document.querySelectorAll('.workflow-tabs *, [role=tablist] *')].some(e => e.textContent.trim() === "my-first")`),
	)
	d.do("reload and open it",
		d.reload(),
		d.run(clickLabel("Workflows (w)")),
		d.poll(`[...document.querySelectorAll('.side-bar-panel *')].some(e => e.textContent.trim() === "my-first.json" || e.textContent.trim() === "my-first")`),
		d.run(clickText(`.side-bar-panel *`, "my-first", true)),
		d.run(clickText(`.side-bar-panel *`, "my-first.json", true)),
		d.poll(activeWorkflow("workflows/my-first.json")),
	)
	d.shot("workflows")

	// A workshop workflow opens from the workshop folder, and saving over
	// it is refused with a message that says why.
	d.expected = append(d.expected, "/userdata/workflows%2Fworkshop%2Fday-image.json")
	d.do("open a workshop workflow",
		d.run(clickText(`.side-bar-panel *`, "workshop", false)),
		d.poll(`[...document.querySelectorAll('.side-bar-panel *')].some(e => e.textContent.trim() === "day-image")`),
		d.run(clickText(`.side-bar-panel *`, "day-image", false)),
		d.poll(activeWorkflow("workflows/workshop/day-image.json")),
	)
	d.runWorkflow(0x00aa88) // a change, so there is something to save
	d.do("saving over it is refused",
		d.run(saveWorkflow),
		d.poll(toastSays("Workshop workflows are read-only")),
	)
	d.shot("read-only")
	if _, err := os.Stat(filepath.Join(s.data, "userdata", "user001", "workflows", "workshop")); err == nil {
		t.Error("a workshop folder appeared among the participant's own files")
	}

	// A setting persists and stays with the seat: hiding the minimap
	// (its own button) survives a reload; seat 2 keeps theirs.
	d.do("hide the minimap",
		d.run(clickLabel("Hide Minimap (ALT + SHIFT + M)")),
		d.poll(`!document.querySelector('[data-testid="minimap-container"]')`),
		d.reload(),
		d.poll(`app.extensionManager.setting.get("Comfy.Minimap.Visible") === false && !document.querySelector('[data-testid="minimap-container"]')`),
		// and the open workflows are back in their tabs
		d.poll(`["my-first", "day-image"].every(t => [...document.querySelectorAll('.workflow-tabs *, [role=tablist] *')].some(e => e.textContent.trim() === t))`),
	)
	_, mine := s.join(1).get("/user/1/api/settings")
	_, theirs := p2.get("/user/2/api/settings")
	if !strings.Contains(string(mine), `"Comfy.Minimap.Visible":false`) || strings.Contains(string(theirs), "Comfy.Minimap.Visible") {
		t.Errorf("settings: seat 1 %s, seat 2 %s", mine, theirs)
	}

	d.maskEdit()

	// The video workflow (the LTX-2 workflows' SaveVideo on a model-free
	// graph) opens from the Templates dialog and runs; its video plays in
	// the node and seeks, with ranged requests.
	d.do("open the video workflow",
		d.run(`void app.extensionManager.command.execute("Comfy.BrowseTemplates")`),
		d.poll(`[...document.querySelectorAll('[role=dialog]')].some(e => e.textContent.includes("Workshop") || e.textContent.includes("day-video"))`),
		d.run(clickText(`[role=dialog] *`, "Workshop", true)),
		d.poll(`[...document.querySelectorAll('[role=dialog]')].some(e => e.textContent.includes("day-video"))`),
		d.run(clickText(`[role=dialog] *`, "day-video", false)),
		d.poll(`!document.querySelector('[role=dialog]') && app.graph.nodes.some(n => n.type === "SaveVideo")`),
	)
	d.runWorkflow(0xff3300)
	d.do("the video plays in the node",
		d.poll(`(() => { const v = `+nodeVideo+`; return !!v && v.readyState >= 1 && v.duration > 3; })()`),
		d.run(`new Promise((ok, fail) => {
			const v = `+nodeVideo+`;
			v.muted = true;
			v.play().then(() => { v.pause(); v.addEventListener("seeked", () => ok(), {once: true}); v.currentTime = 2.5; }, fail);
		})`),
		d.poll(`(() => { const v = `+nodeVideo+`; return Math.abs(v.currentTime - 2.5) < 0.2 && v.readyState >= 2; })()`),
	)
	d.shot("video")
	if p := eval[float64](d, nodeVideo+`.currentTime`); p < 2 {
		t.Errorf("the node's video is at %.1f s after seeking to 2.5 s", p)
	}
	ranged := false
	for _, r := range d.reqs.All() {
		ranged = ranged || (r.Status == 206 && strings.Contains(r.URL, "/user/1/api/view") && strings.Contains(r.URL, ".mp4"))
	}
	if !ranged {
		t.Error("the video was not fetched in ranges (no 206 from /view)")
	}

	d.announcement()
}

// announcement: the instructor's message pops up on the open page.
func (d *day) announcement() {
	d.t.Helper()
	d.s.a.do("POST", "/api/announcements", map[string]any{"text": "Coffee break until 10:45"}, nil)
	d.do("the announcement pops up",
		d.poll(toastSays("Coffee break until 10:45")))
	d.shot("announcement")
}

// maskEdit loads a picture into a Load Image node (uploaded the way its
// upload button does), paints on it in the mask editor and saves: the
// mask goes to the participant's /upload/mask and the node shows the
// result.
func (d *day) maskEdit() {
	d.t.Helper()
	d.loadImageNode(`app.extensionManager.command.execute("Comfy.NewBlankWorkflow")`)
	before := len(d.reqs.All())
	// Its canvases are the picture, the paint and the mask layers, sized
	// to the picture once it has loaded into them.
	d.do("open the mask editor",
		d.run(`app.extensionManager.command.execute("Comfy.MaskEditor.OpenMaskEditor")`),
		d.poll(`(() => { const cs = document.querySelectorAll('#maskEditorCanvasContainer canvas');
			return cs.length >= 3 && cs[0].width === 64 && cs[2].width === 64 && document.querySelector('#maskEditorCanvasContainer').getBoundingClientRect().width > 0; })()`),
	)
	// The edit is the editor's Invert (the whole picture masked): in
	// headless Chromium without a GPU, pointer strokes reach the editor
	// (its brush cursor follows them) but leave no mask pixels. Saved only
	// once the mask layer shows it.
	d.do("invert the mask",
		d.run(clickText(`[role=dialog] button`, "Invert", false)),
		d.poll(`(() => { const c = document.querySelectorAll('#maskEditorCanvasContainer canvas')[2];
			const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
			return px.some((v, i) => i % 4 === 3 && v > 0); })()`),
	)
	d.shot("mask-editor")
	d.do("save the mask",
		d.run(clickText(`[data-testid="mask-editor-root"] button, [role=dialog] button`, "Save", false)),
		d.poll(`!document.querySelector('[data-testid="mask-editor-root"]')`),
		d.poll(`(() => { const n = app.graph.nodes.find(n => n.type === "LoadImage"); return String(n.widgets.find(w => w.name === "image").value).includes("clipspace"); })()`),
		d.poll(nodeImageLoaded("LoadImage")),
	)
	d.checkMasked(before)
}

// checkMasked checks what a mask editor's save did since request number
// before: it uploaded to the participant's own surface, and the Load
// Image node now loads the picture with the edited mask (ComfyUI keeps the
// mask in the alpha channel), from their uploads.
func (d *day) checkMasked(before int) {
	d.t.Helper()
	// (v1.4x and the legacy editor send the mask to /upload/mask; newer
	// frontends composite it themselves and use /upload/image.)
	uploads := 0
	for _, r := range d.reqs.All()[before:] {
		rest, ours := strings.CutPrefix(r.URL, d.s.base+"/user/1/")
		if ours && r.Method == "POST" && r.Status == 200 && slices.Contains([]string{"upload/mask", "api/upload/mask", "api/upload/image"}, rest) {
			uploads++
		}
	}
	if uploads == 0 {
		d.t.Error("the mask editor's save uploaded nothing to the participant's surface")
	}
	ref := eval[string](d, `(() => {
		const v = String((app.graph.nodes ?? app.graph._nodes).find(n => n.type === "LoadImage").widgets.find(w => w.name === "image").value).replace(/ \[input\]$/, "");
		const i = v.lastIndexOf("/");
		return "?" + new URLSearchParams({filename: v.slice(i + 1), subfolder: i < 0 ? "" : v.slice(0, i), type: "input"});
	})()`)
	resp, b := d.s.join(1).get("/user/1/api/view" + ref)
	img, err := png.Decode(bytes.NewReader(b))
	if resp.StatusCode != 200 || err != nil {
		d.t.Fatalf("the masked picture %s: %d %v", ref, resp.StatusCode, err)
	}
	masked := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			if _, _, _, a := img.At(x, y).RGBA(); a < 0xffff {
				masked++
			}
		}
	}
	if masked == 0 {
		d.t.Error("the stored picture has no masked pixel: the edit did not reach the mask")
	}
}

// loadImageNode empties the graph (with clear), puts a Load Image node on
// it with a 64x64 picture uploaded as its upload button does, and waits
// for the picture to show.
func (d *day) loadImageNode(clear string) {
	d.t.Helper()
	// The new node, before its picture is set, asks /view for "undefined"
	// (its empty choice), which real ComfyUI answers 404 as well.
	d.expected = append(d.expected, "filename=undefined")
	d.do("a picture in a Load Image node",
		d.run(clear),
		d.poll(`(app.graph.nodes ?? app.graph._nodes).length === 0`),
		d.run(`(async () => {
			const node = LiteGraph.createNode("LoadImage");
			node.pos = [200, 150];
			app.graph.add(node);
			const c = document.createElement("canvas");
			c.width = c.height = 64;
			const g = c.getContext("2d");
			g.fillStyle = "#c08040"; g.fillRect(0, 0, 64, 64);
			const blob = await new Promise(r => c.toBlob(r, "image/png"));
			const body = new FormData();
			body.append("image", new File([blob], "portrait.png", {type: "image/png"}));
			const res = await fetch(location.pathname + "api/upload/image", {method: "POST", body});
			if (!res.ok) throw new Error("upload: " + res.status);
			const {name} = await res.json();
			const w = node.widgets.find(w => w.name === "image");
			w.value = name;
			w.callback?.(name);
			app.canvas.selectNode(node);
		})()`),
		d.poll(nodeImageLoaded("LoadImage")),
	)
}

// legacyMaskEdit paints on a Load Image node's picture in the legacy
// frontend's mask editor, opened from the node's clipspace menu ("Open in
// MaskEditor"), and saves it to the node.
func (d *day) legacyMaskEdit() {
	d.t.Helper()
	d.loadImageNode(`app.graph.clear()`)
	before := len(d.reqs.All())
	// Right-click on the node's body, where it is on the screen.
	node := eval[[]float64](d, `(() => {
		const n = app.graph._nodes.find(n => n.type === "LoadImage");
		const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + 30, n.pos[1] + 15]);
		const r = app.canvas.canvas.getBoundingClientRect();
		return [r.left + x, r.top + y];
	})()`)
	d.do("open the mask editor from the node's menu",
		chromedp.MouseClickXY(node[0], node[1], chromedp.ButtonRight),
		d.poll(`[...document.querySelectorAll(".litecontextmenu .litemenu-entry")].some(e => e.textContent.trim() === "Open in MaskEditor")`),
		d.run(clickText(`.litecontextmenu .litemenu-entry`, "Open in MaskEditor", false)),
		// Ready once the picture is in its canvases.
		d.poll(`(() => { const m = document.querySelector("#maskCanvas"), i = document.querySelector("#imageCanvas");
			return !!m && !!i && m.offsetParent !== null && m.width === 64 && i.width === 64 && m.getBoundingClientRect().width > 0; })()`),
	)
	// A stroke of the brush, with the mouse: a press in the middle of the
	// picture.
	at := eval[[]float64](d, `(() => { const r = document.querySelector("#maskCanvas").getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()`)
	d.do("paint on the mask",
		chromedp.MouseClickXY(at[0], at[1]),
		d.poll(`(() => { const c = document.querySelector("#maskCanvas");
			const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
			return px.some((v, i) => i % 4 === 3 && v > 0); })()`),
	)
	d.shot("mask-editor")
	d.do("save it to the node",
		d.run(clickText(`.comfy-modal button`, "Save to node", false)),
		d.poll(`document.querySelector("#maskCanvas").offsetParent === null`),
		d.poll(`String(app.graph._nodes.find(n => n.type === "LoadImage").widgets.find(w => w.name === "image").value).includes("clipspace")`),
		d.poll(nodeImageLoaded("LoadImage")),
	)
	d.checkMasked(before)
}

// reload reloads the page (confirming "Leave site?") and waits for the
// new page's app and its sidebar.
func (d *day) reload() chromedp.Action[chromedp.Void] {
	return d.reloadUntil(`!!window.app?.graph && [...document.querySelectorAll("button")].some(b => b.getAttribute("aria-label") === "Workflows (w)")`)
}

// reloadUntil reloads and waits until ready holds on the new page.
func (d *day) reloadUntil(ready string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := d.run(`window.__old = true`)(ctx, t); err != nil {
			return err
		}
		chromedp.Reload()(ctx, t)
		// The page goes away under a running poll: ask again until the new
		// one is up.
		deadline := time.Now().Add(60 * time.Second)
		for {
			ok, err := chromedp.Evaluate[bool](`!window.__old && (`+ready+`)`)(ctx, t)
			if err == nil && ok {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the page did not come back within 60 s (%v)", err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// pendingOf waits for user's one pending job (the page's POST may still
// be on its way).
func (a admin) pendingOf(user string) string {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list struct{ Jobs []job }
		a.do("GET", "/api/jobs?status=pending&user_id="+user, nil, &list)
		if len(list.Jobs) == 1 {
			return list.Jobs[0].ID
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%s has %d pending jobs", user, len(list.Jobs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tilesNamed counts the Templates dialog's tiles titled name.
func tilesNamed(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[role=dialog] *')].filter(e => e.textContent.trim() === %[1]q && ![...e.children].some(c => c.textContent.trim() === %[1]q)).length`, name)
}

// templateThumbnails holds when the Templates dialog shows n thumbnails,
// loaded: from the workshop pack's URL (v1.44), or fetched from it into a
// blob (newer frontends, a moment after the tiles).
func templateThumbnails(n int) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[role=dialog] img')].filter(i => i.complete && i.naturalWidth > 0 &&
		(i.src.startsWith("blob:") || i.src.includes("/user/1/api/workflow_templates/Workshop/"))).length >= %d`, n)
}

// clickLabel clicks the button with this aria-label (or, failing that,
// with the label in its text, as for screen-reader-only words).
func clickLabel(label string) string {
	return fmt.Sprintf(`(() => {
		const bs = [...document.querySelectorAll("button")];
		const b = bs.find(b => b.getAttribute("aria-label") === %[1]q) ?? bs.find(b => b.textContent.includes(%[1]q));
		if (!b) throw new Error("no button labelled " + %[1]q);
		b.click();
	})()`, label)
}

// thumbnailShown holds when an image under sel from the participant's
// /view, whose name has prefix, has loaded.
func thumbnailShown(sel, prefix string) string {
	return fmt.Sprintf(`[...document.querySelectorAll(%q + " img")].some(i => i.complete && i.naturalWidth > 0 &&
		i.src.includes("/user/1/") && i.src.includes("view") && decodeURIComponent(i.src).includes(%q))`, sel, prefix)
}

// nodeVideo is the video shown in the Save Video node: the largest one
// from the participant's /view (the queue panel shows a small one too).
const nodeVideo = `[...document.querySelectorAll('video[src*="/user/1/api/view"]')].sort((a, b) => b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight)[0]`

// toastSays holds while a toast (PrimeVue's in v1.4x, reka's in newer
// frontends, the extension's own on the legacy one) shows text.
func toastSays(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('.p-toast-message, [data-toast-kind], [role=status], .cw-toast')].some(e => e.textContent.includes(%q))`, text)
}

// activeWorkflow holds once the workflow at path is the open one, with
// its graph on the canvas.
func activeWorkflow(path string) string {
	return fmt.Sprintf(`app.extensionManager.workflow.activeWorkflow?.path === %q && app.graph.nodes.length > 0`, path)
}

// saveWorkflow is what Ctrl+S does. Not awaited: a new workflow's save
// waits for the name asked in a dialog.
const saveWorkflow = `void app.extensionManager.command.execute("Comfy.SaveWorkflow")`

// clickText clicks the innermost element matching sel whose text is text;
// with optional, finding none is no error.
func clickText(sel, text string, optional bool) string {
	return fmt.Sprintf(`(() => {
		const all = [...document.querySelectorAll(%q)].filter(e => e.textContent.trim() === %q);
		const e = all.find(e => ![...e.children].some(c => c.textContent.trim() === %q)) ?? all[0];
		if (!e) { if (%v) return; throw new Error("nothing to click with the text " + %q); }
		e.click();
	})()`, sel, text, text, optional, text)
}

// nodeImageLoaded holds when the first node of type shows a loaded image
// from the participant's /view.
func nodeImageLoaded(typ string) string {
	return fmt.Sprintf(`(() => {
		const n = (app.graph.nodes ?? app.graph._nodes).find(n => n.type === %q); // _nodes: LiteGraph of 2024
		const img = n?.imgs?.[0];
		return !!img && img.complete && img.naturalWidth > 0 && /\/user\/1\/(api\/)?view\?/.test(img.src);
	})()`, typ)
}

// runWorkflow sets the colour of the open workflow's EmptyImage, so the
// graph is new to ComfyUI, and presses Run.
func (d *day) runWorkflow(color int) {
	d.t.Helper()
	d.do("press Run",
		d.run(fmt.Sprintf(`(() => {
			const w = app.graph.nodes.find(n => n.type === "EmptyImage").widgets.find(w => w.name === "color");
			w.value = %d;
		})()`, color)),
		d.run(`[...document.querySelectorAll('[data-testid="queue-button"] button, button[data-testid="queue-button"]')].find(b => b.textContent.trim() === "Run" || b.getAttribute("aria-label") === "Run").click()`),
	)
}

// animatedWorkflow makes an animated WEBP, the moving output the legacy
// frontend's ComfyUI (2024) can make without weights.
func animatedWorkflow() map[string]any {
	return uiWorkflow(
		uiNode{id: 1, typ: "EmptyImage", out: []string{"IMAGE"}, widgets: []any{64, 64, 8, 0}},
		uiNode{id: 2, typ: "SaveAnimatedWEBP", in: []string{"IMAGE"}, widgets: []any{"anim", 6, false, 80, "default"}},
	)
}

// legacyDay is the day on ComfyUI 2024-08-15's own hand-written frontend.
func legacyDay(t *testing.T, v realcomfy.Version) {
	d := startDay(t, v, "", "legacy", map[string]map[string]any{"day-image.json": imageWorkflow(), "day-anim.json": animatedWorkflow()})
	s := d.s
	d.do("boot",
		chromedp.Navigate(s.base+"/join/"+s.seatCode(1)),
		d.poll(`!!window.app?.graph && !!document.querySelector("#queue-button")`),
	)
	// A setting persists and stays with the seat: the new menu bar (the
	// legacy frontend's own setting), kept across a reload; seat 2 keeps
	// the old menu.
	d.do("switch to the new menu",
		d.run(`app.ui.settings.setSettingValueAsync("Comfy.UseNewMenu", "Top")`),
		d.legacyReload(),
		d.poll(`!!document.querySelector(".comfyui-workflows-button") && document.querySelector(".comfyui-workflows-button").offsetParent !== null`),
	)
	p2 := s.join(2)
	if _, theirs := p2.get("/user/2/api/settings"); strings.Contains(string(theirs), "UseNewMenu") {
		t.Errorf("seat 1's setting reached seat 2: %s", theirs)
	}

	// A workshop workflow opens from the workflows list's workshop folder;
	// Queue runs it; the image shows in the node.
	d.legacyOpen("workshop/day-image.json")
	d.legacyQueue(0x3366ff)
	d.do("the image in the node", d.poll(nodeImageLoaded("SaveImage")))
	d.shot("image")

	// Someone else's job shows nowhere; the history lists this one, as
	// the participant's job number 1 (whatever the room's count).
	other := p2.prompt(imageGraph("other", 0x00ff00))
	s.ev.waitDone(60*time.Second, other)
	d.do("the history",
		d.run(`document.querySelector('button[title="View history"]').click()`),
		d.poll(`(() => { const rows = [...document.querySelectorAll(".comfyui-history-items section > span")]; return rows.length === 1 && rows[0].textContent.trim() === "1"; })()`),
	)
	d.shot("history")
	if n := eval[int](d, `[...document.querySelectorAll("img")].filter(i => i.src.includes("other_")).length + document.body.innerHTML.split("`+other+`").length - 1`); n != 0 {
		t.Errorf("seat 2's job shows on seat 1's page (%d places)", n)
	}

	// Cancel from the queue list.
	s.a.do("POST", "/api/queue/pause", nil, nil)
	d.legacyQueue(0x993300)
	pending := s.a.pendingOf("user001")
	d.do("cancel from the queue list",
		d.run(`document.querySelector('button[title="View queue"]').click()`),
		d.poll(`[...document.querySelectorAll(".comfyui-queue-items button")].some(b => b.textContent.trim() === "Delete")`),
		d.run(`[...document.querySelectorAll(".comfyui-queue-items button")].find(b => b.textContent.trim() === "Delete").click()`),
	)
	s.ev.waitDone(30*time.Second, pending)
	if st := s.a.job(pending).Status; st != "cancelled" {
		t.Fatalf("after the queue list's delete the job is %s", st)
	}
	s.a.do("POST", "/api/queue/resume", nil, nil)

	// Saving over the workshop workflow is refused with the reason; Save
	// As keeps the participant's own copy, which opens after a reload.
	d.expected = append(d.expected, "/userdata/workflows%2Fworkshop%2Fday-image.json")
	d.do("saving over it is refused",
		d.run(`document.querySelector('button[title="Save the current workflow"]').click()`),
		d.dialogSays("Workshop workflows are read-only"),
	)
	d.dialogs.SetPrompt("my-legacy")
	d.do("save as",
		d.run(`app.workflowManager.activeWorkflow.save(true)`),
		d.poll(`app.workflowManager.activeWorkflow?.path === "my-legacy.json"`),
		d.legacyReload(),
	)
	d.legacyOpen("my-legacy.json")

	// The moving output: an animated WEBP shows in its node.
	d.legacyOpen("workshop/day-anim.json")
	d.legacyQueue(0xff3300)
	d.do("the animation in the node", d.poll(nodeImageLoaded("SaveAnimatedWEBP")))
	d.shot("animated")

	d.legacyMaskEdit()
	d.announcement()
}

// dialogSays waits until a JavaScript dialog (the legacy frontend's
// alerts) has said text.
func (d *day) dialogSays(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		deadline := time.Now().Add(60 * time.Second)
		for !slices.ContainsFunc(d.dialogs.Messages(), func(m string) bool { return strings.Contains(m, text) }) {
			if time.Now().After(deadline) {
				return fmt.Errorf("no dialog said %q (dialogs: %q)", text, d.dialogs.Messages())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	})
}

// legacyReload reloads the legacy page and waits for its app.
func (d *day) legacyReload() chromedp.Action[chromedp.Void] {
	return d.reloadUntil(`!!window.app?.graph && !!document.querySelector("#queue-button, .comfyui-queue-button")`)
}

// legacyOpen opens a workflow from the new menu's workflows list.
func (d *day) legacyOpen(path string) {
	d.t.Helper()
	steps := []chromedp.Action[chromedp.Void]{d.run(`document.querySelector(".comfyui-workflows-button").click()`)}
	if folder, _, ok := strings.Cut(path, "/"); ok {
		steps = append(steps,
			d.poll(`[...document.querySelectorAll(".comfyui-workflows-tree span")].some(e => e.textContent.trim() === "`+folder+`")`),
			d.run(`[...document.querySelectorAll(".comfyui-workflows-tree span")].find(e => e.textContent.trim() === "`+folder+`").click()`))
	}
	d.do("open "+path, append(steps,
		d.poll(`!!document.querySelector('.comfyui-workflows-tree [title="`+path+`"]')`),
		d.run(`document.querySelector('.comfyui-workflows-tree [title="`+path+`"]').click()`),
		d.poll(`app.workflowManager.activeWorkflow?.path === "`+path+`" && app.graph._nodes.length > 0`),
	)...)
}

// legacyQueue sets the EmptyImage colour and presses Queue.
func (d *day) legacyQueue(color int) {
	d.t.Helper()
	d.do("press Queue",
		d.run(fmt.Sprintf(`app.graph._nodes.find(n => n.type === "EmptyImage").widgets.find(w => w.name === "color").value = %d`, color)),
		d.run(`[...document.querySelectorAll(".comfyui-queue-button button, button")].find(b => b.offsetParent && b.textContent.trim().startsWith("Queue")).click()`),
	)
}
