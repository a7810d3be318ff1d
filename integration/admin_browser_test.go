package integration

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The instructor's page against a real server, agent and simulator: log in,
// see a submitted job appear and its progress bar move, cancel it, move
// another to the top, drain an instance, announce, spotlight an output.
func TestAdminPageLive(t *testing.T) {
	s := startStack(t)
	slow := startSim(t, "--step-ms", "80", "--steps", "60")
	startAgent(t, s.base, "gpu-b", slow)
	s.ev.waitWorkers(s.a, 2, 30*time.Second)
	s.a.do("POST", "/api/workers/gpu-a/0/drain", nil, nil) // jobs go to the slow one
	ctx := browser(t)
	css := func(q string) chromedp.CSS { return chromedp.CSS(q) }
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			var body string
			body, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 600)`))
			t.Fatalf("%s: %v\npage: %s", what, err, body)
		}
	}
	tab := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.Click(css("#tab-"+name)), chromedp.WaitVisible(css("#view-"+name)),
			poll(fmt.Sprintf(`window.__admin?.views?.get(%q)?.loaded === true`, name)))
	}
	shot := func(name string) {
		if os.Getenv("SCREENSHOTS") != "1" {
			return
		}
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.MkdirAll("../docs/screenshots", 0o755)
			os.WriteFile("../docs/screenshots/live-admin-"+name+".png", png, 0o644)
		}
	}

	step("sign in",
		chromedp.EmulateViewport(1280, 720),
		chromedp.Navigate(s.base+"/admin"),
		chromedp.WaitVisible(css("#login-form")),
		chromedp.SendKeys(css("#secret"), adminToken),
		chromedp.Click(css("#login-submit")),
		chromedp.WaitVisible(css("#app")),
	)

	// A job appears and its progress bar moves.
	j := s.a.submit("user001", samplerGraph("live", 1))
	card := fmt.Sprintf(`#running-list [data-id=%q]`, j.ID)
	bar := fmt.Sprintf(`Number(document.querySelector(%q)?.getAttribute("aria-valuenow") || 0)`, card+" .bar")
	step("the job runs with a moving bar",
		chromedp.WaitVisible(css(card)),
		poll(bar+" >= 10"),
		poll(bar+" >= 30"),
	)
	shot("queue")
	step("cancel it", chromedp.Click(css(card+" .cancel")))
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
	if st := s.a.workerState("gpu-b/0"); st != "draining" {
		t.Errorf("gpu-b/0 is %s", st)
	}
	s.a.do("POST", "/api/workers/gpu-a/0/undrain", nil, nil)
	s.a.do("POST", "/api/queue/resume", nil, nil)
	s.ev.waitDone(30*time.Second, ids...)

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
	out := s.a.job(ids[0]).Result.Outputs[0]
	fig := fmt.Sprintf(`#output-grid figure[data-job=%q][data-name=%q]`, ids[0], out.Filename)
	if out.Filename == "" {
		t.Fatalf("no output name for %s", ids[0])
	}
	var named struct {
		Result struct {
			Outputs []struct{ Name string } `json:"outputs"`
		} `json:"result"`
	}
	s.a.do("GET", "/api/jobs/"+ids[0], nil, &named)
	fig = fmt.Sprintf(`#output-grid figure[data-job=%q][data-name=%q]`, ids[0], named.Result.Outputs[0].Name)
	step("spotlight", tab("outputs"),
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
