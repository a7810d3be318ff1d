package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The instructor's page against a real server, agent and simulator: log in
// with a name, see a submitted job run with its bar and previews, cancel it
// with the Undo running out, move another to the top, drain an instance,
// read a failure where it happened, open a job's detail, find a job by
// number, cancel everything of a seat, read the activity in words, hide the
// codes, set a quota, fill the QR sheet, look through and download
// outputs, announce, spotlight.
func TestAdminPageLive(t *testing.T) {
	s := startStack(t)
	slow := startSim(t, "--step-ms", "80", "--steps", "60")
	startAgent(t, s.base, "gpu-b", slow)
	s.ev.waitWorkers(s.a, 2, 30*time.Second)
	s.a.do("POST", "/api/workers/gpu-a/0/drain", nil, nil) // jobs go to the slow one
	ctx := browser(t)
	css := func(q string) chromedp.CSS { return chromedp.CSS(q) }
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))(ctx, tg)
			if err != nil {
				err = fmt.Errorf("waiting for %s: %w", expr, err)
			}
			return chromedp.Void{}, err
		}
	}
	js := func(expr string) chromedp.Action[chromedp.Void] { return chromedp.Evaluate[chromedp.Void](expr) }
	text := func(q, want string) chromedp.Action[chromedp.Void] {
		return poll(fmt.Sprintf(`(document.querySelector(%q)?.textContent || "").includes(%q)`, q, want))
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			var body string
			body, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 600)`))
			t.Fatalf("%s: %v\npage: %s", what, err, body)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	tab := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.Click(css("#tab-"+name)), chromedp.WaitVisible(css("#view-"+name)),
			poll(fmt.Sprintf(`window.__admin?.views?.get(%q)?.loaded === true`, name)))
	}
	setSelect := func(q, v string) chromedp.Action[chromedp.Void] {
		return js(fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q; s.dispatchEvent(new Event("change")); })()`, q, v))
	}
	number := func(id string) int {
		var j struct {
			Number int `json:"number"`
		}
		s.a.do("GET", "/api/jobs/"+id, nil, &j)
		return j.Number
	}
	// shot takes the whole page; a dialog is taken as the window shows it.
	shot := func(name string, window ...bool) {
		if os.Getenv("SCREENSHOTS") != "1" {
			return
		}
		chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector("#toasts")?.replaceChildren()`))
		act := chromedp.FullScreenshot(100)
		if len(window) > 0 {
			act = chromedp.CaptureScreenshot()
		}
		if png, err := chromedp.Run(ctx, act); err == nil {
			os.MkdirAll("../docs/screenshots", 0o755)
			os.WriteFile("../docs/screenshots/live-admin-"+name+".png", png, 0o644)
		}
	}

	step("sign in",
		chromedp.EmulateViewport(1280, 720),
		chromedp.Navigate(s.base+"/admin"),
		chromedp.WaitVisible(css("#login-form")),
		chromedp.SendKeys(css("#secret"), adminToken),
		chromedp.SendKeys(css("#admin-name"), "Ann"),
		chromedp.Click(css("#login-submit")),
		chromedp.WaitVisible(css("#app")),
		js(`window.__admin.undoMs = 800`),
	)

	// A job appears, its bar moves and its preview shows.
	j := s.a.submit("user001", samplerGraph("live", 1))
	card := fmt.Sprintf(`#running-list [data-id=%q]`, j.ID)
	bar := fmt.Sprintf(`Number(document.querySelector(%q)?.getAttribute("aria-valuenow") || 0)`, card+" .bar")
	step("the job runs with a moving bar and a preview",
		chromedp.WaitVisible(css(card)),
		poll(bar+" >= 10"),
		poll(fmt.Sprintf(`(() => { const i = document.querySelector(%q); return !!i && !i.hidden && i.complete && i.naturalWidth > 0 })()`, card+" img.preview")),
		poll(bar+" >= 30"),
	)
	shot("queue")
	step("cancel it: the Undo runs out", chromedp.Click(css(card+" .cancel")),
		poll(fmt.Sprintf(`document.querySelector(%q)?.dataset.state === "undo"`, card)))
	s.ev.waitDone(30*time.Second, j.ID)
	if got := s.a.job(j.ID); got.Status != "cancelled" {
		t.Fatalf("after the cancel button: %+v", got)
	}

	// Move to the top.
	s.a.do("POST", "/api/queue/pause", nil, nil)
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, s.a.submit(fmt.Sprintf("user00%d", i+1), imageGraph("top", i)).ID)
	}
	last := ids[2]
	step("move the last to the top",
		chromedp.WaitVisible(css(fmt.Sprintf(`#pending-list li[data-id=%q]`, last))),
		chromedp.Click(css(fmt.Sprintf(`#pending-list li[data-id=%q] .top`, last))),
	)
	var pending struct {
		Jobs []struct {
			ID       string `json:"id"`
			Position int    `json:"position"`
		} `json:"jobs"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.a.do("GET", "/api/jobs?status=pending", nil, &pending)
		if len(pending.Jobs) > 0 && pending.Jobs[0].ID == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending order after move to top: %+v", pending.Jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Drain an instance.
	step("drain gpu-b/0", tab("gpus"),
		chromedp.WaitVisible(css(`.gpu-card[data-id="gpu-b/0"]`)),
		chromedp.Click(css(`.gpu-card[data-id="gpu-b/0"] .drain`)),
		poll(`document.querySelector('.gpu-card[data-id="gpu-b/0"] .drain').textContent.includes("Undrain")`),
	)
	// live-admin-gpus.png comes from TestAdminGPUViewWhenThingsGoWrong.
	if st := s.a.worker("gpu-b/0").State; st != "draining" {
		t.Errorf("gpu-b/0 is %s", st)
	}
	s.a.do("POST", "/api/workers/gpu-a/0/undrain", nil, nil)
	s.a.do("POST", "/api/queue/resume", nil, nil)
	s.ev.waitDone(30*time.Second, ids...)

	// A failure: where, and the whole of it.
	setFault(t, s.sim, `{"fail_node":"SaveImage","fail_message":"the disk of the GPU host is full"}`)
	bad := s.a.submit("user003", imageGraph("boom", 9))
	s.ev.waitDone(30*time.Second, bad.ID)
	setFault(t, s.sim, `{}`)
	badNo := number(bad.ID)
	frow := fmt.Sprintf(`#recent-list li[data-id=%q]`, bad.ID)
	step("the failed row", tab("queue"),
		text(frow+" .err summary", "on gpu-a/0"),
		chromedp.Click(css(frow+" .err summary")),
		text(frow+" .err .err-message", "the disk of the GPU host is full"),
		chromedp.Click(css(frow+" .num")),
		poll(`document.querySelector("#job-dialog")?.open`),
		text("#job-dialog-title", fmt.Sprintf("Job #%d · Seat 3", badNo)),
		text("#jd-instance", "gpu-a/0"),
		text("#job-dialog .jd-error", "the disk of the GPU host is full"),
		// The story, from the server's own activity log.
		text("#job-dialog .jd-history", fmt.Sprintf("Seat 3 submitted job #%d", badNo)),
		text("#job-dialog .jd-history", "of Seat 3 failed on gpu-a/0"),
		chromedp.KeyEvent(kb.Escape),
		poll(`!document.querySelector("#job-dialog").open`),
	)

	// A completed job in full.
	done := ids[0]
	step("a job's detail", chromedp.Click(css(fmt.Sprintf(`#recent-list li[data-id=%q] .num`, done))),
		poll(`document.querySelector("#job-dialog")?.open`),
		text("#jd-status", "completed"),
		poll(`(() => { const i = document.querySelector("#job-dialog .jd-outputs img"); return !!i && i.complete && i.naturalWidth > 0 })()`),
		text("#job-dialog .jd-history", "completed on gpu-"),
		chromedp.Click(css(`#job-dialog details[data-part="prompt"] summary`)),
		text(`#job-dialog details[data-part="prompt"] pre`, `"class_type": "SaveImage"`),
		js(`document.querySelector("#job-dialog").scrollTop = 0`),
	)
	shot("job", true)
	step("close it", chromedp.KeyEvent(kb.Escape), poll(`!document.querySelector("#job-dialog").open`))

	// Find by number.
	step("search #N", js(fmt.Sprintf(`(() => { const q = document.querySelector("#job-search"); q.value = "#%d"; q.dispatchEvent(new Event("input")); })()`, badNo)),
		poll(fmt.Sprintf(`[...document.querySelectorAll("#recent-list .recent-row")].map(r => r.dataset.id).join() === %q`, bad.ID)),
		chromedp.Click(css("#filter-clear")))

	// Everything of one seat, with a confirmation.
	s.a.do("POST", "/api/queue/pause", nil, nil)
	var two []string
	for i := 0; i < 3; i++ {
		two = append(two, s.a.submit("user002", imageGraph("two", i)).ID)
	}
	keep := s.a.submit("user001", imageGraph("one", 5)).ID
	step("cancel everything of seat 2",
		chromedp.WaitVisible(css(fmt.Sprintf(`#pending-list li[data-id=%q]`, two[2]))),
		setSelect("#seat-filter", "user002"),
		poll(`document.querySelectorAll("#pending-list .job-row").length === 3`),
		chromedp.Click(css("#seat-cancel")),
		poll(`document.querySelector("#confirm-dialog")?.open`),
		text("#confirm-ok", "Cancel 3 jobs"),
		chromedp.Click(css("#confirm-ok")),
		poll(`document.querySelectorAll("#pending-list .job-row").length === 0`),
		chromedp.Click(css("#filter-clear")),
	)
	s.ev.waitDone(10*time.Second, two...)
	for _, id := range two {
		if got := s.a.job(id); got.Status != "cancelled" {
			t.Errorf("seat 2's job %s is %s", id, got.Status)
		}
	}
	if got := s.a.job(keep); got.Status != "pending" {
		t.Errorf("seat 1's job is %s", got.Status)
	}
	s.a.do("POST", "/api/queue/resume", nil, nil)
	s.ev.waitDone(30*time.Second, keep)

	// The activity, in words.
	step("activity", tab("activity"),
		text("#activity-rows", "Ann drained GPU gpu-b/0"),
		text("#activity-rows", "Ann cancelled 3 jobs of seat 2"),
		text("#activity-rows", fmt.Sprintf("Job #%d of Seat 3 failed on gpu-a/0", badNo)),
		text("#activity-rows", fmt.Sprintf("Job #%d of Seat 1 was cancelled by the instructor", number(j.ID))),
		text("#activity-rows", "Admin token paused the queue"),
	)
	if raw := eval(`[...document.querySelectorAll("#activity-rows td")].map(td => td.textContent).filter(s => /POST |DELETE |PATCH |\bjob [0-9a-f]{8}\b/.test(s)).join(" | ")`); raw != "" {
		t.Errorf("raw routes or ids in the activity: %s", raw)
	}
	shot("activity")

	// Participants: hidden codes, a quota saved.
	var seats struct {
		Seats []struct {
			Code       string `json:"code"`
			MaxPending *int   `json:"max_pending"`
		} `json:"seats"`
	}
	s.a.do("GET", "/api/seats", nil, &seats)
	code := seats.Seats[1].Code
	step("participants", tab("participants"),
		text(`#seat-rows tr[data-seat="2"] .code`, code),
		chromedp.Click(css("#hide-codes")),
		poll(fmt.Sprintf(`!document.querySelector("#view-participants").innerText.includes(%q)`, code)),
		js(`document.querySelector('#seat-rows tr[data-seat="2"] input.quota').value = "2"`),
		js(`document.querySelector('#seat-rows tr[data-seat="2"] input.quota').dispatchEvent(new Event("change"))`),
		text("#toasts", "Seat 2 may hold 2 pending jobs at a time"),
		chromedp.Click(css("#hide-codes")),
	)
	s.a.do("GET", "/api/seats", nil, &seats)
	if q := seats.Seats[1].MaxPending; q == nil || *q != 2 {
		t.Errorf("seat 2's quota: %v", q)
	}

	// The QR sheet's text, kept on the server.
	step("QR sheet", chromedp.Navigate(s.base+"/admin/seats/print"), poll(`document.body.dataset.ready === "1"`),
		chromedp.SendKeys(css("#sheet-title"), "Live day"),
		chromedp.SendKeys(css("#sheet-wifi"), "Room-3"),
		chromedp.Click(css("#sheet-save")), text("#sheet-status", "Saved"),
		chromedp.Reload(), poll(`document.body.dataset.ready === "1"`),
		text(`#sheet .card[data-seat="1"] .title`, "Live day"), text(`#sheet .card[data-seat="1"] .wifi`, "Room-3"),
		poll(`(() => { const i = document.querySelector("#intro img"); return !!i && i.complete && i.naturalWidth > 0 })()`),
	)
	var sheet struct {
		Title    string `json:"title"`
		WiFiName string `json:"wifi_name"`
	}
	s.a.do("GET", "/api/sheet", nil, &sheet)
	if sheet.Title != "Live day" || sheet.WiFiName != "Room-3" {
		t.Errorf("the sheet on the server: %+v", sheet)
	}

	// Outputs: the order, the lightbox, a download.
	step("outputs, oldest first", chromedp.Navigate(s.base+"/admin#outputs"), chromedp.WaitVisible(css("#app")),
		poll(`window.__admin?.views?.get("outputs")?.loaded === true`),
		setSelect("#outputs-order", "oldest"),
		poll(fmt.Sprintf(`document.querySelector("#output-grid figure")?.dataset.job === %q`, ids[0])),
		chromedp.Click(css("#output-grid figure .media")),
		poll(`(() => { const i = document.querySelector("#lightbox .lb-media img"); return !!i && i.complete && i.naturalWidth > 0 })()`),
		chromedp.KeyEvent(kb.ArrowRight),
		poll(fmt.Sprintf(`document.querySelector("#lightbox .lb-stage").dataset.job !== %q`, ids[0])),
		chromedp.KeyEvent(kb.Escape),
	)
	if got := eval(`fetch(document.querySelector("#output-grid figure .download").href).then(r => r.status + " " + r.headers.get("content-type"))`); got != "200 image/png" {
		t.Errorf("download: %s", got)
	}
	if dl := eval(`document.querySelector("#output-grid figure .download").download`); !strings.HasPrefix(dl, "seat01-") {
		t.Errorf("download name %q", dl)
	}

	// An announcement.
	step("announce", tab("announcements"),
		chromedp.SendKeys(css("#announce-text"), "Break until 11:00"),
		chromedp.Click(css("#announce-send")),
		poll(`document.querySelector("#announce-list li .text")?.textContent.includes("Break until 11:00")`),
	)
	var notes struct {
		Announcements []struct{ Text string } `json:"announcements"`
	}
	s.a.do("GET", "/api/announcements", nil, &notes)
	if len(notes.Announcements) != 1 || notes.Announcements[0].Text != "Break until 11:00" {
		t.Errorf("announcements: %+v", notes)
	}

	// Spotlight an output.
	var named struct {
		Result struct {
			Outputs []struct{ Name string } `json:"outputs"`
		} `json:"result"`
	}
	s.a.do("GET", "/api/jobs/"+ids[0], nil, &named)
	fig := fmt.Sprintf(`#output-grid figure[data-job=%q][data-name=%q]`, ids[0], named.Result.Outputs[0].Name)
	step("spotlight", tab("outputs"), setSelect("#outputs-order", "newest"),
		chromedp.WaitVisible(css(fig)),
		chromedp.Click(css(fig+" .spot")),
		chromedp.WaitVisible(css("#spotlight-now")),
	)
	shot("outputs")
	var spot struct{ Name string }
	s.a.do("GET", "/api/spotlight", nil, &spot)
	if spot.Name != named.Result.Outputs[0].Name {
		t.Errorf("spotlight is %+v", spot)
	}
	step("the projector view", chromedp.Navigate(s.base+"/admin/spotlight"),
		poll(`(() => { const i = document.querySelector("img"); return !!i && i.complete && i.naturalWidth > 0 })()`))
	shot("spotlight")
}
