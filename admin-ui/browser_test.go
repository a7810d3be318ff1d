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

	"github.com/chromedp/chromedp"

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

func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("SCREENSHOTS") != "1" {
		return
	}
	do(t, ctx, "images loaded before the screenshot "+name,
		js(`document.querySelector("#toasts")?.replaceChildren()`),
		until(`[...document.images].every(i => i.complete)`),
		// Let the transitions (progress bars, fades) finish first.
		until(`document.getAnimations().every(a => a.playState !== "running")`))
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
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

	do(t, ctx, "cancel the running job", chromedp.Click(sel(card+" .cancel")))
	c := f.waitCall(t, "DELETE", "/api/jobs/"+j.ID)
	if !c.CSRFOK {
		t.Errorf("DELETE carried X-CSRF-Token %q, want the session's", c.CSRF)
	}
	do(t, ctx, "the cancelled job leaves the running list",
		chromedp.WaitNotPresent(sel(card)),
		browsertest.TextContains(fmt.Sprintf(`#recent-list li[data-id=%q] .status`, j.ID), "cancelled"),
		browsertest.TextContains("#count-running", "3"),
	)

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
	screenshot(t, ctx, "participants")
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
		chromedp.SendKeys(sel("#activity-text"), "gpu-1"),
		until(`document.querySelectorAll("#activity-rows tr").length === 7`),
		js(`(() => { const q = document.querySelector("#activity-text"); q.value = ""; q.dispatchEvent(new Event("input")); })()`),
		js(`(() => { const k = document.querySelector("#activity-kind"); k.value = "admin"; k.dispatchEvent(new Event("change")); })()`),
		until(`document.querySelectorAll("#activity-rows tr").length === 8`),
	)
	f.push(map[string]any{"type": "activity", "data": map[string]any{"id": "live1", "time": time.Now().UTC().Format(time.RFC3339),
		"actor": "admin", "kind": "admin", "action": "drained", "detail": "gpu-1/1"}})
	do(t, ctx, "a live entry", browsertest.TextContains("#activity-rows tr:first-child", "drained"))

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
	screenshot(t, ctx, "qr-sheet")

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
