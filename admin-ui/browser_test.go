package adminui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/comfy-workshop/workshop/internal/browsertest"
)

// browser starts headless Chromium at 1280x720, or skips (fails under CI).
func browser(t testing.TB) context.Context {
	t.Helper()
	ctx := browsertest.Start(t, 1280, 720, 55*time.Second)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 720)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// until waits for a JavaScript condition, and says what it waited for.
func until(cond string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := chromedp.Poll[chromedp.Void](cond, browsertest.PollOpts...)(ctx, t); err != nil {
			return chromedp.Void{}, fmt.Errorf("waiting for %s: %w", cond, err)
		}
		return chromedp.Void{}, nil
	}
}

func js(expr string) chromedp.Action[chromedp.Void] { return chromedp.Evaluate[chromedp.Void](expr) }

func eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	start := time.Now()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (after %v)", what, err, time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("%s took %v", what, d.Round(time.Millisecond))
	}
}

func sel(s string) chromedp.CSS { return chromedp.CSS(s) }

// tab opens a section of the control room by its tab.
func tab(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Click(sel("#tab-"+name)),
		chromedp.WaitVisible(sel("#view-"+name)),
		until(fmt.Sprintf(`window.__admin.views.get(%q).loaded === true`, name)),
	)
}

func screenshot(t testing.TB, ctx context.Context, name string) { capture(t, ctx, name, false) }

// screenshotPage takes the whole page, not just the window.
func screenshotPage(t testing.TB, ctx context.Context, name string) { capture(t, ctx, name, true) }

func capture(t testing.TB, ctx context.Context, name string, page bool) {
	t.Helper()
	if os.Getenv("SCREENSHOTS") != "1" {
		return
	}
	do(t, ctx, "images loaded before the screenshot "+name,
		js(`document.querySelector("#toasts")?.replaceChildren()`),
		until(`[...document.images].every(i => i.complete)`),
		// Let the transitions (progress bars, fades) finish first.
		until(`document.getAnimations().every(a => a.playState !== "running")`))
	act := chromedp.CaptureScreenshot()
	if page {
		act = chromedp.FullScreenshot(100) // 100: PNG
	}
	shot, err := chromedp.Run(ctx, act)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "admin-"+name+".png")
	if err := os.WriteFile(p, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", p)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// signIn loads /admin, signs in and waits for the first full load.
func signIn(t testing.TB, ctx context.Context, f *fake) {
	t.Helper()
	do(t, ctx, "sign in",
		chromedp.Navigate(f.base+"/admin"),
		chromedp.WaitVisible(sel("#login-form")),
		chromedp.SendKeys(sel("#secret"), fakeSecret),
		chromedp.Click(sel("#login-submit")),
		chromedp.WaitVisible(sel("#app")),
		until(`document.body.dataset.ready >= "1"`),
	)
}

func TestAdminUI(t *testing.T) {
	start := time.Now()
	ctx := browser(t)
	f := newFake(t, 8)

	// ---- sign-in ----
	do(t, ctx, "the login form shows",
		chromedp.Navigate(f.base+"/admin"),
		chromedp.WaitVisible(sel("#login-form")),
		until(`document.querySelector("#app").hidden`),
		chromedp.SendKeys(sel("#secret"), "wrong"),
		chromedp.Click(sel("#login-submit")),
		browsertest.TextContains("#login-error", "wrong"),
	)
	f.mu.Lock()
	f.limited = true
	f.mu.Unlock()
	do(t, ctx, "rate limited",
		js(`document.querySelector("#secret").value = ""`),
		chromedp.SendKeys(sel("#secret"), "again"),
		chromedp.Click(sel("#login-submit")),
		browsertest.TextContains("#login-error", "Too many attempts"),
	)
	f.mu.Lock()
	f.limited = false
	f.mu.Unlock()
	do(t, ctx, "sign in",
		js(`document.querySelector("#secret").value = ""`),
		chromedp.SendKeys(sel("#secret"), fakeSecret),
		chromedp.SendKeys(sel("#admin-name"), "Ann"),
		chromedp.Click(sel("#login-submit")),
		chromedp.WaitVisible(sel("#app")),
		until(`document.body.dataset.ready >= "1"`),
		until(`document.querySelectorAll("#pending-list .job-row").length === 8`),
		until(`document.querySelectorAll("#running-list .run-card").length === 3`),
		browsertest.TextContains("#count-pending", "8"),
		browsertest.TextContains("#count-running", "3"),
		browsertest.TextContains("#count-completed", "14"),
		browsertest.TextContains("#live-dot", "Live"),
	)
	if v := eval[bool](t, ctx, `document.querySelector("#recent-list [data-status=failed]") !== null`); !v {
		t.Error("the failed job is not in the recent list")
	}
	f.mu.Lock()
	if f.name != "Ann" {
		t.Errorf("the login sent the name %q", f.name)
	}
	f.mu.Unlock()
	// Cancels wait a short while for their Undo here.
	do(t, ctx, "a short undo", js(`window.__admin.undoMs = 700`))

	// The page itself is not allowed to act without the token: the fake
	// refuses, which the rest of the test relies on.
	if got := eval[int](t, ctx, `fetch("/api/queue/pause", {method: "POST"}).then(r => r.status)`); got != 403 {
		t.Fatalf("POST without CSRF answered %d, want 403", got)
	}

	// ---- a submitted job appears, runs, shows progress, is cancelled ----
	f.mu.Lock()
	j := f.addJob(userID(7), 2, "pending", time.Now())
	f.mu.Unlock()
	f.push(map[string]any{"type": "job_created", "job": j})
	row := fmt.Sprintf(`#pending-list li[data-id=%q]`, j.ID)
	do(t, ctx, "job_created shows the job",
		chromedp.WaitVisible(sel(row)),
		browsertest.TextContains(row+" .who", "Seat 7 · Alice"),
		browsertest.TextContains("#count-pending", "9"),
	)
	f.mu.Lock()
	now := time.Now()
	j.Status, j.StartedAt, j.Worker = "running", &now, "gpu-2/0"
	f.mu.Unlock()
	f.push(map[string]any{"type": "job_updated", "job": j})
	card := fmt.Sprintf(`#running-list [data-id=%q]`, j.ID)
	do(t, ctx, "job_updated moves it to running",
		chromedp.WaitVisible(sel(card)),
		chromedp.WaitNotPresent(sel(row)),
		browsertest.TextContains("#count-running", "4"),
	)
	for _, step := range []int{3, 7} {
		f.push(map[string]any{"type": "job_progress", "progress": map[string]any{
			"job_id": j.ID, "user_id": j.UserID, "worker": "gpu-2/0", "stage": "executing", "node": "3",
			"value": step, "max": 10, "preview": previewURL(step)}})
		do(t, ctx, fmt.Sprintf("progress %d/10", step),
			until(fmt.Sprintf(`document.querySelector(%q).getAttribute("aria-valuenow") === "%d"`, card+" .bar", step*10)),
			until(fmt.Sprintf(`document.querySelector(%q).style.width === "%d%%"`, card+" .fill", step*10)),
			browsertest.TextContains(card+" .node", fmt.Sprintf("Node 3 · step %d/10", step)),
			until(fmt.Sprintf(`(() => { const i = document.querySelector(%q); return !i.hidden && i.src.startsWith("data:image/png") && i.complete && i.naturalWidth === 48; })()`, card+" img.preview")),
		)
	}
	// The other running jobs move too (for the screenshot).
	f.mu.Lock()
	var others []*fjob
	for _, o := range f.jobs {
		if o.Status == "running" && o.ID != j.ID && o.StartedAt != nil {
			others = append(others, o)
		}
	}
	f.mu.Unlock()
	for i, o := range others {
		f.push(map[string]any{"type": "job_progress", "progress": map[string]any{
			"job_id": o.ID, "user_id": o.UserID, "worker": o.Worker, "stage": "executing", "node": "12",
			"value": 14 + i*5, "max": 25, "preview": previewURL(100 + i)}})
	}
	do(t, ctx, "the others show progress", until(`document.querySelectorAll("#running-list img.preview:not([hidden])").length === 3`))
	screenshot(t, ctx, "queue")

	do(t, ctx, "cancel the running job: it waits for its Undo",
		chromedp.Click(sel(card+" .cancel")),
		until(fmt.Sprintf(`document.querySelector(%q).dataset.state === "undo"`, card)),
		browsertest.TextContains(card+" .stage", "Cancelling"),
		until(fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, card+" .undo")))
	c := f.waitCall(t, "DELETE", "/api/jobs/"+j.ID)
	if !c.CSRFOK {
		t.Errorf("DELETE carried X-CSRF-Token %q, want the session's", c.CSRF)
	}
	do(t, ctx, "the cancelled card keeps its place while the pointer is on the list",
		until(fmt.Sprintf(`document.querySelector(%q).dataset.state === "cancelled"`, card)),
		browsertest.TextContains(fmt.Sprintf(`#recent-list li[data-id=%q] .status`, j.ID), "cancelled"),
		browsertest.TextContains("#count-running", "3"),
	)
	do(t, ctx, "and leaves when the pointer does",
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 5, 5),
		chromedp.WaitNotPresent(sel(card)))

	// ---- move to top, drag to a priority ----
	f.mu.Lock()
	pend := f.pending()
	last, third := pend[len(pend)-1], pend[2]
	f.mu.Unlock()
	do(t, ctx, "move the last job to the top",
		chromedp.Click(sel(fmt.Sprintf(`#pending-list li[data-id=%q] .top`, last.ID))))
	c = f.waitCall(t, "POST", "/api/jobs/"+last.ID+"/move")
	if !c.CSRFOK || c.Body != `{"to":"top"}` {
		t.Errorf("move: csrf ok %v, body %s", c.CSRFOK, c.Body)
	}
	do(t, ctx, "it is first",
		until(fmt.Sprintf(`document.querySelector("#pending-list .job-row").dataset.id === %q`, last.ID)),
		browsertest.TextContains("#pending-list .job-row .pos", "1"),
	)
	// Both ends in the middle of the screen: a drag near an edge scrolls the page.
	do(t, ctx, "drag a job onto the High priority",
		js(`document.querySelector("#dropbar").scrollIntoView({block: "center"})`),
		chromedp.DragAndDrop(sel(fmt.Sprintf(`#pending-list li[data-id=%q] .grip`, third.ID)), sel("#drop-p1")))
	c = f.waitCall(t, "PATCH", "/api/jobs/"+third.ID+"/priority")
	if !c.CSRFOK || c.Body != `{"priority":1}` {
		t.Errorf("priority: csrf ok %v, body %s", c.CSRFOK, c.Body)
	}
	do(t, ctx, "its row shows the new priority",
		until(fmt.Sprintf(`document.querySelector('#pending-list li[data-id=%q] select').value === "1"`, third.ID)))

	// ---- pause and mode ----
	do(t, ctx, "pause", chromedp.Click(sel("#pause-btn")), chromedp.WaitVisible(sel("#paused-flag")),
		browsertest.TextContains("#pause-btn", "Resume"))
	f.waitCall(t, "POST", "/api/queue/pause")
	do(t, ctx, "fifo", chromedp.Click(sel(`label[for="mode-fifo"]`)), browsertest.TextContains("#mode-flag", "First come"))
	if c := f.waitCall(t, "PUT", "/api/queue/mode"); c.Body != `{"mode":"fifo"}` {
		t.Errorf("mode body %s", c.Body)
	}
	do(t, ctx, "resume", chromedp.Click(sel("#pause-btn")), chromedp.WaitNotVisible(sel("#paused-flag")))

	// ---- GPUs: drain ----
	do(t, ctx, "GPUs", tab("gpus"),
		chromedp.WaitVisible(sel(`.gpu-card[data-id="gpu-1/0"]`)),
		browsertest.TextContains(`.gpu-card[data-id="gpu-1/0"] .state-badge`, "Busy"),
		browsertest.TextContains(`.gpu-card[data-id="gpu-2/1"] .error`, "connection refused"),
		browsertest.TextContains("#count-gpus", "2/3"),
	)
	screenshot(t, ctx, "gpus")
	do(t, ctx, "drain gpu-1/1", chromedp.Click(sel(`.gpu-card[data-id="gpu-1/1"] .drain`)))
	if c := f.waitCall(t, "POST", "/api/workers/gpu-1/1/drain"); !c.CSRFOK {
		t.Error("drain without CSRF")
	}
	do(t, ctx, "it shows draining",
		browsertest.TextContains(`.gpu-card[data-id="gpu-1/1"] .state-badge`, "Draining"),
		browsertest.TextContains(`.gpu-card[data-id="gpu-1/1"] .drain`, "Undrain"),
	)

	// ---- participants ----
	do(t, ctx, "participants", tab("participants"),
		chromedp.WaitVisible(sel(`#seat-rows tr[data-seat="7"]`)),
		until(`document.querySelector('#seat-rows tr[data-seat="3"] input.name').value.startsWith("<img")`),
	)
	if v := eval[bool](t, ctx, `window.__xss === undefined && document.querySelector("#seat-rows img, .who img") === null`); !v {
		t.Error("a seat name was parsed as HTML")
	}
	do(t, ctx, "rename seat 1",
		js(`document.querySelector('#seat-rows tr[data-seat="1"] input.name').value = ""`),
		chromedp.SendKeys(sel(`#seat-rows tr[data-seat="1"] input.name`), "Ada L.\r"),
	)
	if c := f.waitCall(t, "PATCH", "/api/seats/1"); c.Body != `{"name":"Ada L."}` || !c.CSRFOK {
		t.Errorf("rename: %+v", c)
	}
	do(t, ctx, "disable seat 2", chromedp.Click(sel(`#seat-rows tr[data-seat="2"] .row-actions button`)))
	if c := f.waitCall(t, "PATCH", "/api/seats/2"); c.Body != `{"disabled":true}` {
		t.Errorf("disable: %s", c.Body)
	}
	do(t, ctx, "seat 2 is disabled", browsertest.TextContains(`#seat-rows tr[data-seat="2"] .online`, "Disabled"))
	do(t, ctx, "add a seat",
		chromedp.SendKeys(sel("#add-name"), "Guest"),
		chromedp.Click(sel(`#add-seat-form button[type=submit]`)),
		chromedp.WaitVisible(sel(`#seat-rows tr[data-seat="13"]`)),
	)

	// ---- announcements ----
	do(t, ctx, "announce", tab("announcements"),
		chromedp.SendKeys(sel("#announce-text"), "Break until 11:00 <b>sharp</b>"),
		chromedp.Click(sel("#announce-send")),
		browsertest.TextContains("#announce-list li:first-child .text", "Break until 11:00 <b>sharp</b>"),
	)
	if c := f.waitCall(t, "POST", "/api/announcements"); !c.CSRFOK || c.Body != `{"text":"Break until 11:00 \u003cb\u003esharp\u003c/b\u003e"}` && c.Body != `{"text":"Break until 11:00 <b>sharp</b>"}` {
		t.Errorf("announcement: %+v", c)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#announce-list li").length`); n != 2 {
		t.Errorf("%d announcements listed, want 2 (the event and the answer are one)", n)
	}

	// ---- outputs and the spotlight ----
	f.mu.Lock()
	first, second := f.outputs[0], f.outputs[3]
	f.mu.Unlock()
	outCard := func(o map[string]any) string {
		return fmt.Sprintf(`#output-grid figure[data-job=%q][data-name=%q]`, o["job_id"], o["name"])
	}
	do(t, ctx, "outputs", tab("outputs"),
		chromedp.WaitVisible(sel(outCard(first))),
		until(`document.querySelectorAll("#output-grid figure").length === 14`),
		chromedp.Click(sel(outCard(first)+" .spot")),
		until(fmt.Sprintf(`document.querySelector(%q).classList.contains("on")`, outCard(first))),
		chromedp.WaitVisible(sel("#spotlight-now")),
	)
	if c := f.waitCall(t, "POST", "/api/spotlight"); !c.CSRFOK || c.Body != mustJSON(map[string]any{"job_id": first["job_id"], "name": first["name"]}) {
		t.Errorf("spotlight: %+v", c)
	}
	screenshot(t, ctx, "outputs")

	spotCtx, cancelSpot := chromedp.NewContext(ctx)
	defer cancelSpot()
	spotImg := func(o map[string]any) string {
		return fmt.Sprintf(`(() => { const i = document.querySelector('#stage img.media[data-name=%q]'); return !!i && i.complete && i.naturalWidth === 256 && i.classList.contains("in"); })()`, o["name"])
	}
	do(t, spotCtx, "the spotlight page shows it",
		chromedp.EmulateViewport(1280, 720),
		chromedp.Navigate(f.base+"/admin/spotlight"),
		until(spotImg(first)),
		browsertest.TextContains("#caption", "Seat"),
		until(`window.__spotlightStats.messages >= 1`),
	)
	// Switch from the admin page; the projector follows live.
	do(t, ctx, "spotlight another", chromedp.Click(sel(outCard(second)+" .spot")))
	do(t, spotCtx, "the projector switches", until(spotImg(second)),
		until(`document.querySelectorAll("#stage .media").length === 1`))
	screenshot(t, spotCtx, "spotlight")
	do(t, ctx, "clear the spotlight", chromedp.Click(sel("#spotlight-clear")), chromedp.WaitNotVisible(sel("#spotlight-now")))
	do(t, spotCtx, "the projector goes dark", chromedp.WaitVisible(sel("#idle")))
	cancelSpot()

	// ---- workflows ----
	wf := filepath.Join(t.TempDir(), "day-two.json")
	if err := os.WriteFile(wf, []byte(`{"nodes":[{"id":1}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "workflows", tab("workflows"),
		chromedp.WaitVisible(sel(`#workflow-rows tr[data-name="portrait.json"]`)),
		chromedp.SetUploadFiles(sel("#workflow-file"), []string{wf}),
		chromedp.WaitVisible(sel(`#workflow-rows tr[data-name="day-two.json"]`)),
	)
	if c := f.waitCall(t, "PUT", "/api/workflows/day-two.json"); c.Body != `{"nodes":[{"id":1}]}` || !c.CSRFOK {
		t.Errorf("publish: %+v", c)
	}
	do(t, ctx, "open by default",
		chromedp.Click(sel(`#workflow-rows tr[data-name="day-two.json"] .default-toggle`)),
		browsertest.TextContains(`#workflow-rows tr[data-name="day-two.json"] .default-toggle`, "Opens by default"),
	)
	if c := f.waitCall(t, "PUT", "/api/workflows/day-two.json/default"); !c.CSRFOK {
		t.Errorf("mark default: %+v", c)
	}
	do(t, ctx, "withdraw",
		chromedp.Click(sel(`#workflow-rows tr[data-name="portrait.json"] button`)),
		chromedp.Click(sel(`#workflow-rows tr[data-name="portrait.json"] button`)),
		chromedp.WaitNotPresent(sel(`#workflow-rows tr[data-name="portrait.json"]`)),
	)
	f.waitCall(t, "DELETE", "/api/workflows/portrait.json")

	// ---- activity ----
	do(t, ctx, "activity", tab("activity"),
		until(`document.querySelectorAll("#activity-rows tr").length === 30`),
		// In words, with job numbers (not ids) that open the job.
		browsertest.TextContains(`#activity-rows tr[data-id="e000"] .what`, "Seat 1 · Ada L. submitted job #1"),
		browsertest.TextContains(`#activity-rows tr[data-id="e004"] .what`, "Job #5 of Seat 5 · Margaret completed on gpu-1/0 · 1 output"),
		browsertest.TextContains(`#activity-rows tr[data-id="e001"]`, "Ann paused the queue"),
		browsertest.TextContains(`#activity-rows tr[data-id="e002"] .what`, "GPU host gpu-1 connected (2 instances)"),
	)
	screenshot(t, ctx, "activity")
	do(t, ctx, "activity filters",
		chromedp.SendKeys(sel("#activity-text"), "gpu-1"),
		until(`document.querySelectorAll("#activity-rows tr").length === 11`), // 7 connects, 4 completions on gpu-1/0
		js(`(() => { const q = document.querySelector("#activity-text"); q.value = "#5"; q.dispatchEvent(new Event("input")); })()`),
		until(`document.querySelectorAll("#activity-rows tr").length === 1`),
		js(`(() => { const q = document.querySelector("#activity-text"); q.value = ""; q.dispatchEvent(new Event("input")); })()`),
		js(`(() => { const k = document.querySelector("#activity-kind"); k.value = "admin"; k.dispatchEvent(new Event("change")); })()`),
		until(`document.querySelectorAll("#activity-rows tr").length === 8`),
	)
	if n := eval[int](t, ctx, `[...document.querySelectorAll("#activity-rows td")].filter(td => /\b[0-9a-f]{8}\b|POST |DELETE /.test(td.textContent)).length`); n != 0 {
		t.Errorf("%d activity cells show raw routes or ids", n)
	}
	f.push(map[string]any{"type": "activity", "data": map[string]any{"id": "live1", "time": time.Now().UTC().Format(time.RFC3339),
		"actor": "Ann", "kind": "admin", "action": "drained GPU gpu-1/1"}})
	do(t, ctx, "a live entry", browsertest.TextContains("#activity-rows tr:first-child", "Ann drained GPU gpu-1/1"))

	// ---- metrics ----
	do(t, ctx, "metrics", tab("metrics"),
		browsertest.TextContains("#m-done", "214"),
		chromedp.WaitVisible(sel("#chart-timeline svg")),
		until(`document.querySelectorAll("#chart-timeline rect").length > 10`),
		until(`document.querySelectorAll("#chart-users li").length === 12`),
	)
	screenshot(t, ctx, "metrics")
	do(t, ctx, "export", tab("export"), chromedp.WaitVisible(sel("#export-csv")))
	if got := eval[string](t, ctx, `fetch(document.querySelector("#export-csv").href).then(r => r.status + " " + r.headers.get("content-type"))`); !strings.HasPrefix(got, "200 text/csv") {
		t.Errorf("export link: %s", got)
	}

	// ---- the socket drops, the banner shows, the page recovers ----
	do(t, ctx, "back to the queue", tab("queue"))
	connects := eval[int](t, ctx, `window.__adminStats.connects`)
	f.dropSockets(true)
	do(t, ctx, "banner", chromedp.WaitVisible(sel("#banner")), browsertest.TextContains("#banner-text", "Live updates lost"),
		browsertest.TextContains("#live-dot", "Offline"))
	// Something changes while the page cannot hear it.
	f.mu.Lock()
	quiet := f.addJob(userID(9), 2, "pending", time.Now())
	f.mu.Unlock()
	f.allowSockets()
	do(t, ctx, "recovery",
		chromedp.WaitNotVisible(sel("#banner")),
		browsertest.TextContains("#live-dot", "Live"),
		until(fmt.Sprintf(`window.__adminStats.connects > %d`, connects)),
		chromedp.WaitVisible(sel(fmt.Sprintf(`#pending-list li[data-id=%q]`, quiet.ID))),
	)
	// And it is live again.
	f.mu.Lock()
	f.paused = true
	b, _ := json.Marshal(map[string]any{"type": "queue_changed", "queue": f.statusLocked()})
	f.pushLocked(b)
	f.mu.Unlock()
	do(t, ctx, "live after the reconnect", chromedp.WaitVisible(sel("#paused-flag")))

	// Every state-changing request carried the token.
	f.mu.Lock()
	for _, c := range f.calls {
		if c.Path != "/admin/login" && !c.CSRFOK && !(c.Path == "/api/queue/pause" && c.CSRF == "") {
			t.Errorf("%s %s without the CSRF token", c.Method, c.Path)
		}
	}
	f.mu.Unlock()

	// ---- layouts: projector and phone ----
	for _, v := range []string{"queue", "gpus", "participants", "outputs", "announcements", "workflows", "activity", "metrics", "export"} {
		do(t, ctx, "open "+v, tab(v))
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
			t.Errorf("%s at 1280x720 scrolls sideways by %dpx", v, w)
		}
	}
	do(t, ctx, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), until(`window.innerWidth === 390`))
	for _, v := range []string{"queue", "gpus", "participants", "outputs", "announcements", "workflows", "activity", "metrics", "export"} {
		do(t, ctx, "open "+v+" on a phone", tab(v))
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
			t.Errorf("%s on a phone scrolls sideways by %dpx", v, w)
		}
	}
	do(t, ctx, "queue on a phone", tab("queue"), js(`scrollTo(0, 0)`))
	screenshot(t, ctx, "phone")
	do(t, ctx, "back to the projector", chromedp.EmulateViewport(1280, 720), until(`window.innerWidth === 1280`))

	// ---- the printable sheet ----
	do(t, ctx, "QR sheet",
		chromedp.Navigate(f.base+"/admin/seats/print"),
		until(`document.body.dataset.ready === "1"`),
		until(`document.querySelectorAll("#sheet .card").length === 11`), // 13 seats, 2 disabled
		until(`[...document.querySelectorAll("#sheet img.qr")].every(i => i.complete && i.naturalWidth > 0)`),
		browsertest.TextContains(`#sheet .card[data-seat="7"]`, "Alice"),
	)

	// ---- signing out ----
	do(t, ctx, "sign out",
		chromedp.Navigate(f.base+"/admin"),
		chromedp.WaitVisible(sel("#app")),
		chromedp.Click(sel("#logout")),
		chromedp.WaitVisible(sel("#login-form")),
	)
	if got := eval[int](t, ctx, `fetch("/api/seats").then(r => r.status)`); got != 401 {
		t.Errorf("after sign-out /api/seats answered %d", got)
	}
	t.Logf("browser checks took %v", time.Since(start).Round(time.Millisecond))
}

// The queue as a desk: failed rows that say where and why, the job detail,
// search and the seat filter, bulk cancels with a confirmation, Undo after
// Cancel with the rows held still, previews that survive a reload, and a
// cancel sent as the page closes.
func TestAdminQueueDesk(t *testing.T) {
	ctx := browser(t)
	f := newFake(t, 8)
	signIn(t, ctx, f)
	do(t, ctx, "a short undo", js(`window.__admin.undoMs = 700`))
	f.mu.Lock()
	var failed *fjob
	for _, j := range f.jobs {
		if j.Status == "failed" {
			failed = j
		}
	}
	f.mu.Unlock()

	// ---- a failed row: which instance, and the whole error ----
	frow := fmt.Sprintf(`#recent-list li[data-id=%q]`, failed.ID)
	do(t, ctx, "the failed row says where it failed, and after how many tries",
		browsertest.TextContains(frow+" .err summary", "on gpu-2/0 after 2 attempts"),
		browsertest.TextContains(frow+" .err summary", "execution_error: OutOfMemoryError in node 3"),
		until(fmt.Sprintf(`!document.querySelector(%q).open`, frow+" .err")),
		chromedp.Click(sel(frow+" .err summary")),
		browsertest.TextContains(frow+" .err .err-trace", "torch.cuda.OutOfMemoryError: CUDA out of memory."),
		browsertest.TextContains(frow+" .err .err-message", "77.02 GiB already allocated"),
	)

	// ---- the job detail ----
	do(t, ctx, "open the failed job",
		chromedp.Click(sel(frow+" .num")),
		until(`document.querySelector("#job-dialog").open`),
		browsertest.TextContains("#job-dialog-title", fmt.Sprintf("Job #%d · Seat 4 · Linus", failed.Number)),
		browsertest.TextContains("#jd-status", "failed"),
		browsertest.TextContains("#jd-instance", "gpu-2/0"),
		browsertest.TextContains("#job-dialog .jd-error", "Why it failed"),
		browsertest.TextContains("#job-dialog .jd-error .err-trace", "Traceback"),
		browsertest.TextContains("#job-dialog .jd-history", "failed on gpu-2/0"),
		chromedp.Click(sel(`#job-dialog details[data-part="prompt"] summary`)),
		browsertest.TextContains(`#job-dialog details[data-part="prompt"] pre`, `"class_type": "KSampler"`),
		until(`document.querySelector('#job-dialog details[data-part="workflow"] a[download]').download.endsWith("-workflow.json")`),
	)
	do(t, ctx, "the top of the detail", js(`document.querySelector("#job-dialog").scrollTop = 0`))
	screenshot(t, ctx, "job-detail")
	do(t, ctx, "retry it from the detail", chromedp.Click(sel("#jd-retry")))
	f.waitCall(t, "POST", "/api/jobs/"+failed.ID+"/retry")
	do(t, ctx, "the detail follows to the new job",
		until(fmt.Sprintf(`!document.querySelector("#job-dialog-title").textContent.includes("#%d ")`, failed.Number)),
		browsertest.TextContains("#jd-status", "pending"),
		chromedp.KeyEvent(kb.Escape),
		until(`!document.querySelector("#job-dialog").open`),
	)

	// ---- search ----
	rows := `document.querySelectorAll("#pending-list .job-row")`
	typeSearch := func(text string) chromedp.Action[chromedp.Void] {
		return js(fmt.Sprintf(`(() => { const q = document.querySelector("#job-search"); q.value = %q; q.dispatchEvent(new Event("input")); })()`, text))
	}
	do(t, ctx, "search by name",
		typeSearch("alice"),
		until(rows+`.length > 0 && [...`+rows+`].every(r => r.querySelector(".who").textContent === "Seat 7 · Alice")`),
		until(`[...document.querySelectorAll("#running-list .run-card .who")].every(w => w.textContent === "Seat 7 · Alice")`),
		browsertest.TextContains("#h-pending .count", "of 9"),
		chromedp.WaitVisible(sel("#filter-clear")),
	)
	do(t, ctx, "search by status", typeSearch("failed"),
		until(`document.querySelectorAll("#recent-list .recent-row").length === 1`),
		until(rows+`.length === 0`), browsertest.TextContains("#pending-empty", "No waiting job matches"))
	do(t, ctx, "search by number, one nobody has", typeSearch("#9999"),
		chromedp.WaitVisible(sel("#search-hit")), browsertest.TextContains("#search-hit", "No job #9999"))
	do(t, ctx, "clear the search", chromedp.Click(sel("#filter-clear")), until(rows+`.length === 9`),
		chromedp.WaitNotVisible(sel("#search-hit")))

	// ---- filter by seat, cancel everything of it ----
	f.mu.Lock()
	seven := 0
	for _, j := range f.jobs {
		if j.UserID == userID(7) && (j.Status == "pending" || j.Status == "running") {
			seven++
		}
	}
	f.mu.Unlock()
	do(t, ctx, "filter by seat 7",
		js(`(() => { const s = document.querySelector("#seat-filter"); s.value = "user007"; s.dispatchEvent(new Event("change")); })()`),
		browsertest.TextContains("#recent summary", "Finished jobs of Seat 7 · Alice"),
		until(`[...document.querySelectorAll("#recent-list .who")].every(w => w.textContent === "Seat 7 · Alice")`),
		browsertest.TextContains("#seat-cancel", "Cancel everything of Seat 7 · Alice"),
		chromedp.Click(sel("#seat-cancel")),
		until(`document.querySelector("#confirm-dialog")?.open`),
		browsertest.TextContains("#confirm-dialog-title", "Cancel everything of Seat 7 · Alice?"),
		browsertest.TextContains("#confirm-ok", fmt.Sprintf("Cancel %d job", seven)),
		until(`document.activeElement === document.querySelector("#confirm-cancel")`),
	)
	screenshot(t, ctx, "bulk-cancel")
	do(t, ctx, "keep them", chromedp.Click(sel("#confirm-cancel")), until(`!document.querySelector("#confirm-dialog").open`))
	if n := countCalls(f, "POST", "/api/queue/cancel"); n != 1 {
		t.Fatalf("%d bulk calls after keeping them, want the one dry run", n)
	}
	do(t, ctx, "cancel them", chromedp.Click(sel("#seat-cancel")), until(`document.querySelector("#confirm-dialog").open`),
		chromedp.Click(sel("#confirm-ok")), browsertest.TextContains("#toasts", fmt.Sprintf("Cancelled %d jobs of Seat 7 · Alice", seven)))
	c := lastCall(f, "POST", "/api/queue/cancel")
	if !c.CSRFOK || !strings.Contains(c.Body, `"user_id":"user007"`) || !strings.Contains(c.Body, `"ids":[`) || strings.Contains(c.Body, "dry_run") {
		t.Errorf("bulk cancel sent %s (csrf ok %v)", c.Body, c.CSRFOK)
	}
	do(t, ctx, "nothing of seat 7 is left", until(rows+`.length === 0`),
		until(`document.querySelectorAll("#running-list .run-card").length === 0`),
		chromedp.Click(sel("#filter-clear")), until(rows+`.length > 0`))

	// ---- Undo, and the next row stays put ----
	f.mu.Lock()
	pend := f.pending()
	a, b, after := pend[1], pend[2], pend[3]
	f.mu.Unlock()
	rowSel := func(j *fjob) string { return fmt.Sprintf(`#pending-list li[data-id=%q]`, j.ID) }
	do(t, ctx, "cancel a row, then undo",
		chromedp.Click(sel(rowSel(a)+" .cancel")),
		until(fmt.Sprintf(`document.querySelector(%q).dataset.state === "undo"`, rowSel(a))),
		until(fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, rowSel(a)+" .undo")),
		browsertest.TextContains(rowSel(a)+" .eta", "cancels"),
		browsertest.TextContains(rowSel(a)+" .undo", "Undo · "),
		chromedp.Click(sel(rowSel(a)+" .undo")),
		until(fmt.Sprintf(`!document.querySelector(%q).dataset.state`, rowSel(a))),
		browsertest.TextContains("#toasts", fmt.Sprintf("Job #%d stays in the queue", a.Number)),
	)
	topOf := func(j *fjob) float64 {
		return eval[float64](t, ctx, fmt.Sprintf(`document.querySelector(%q).getBoundingClientRect().top`, rowSel(j)))
	}
	do(t, ctx, "cancel the next row for real", chromedp.Click(sel(rowSel(b)+" .cancel")))
	before := topOf(after)
	f.waitCall(t, "DELETE", "/api/jobs/"+b.ID)
	do(t, ctx, "its row stays, marked, while the pointer is on the list",
		until(fmt.Sprintf(`document.querySelector(%q).dataset.state === "cancelled"`, rowSel(b))),
		browsertest.TextContains(fmt.Sprintf(`#recent-list li[data-id=%q] .status`, b.ID), "cancelled"))
	if now := topOf(after); now != before {
		t.Errorf("the row after the cancelled one moved from %v to %v under the pointer", before, now)
	}
	if n := countCalls(f, "DELETE", "/api/jobs/"+a.ID); n != 0 {
		t.Errorf("the undone cancel was sent anyway")
	}
	screenshot(t, ctx, "undo")
	do(t, ctx, "the pointer leaves: the row goes",
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 5, 5), chromedp.WaitNotPresent(sel(rowSel(b))))

	// ---- clear pending ----
	do(t, ctx, "clear pending", chromedp.Click(sel("#clear-pending")))
	do(t, ctx, "clear pending", until(`document.querySelector("#confirm-dialog").open`),
		browsertest.TextContains("#confirm-dialog-title", "Clear the pending queue?"),
		browsertest.TextContains("#confirm-dialog", "Running jobs go on"),
		chromedp.Click(sel("#confirm-ok")), until(rows+`.length === 0`), browsertest.TextContains("#count-pending", "0"))
	if c := lastCall(f, "POST", "/api/queue/cancel"); !strings.Contains(c.Body, `"status":"pending"`) {
		t.Errorf("clear pending sent %s", c.Body)
	}

	// ---- previews survive a reload ----
	f.mu.Lock()
	run := f.running()[0]
	f.mu.Unlock()
	card := fmt.Sprintf(`#running-list [data-id=%q]`, run.ID)
	f.push(map[string]any{"type": "job_progress", "progress": map[string]any{"job_id": run.ID, "user_id": run.UserID, "worker": run.Worker,
		"stage": "executing", "node": "3", "value": 4, "max": 10, "preview": previewURL(4)}})
	// A progress message without a preview right after must not blank it.
	f.push(map[string]any{"type": "job_progress", "progress": map[string]any{"job_id": run.ID, "user_id": run.UserID, "worker": run.Worker,
		"stage": "executing", "node": "3", "value": 5, "max": 10}})
	previewShown := fmt.Sprintf(`(() => { const i = document.querySelector(%q); return !!i && !i.hidden && i.complete && i.naturalWidth === 48; })()`, card+" img.preview")
	do(t, ctx, "the preview shows", until(previewShown), until(fmt.Sprintf(`document.querySelector(%q).getAttribute("aria-valuenow") === "50"`, card+" .bar")))
	do(t, ctx, "and is still there after a reload", chromedp.Reload(), until(`document.body.dataset.ready >= "1"`), until(previewShown))

	// ---- a cancel waiting for its Undo is sent when the page closes ----
	f.mu.Lock()
	last := f.addJob(userID(3), 2, "pending", time.Now())
	f.mu.Unlock()
	f.push(map[string]any{"type": "job_created", "job": last})
	do(t, ctx, "cancel, then leave the page at once",
		js(`window.__admin.undoMs = 60000`),
		chromedp.Click(sel(rowSel(last)+" .cancel")),
		until(fmt.Sprintf(`document.querySelector(%q).dataset.state === "undo"`, rowSel(last))),
		chromedp.Navigate("about:blank"))
	if c := f.waitCall(t, "DELETE", "/api/jobs/"+last.ID); !c.CSRFOK {
		t.Errorf("the cancel sent on leaving carried no CSRF token")
	}
}

func countCalls(f *fake, method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Method == method && c.Path == path {
			n++
		}
	}
	return n
}

func lastCall(f *fake, method, path string) call {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if c := f.calls[i]; c.Method == method && c.Path == path {
			return c
		}
	}
	return call{}
}

// Participants with 2,000 seats: the server pages and searches, codes hide
// while the screen is projected, saving a quota says so. The QR sheet keeps
// its title, Wi-Fi and instructions, never breaks a code, and puts every
// card's code at the same height.
func TestAdminParticipantsAndSheet(t *testing.T) {
	ctx := browser(t)
	f := newFake(t, 2)
	f.addSeats(1988)
	signIn(t, ctx, f)
	rows := `document.querySelectorAll("#seat-rows tr")`
	do(t, ctx, "the first page of 2,000", tab("participants"),
		until(rows+`.length === 50`),
		browsertest.TextContains("#seats-range", "1–50 of 2000"),
		browsertest.TextContains("#seat-summary", "2000 seats"),
		chromedp.Click(sel("#seats-next")),
		browsertest.TextContains("#seats-range", "51–100 of 2000"),
		until(`document.querySelector("#seat-rows tr").dataset.seat === "51"`),
		chromedp.SendKeys(sel("#seat-search"), "alice"),
		until(rows+`.length === 1 && document.querySelector("#seat-rows tr").dataset.seat === "7"`),
		browsertest.TextContains("#seats-range", "1–1 of 1"),
	)
	do(t, ctx, "by state", js(`(() => { const q = document.querySelector("#seat-search"); q.value = ""; q.dispatchEvent(new Event("input")); })()`),
		js(`(() => { const s = document.querySelector("#seat-state"); s.value = "disabled"; s.dispatchEvent(new Event("change")); })()`),
		until(rows+`.length === 1 && document.querySelector("#seat-rows tr").dataset.seat === "5"`),
		js(`(() => { const s = document.querySelector("#seat-state"); s.value = ""; s.dispatchEvent(new Event("change")); })()`),
		until(rows+`.length === 50`))

	// ---- hide codes ----
	f.mu.Lock()
	code7 := f.seats[6].Code
	f.mu.Unlock()
	row7 := `#seat-rows tr[data-seat="7"]`
	visible := `document.querySelector("#view-participants").innerText`
	do(t, ctx, "hide the codes",
		browsertest.TextContains(row7+" .code", code7),
		chromedp.Click(sel("#hide-codes")),
		until(fmt.Sprintf(`!%s.includes(%q)`, visible, code7)),
		until(fmt.Sprintf(`!document.querySelector(%q).title.includes(%q) && !document.querySelector(%q).getAttribute("aria-label").includes(%q)`, row7+" a.join", code7, row7+" a.join", code7)),
		chromedp.Click(sel(row7+" .reveal")),
		browsertest.TextContains(row7+" .code", code7),
		chromedp.Click(sel(row7+" .reveal")),
		until(fmt.Sprintf(`!%s.includes(%q)`, visible, code7)),
	)
	screenshot(t, ctx, "participants")
	do(t, ctx, "it stays hidden after a reload", chromedp.Reload(), until(`document.body.dataset.ready >= "1"`),
		until(`window.__admin.views.get("participants").loaded === true`), chromedp.WaitVisible(sel(row7)),
		until(`document.querySelector("#hide-codes").checked`),
		until(fmt.Sprintf(`!%s.includes(%q)`, visible, code7)),
		chromedp.Click(sel("#hide-codes")), browsertest.TextContains(row7+" .code", code7))

	// ---- links no phone can open are called out ----
	do(t, ctx, "no warning for public links", chromedp.WaitNotVisible(sel("#join-warning")))
	f.mu.Lock()
	for _, s := range f.seats[:20] {
		s.JoinURL = "http://127.0.0.1:8080/join/" + s.Code
	}
	f.mu.Unlock()
	do(t, ctx, "a warning for loopback links", chromedp.Click(sel("#seats-next")), browsertest.TextContains("#seats-range", "51–100"),
		chromedp.Click(sel("#seats-prev")),
		browsertest.TextContains("#seats-range", "1–50 of 2000"), chromedp.WaitVisible(sel(`#seat-rows tr[data-seat="3"]`)),
		chromedp.WaitVisible(sel("#join-warning")), browsertest.TextContains("#join-warning", "--public-url"))

	// ---- a quota is saved, and says so ----
	do(t, ctx, "set seat 3's quota",
		js(`document.querySelector('#seat-rows tr[data-seat="3"] input.quota').value = ""`),
		chromedp.SendKeys(sel(`#seat-rows tr[data-seat="3"] input.quota`), "4\r"),
		js(`document.querySelector('#seat-rows tr[data-seat="3"] input.quota').blur()`),
		browsertest.TextContains("#toasts", "Seat 3 may hold 4 pending jobs at a time"))
	if c := f.waitCall(t, "PATCH", "/api/seats/3"); c.Body != `{"max_pending":4}` || !c.CSRFOK {
		t.Errorf("quota: %+v", c)
	}

	// ---- the QR sheet, of 15 seats: 3 unnamed ----
	f.mu.Lock()
	f.seats = f.seats[:15]
	links := func(base string) {
		for _, s := range f.seats {
			s.JoinURL = base + "/join/" + s.Code
		}
	}
	links("http://workshop.example.org")
	f.mu.Unlock()
	do(t, ctx, "the sheet", chromedp.Navigate(f.base+"/admin/seats/print"), until(`document.body.dataset.ready === "1"`),
		chromedp.SendKeys(sel("#sheet-title"), "ComfyUI day · Room 3"),
		chromedp.SendKeys(sel("#sheet-wifi"), "Workshop-Guest"),
		chromedp.SendKeys(sel("#sheet-pass"), "pixels2024"),
		chromedp.SendKeys(sel("#sheet-help"), "Scan with your phone's camera. Ask us anything."),
		chromedp.Click(sel("#sheet-save")),
		browsertest.TextContains("#sheet-status", "Saved"))
	if c := f.waitCall(t, "PUT", "/api/sheet"); !c.CSRFOK || !strings.Contains(c.Body, `"wifi_name":"Workshop-Guest"`) {
		t.Errorf("sheet: %+v", c)
	}
	do(t, ctx, "saved on the server: a reload has it", chromedp.Reload(), until(`document.body.dataset.ready === "1"`),
		until(`document.querySelector("#sheet-title").value === "ComfyUI day · Room 3"`),
		browsertest.TextContains(`#sheet .card[data-seat="1"] .title`, "ComfyUI day · Room 3"),
		browsertest.TextContains(`#sheet .card[data-seat="1"] .wifi`, "Workshop-Guest"),
		browsertest.TextContains(`#sheet .card[data-seat="1"] .wifi`, "pixels2024"),
		browsertest.TextContains("#intro", "Scan with your phone"),
		until(`document.querySelectorAll("#sheet .card").length === 14`), // 15 seats, 1 disabled
		until(`[...document.querySelectorAll("#sheet img.qr, #intro img")].every(i => i.complete && i.naturalWidth > 0)`))
	layout := eval[string](t, ctx, `(() => {
		const cards = [...document.querySelectorAll("#sheet .card")];
		const bad = [];
		const codeAt = (c) => c.querySelector(".code").getBoundingClientRect().top - c.getBoundingClientRect().top;
		const first = codeAt(cards[0]);
		for (const c of cards) {
			if (Math.abs(codeAt(c) - first) > 0.5) bad.push("seat " + c.dataset.seat + ": code at " + codeAt(c) + ", not " + first);
			const part = c.querySelector(".url .code-part");
			if (!part || part.getClientRects().length !== 1) bad.push("seat " + c.dataset.seat + ": the code in the link breaks");
			if (c.scrollWidth > c.clientWidth + 1) bad.push("seat " + c.dataset.seat + ": overflows sideways");
		}
		return bad.join("; ");
	})()`)
	if layout != "" {
		t.Errorf("QR sheet layout: %s", layout)
	}
	if named, unnamed := eval[bool](t, ctx, `!!document.querySelector('#sheet .card[data-seat="7"] .name').textContent.trim()`),
		eval[bool](t, ctx, `!document.querySelector('#sheet .card[data-seat="14"] .name').textContent.trim()`); !named || !unnamed {
		t.Errorf("the test needs a named and an unnamed card: %v %v", named, unnamed)
	}
	screenshotPage(t, ctx, "qr-sheet")
	f.mu.Lock()
	links("http://127.0.0.1:8080")
	f.mu.Unlock()
	do(t, ctx, "the sheet warns of links no phone can open", chromedp.Reload(), until(`document.body.dataset.ready === "1"`),
		browsertest.TextContains("#join-warning", "only this machine can open"))
}

// Outputs: the orders, one seat's, the lightbox with its keys, downloads.
func TestAdminOutputs(t *testing.T) {
	ctx := browser(t)
	f := newFake(t, 2)
	signIn(t, ctx, f)
	first := func() string {
		return eval[string](t, ctx, `document.querySelector("#output-grid figure").dataset.name`)
	}
	setSel := func(id, v string) chromedp.Action[chromedp.Void] {
		return js(fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event("change")); })()`, id, v))
	}
	do(t, ctx, "outputs", tab("outputs"), until(`document.querySelectorAll("#output-grid figure").length === 14`))
	if n := first(); n != "ComfyUI_00014_.png" {
		t.Errorf("newest first starts with %s", n)
	}
	do(t, ctx, "oldest first", setSel("#outputs-order", "oldest"),
		until(`document.querySelector("#output-grid figure").dataset.name === "ComfyUI_00001_.png"`))
	do(t, ctx, "by seat", setSel("#outputs-order", "seat"),
		until(`[...document.querySelectorAll("#output-grid figure .who")].map(w => w.textContent).join("|").startsWith("Seat 1 · Ada|Seat 1 · Ada|Seat 2")`))
	do(t, ctx, "seat 3 only", setSel("#outputs-order", "newest"), setSel("#outputs-seat", "user003"),
		until(`document.querySelectorAll("#output-grid figure").length === 1`),
		browsertest.TextContains("#output-grid figure .who", "Seat 3"))
	if c := eval[string](t, ctx, `document.querySelector("#output-grid figure .download").download`); c != "seat03-ComfyUI_00003_.png" {
		t.Errorf("download name %q", c)
	}
	got := eval[string](t, ctx, `fetch(document.querySelector("#output-grid figure .download").href).then(r => r.status + " " + r.headers.get("content-type"))`)
	if got != "200 image/png" {
		t.Errorf("the download link answers %s", got)
	}

	// ---- the lightbox ----
	do(t, ctx, "all seats again", setSel("#outputs-seat", ""), until(`document.querySelectorAll("#output-grid figure").length === 14`),
		chromedp.Click(sel(`#output-grid figure:nth-child(2) .media`)),
		until(`document.querySelector("#lightbox").open`),
		until(`(() => { const i = document.querySelector("#lightbox .lb-media img"); return !!i && i.complete && i.naturalWidth === 256; })()`),
		browsertest.TextContains("#lightbox-title", "ComfyUI_00013_.png"),
		browsertest.TextContains("#lightbox .lb-caption", "2 of 14"),
		chromedp.KeyEvent(kb.ArrowRight),
		browsertest.TextContains("#lightbox-title", "ComfyUI_00012_.png"),
		chromedp.KeyEvent(kb.ArrowLeft), chromedp.KeyEvent(kb.ArrowLeft),
		browsertest.TextContains("#lightbox-title", "ComfyUI_00014_.png"),
		chromedp.KeyEvent(kb.ArrowLeft),
		browsertest.TextContains("#lightbox-title", "ComfyUI_00001_.png"),
		until(`document.querySelector("#lightbox-download").download === "seat01-ComfyUI_00001_.png"`),
	)
	screenshot(t, ctx, "lightbox")
	do(t, ctx, "spotlight from the lightbox", chromedp.Click(sel("#lightbox-spot")),
		until(`document.querySelector("#lightbox-spot").getAttribute("aria-pressed") === "true"`))
	if c := f.waitCall(t, "POST", "/api/spotlight"); !strings.Contains(c.Body, "ComfyUI_00001_.png") {
		t.Errorf("spotlight %s", c.Body)
	}
	do(t, ctx, "open its job", chromedp.Click(sel("#lightbox-job")), until(`!document.querySelector("#lightbox").open`),
		until(`document.querySelector("#job-dialog").open`), browsertest.TextContains("#job-dialog-title", "Job #1 "),
		until(`document.querySelectorAll("#job-dialog .jd-outputs li").length === 1`),
		chromedp.KeyEvent(kb.Escape), until(`!document.querySelector("#job-dialog").open`))
}
