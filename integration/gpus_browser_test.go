package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The admin GPU view in real Chromium when things go wrong: an instance
// set aside for failing every job (CUDA out of memory) with its reason and
// Put back, a GPU host whose agent was killed still listed with the job it
// holds and a ticking countdown, and the header's red alert; then Put back
// and Remove from the page.
func TestAdminGPUViewWhenThingsGoWrong(t *testing.T) {
	srv := startGPUServer(t, t.TempDir(), "--grace", "5m", "--seats", "3")
	a := admin{t, srv.base}
	ev := watch(t, srv.base)
	sick := startSim(t, "--oom-node", "*")
	ok := startSim(t, "--step-ms", "20", "--steps", "10")
	startAgentFor(t, srv.base, "gpu-a", "sick="+sick.base, "ok="+ok.base)
	slow := startSim(t, "--step-ms", "100", "--steps", "600")
	agentB := startAgent(t, srv.base, "gpu-b", slow)
	ev.waitWorkers(a, 3, 30*time.Second)
	a.do("POST", "/api/workers/gpu-b/0/drain", nil, nil)

	untilSetAside(t, a, ev, "gpu-a/sick")
	// A long job on gpu-b, whose agent then dies.
	a.do("POST", "/api/workers/gpu-a/ok/drain", nil, nil)
	a.do("POST", "/api/workers/gpu-b/0/undrain", nil, nil)
	held := a.submit("user002", samplerGraph("held", 600))
	ev.waitStage(held.ID, "executing", 30*time.Second)
	a.do("POST", "/api/workers/gpu-a/ok/undrain", nil, nil)
	agentB.kill9()
	ev.waitFor("gpu-b to show as disconnected", 30*time.Second, func(map[string]string, []map[string]any) bool {
		return a.worker("gpu-b/0").State == "disconnected"
	})

	ctx := browser(t)
	css := func(q string) chromedp.CSS { return chromedp.CSS(q) }
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
	}
	text := func(q string) string {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ""`, q)))
		return v
	}
	visible := func(q string) bool {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && !e.closest("[hidden]"); })()`, q)))
		return v
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 1500)`))
			t.Fatalf("%s: %v\npage: %s", what, err, body)
		}
	}
	sickCard, goneCard := `.gpu-card[data-id="gpu-a/sick"]`, `.gpu-card[data-id="gpu-b/0"]`

	step("sign in and open the GPUs",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(srv.base+"/admin#gpus"),
		chromedp.WaitVisible(css("#login-form")),
		chromedp.SendKeys(css("#secret"), adminToken),
		chromedp.Click(css("#login-submit")),
		chromedp.WaitVisible(css(goneCard)),
		chromedp.WaitVisible(css(sickCard)),
		poll(`document.querySelector("#live-dot").dataset.state === "open"`),
	)
	alert := text("#gpu-alert")
	if !visible("#gpu-alert") || !strings.Contains(alert, "GPU host gpu-b disconnected") || !strings.Contains(alert, "gpu-a/sick set aside") ||
		!strings.Contains(alert, "1 job waiting, requeued in") {
		t.Errorf("header alert: visible %v, %q", visible("#gpu-alert"), alert)
	}
	if st := text(goneCard + " .state-badge"); st != "Disconnected" {
		t.Errorf("gpu-b/0 badge %q", st)
	}
	lost := text(goneCard + " .notice.lost")
	if !strings.Contains(lost, "Its gpu-agent has been gone") || !strings.Contains(lost, "Holds 1 job") || !strings.Contains(lost, "back to the queue in") {
		t.Errorf("gpu-b/0 notice %q", lost)
	}
	if !visible(goneCard+" .remove") || visible(goneCard+" .drain") || visible(goneCard+" .put-back") {
		t.Errorf("gpu-b/0 buttons: remove %v, drain %v, put back %v", visible(goneCard+" .remove"), visible(goneCard+" .drain"), visible(goneCard+" .put-back"))
	}
	if h := text(`.agent[data-agent="gpu-b"] h3`); !strings.Contains(h, "disconnected") {
		t.Errorf("gpu-b heading %q", h)
	}
	if st, reason := text(sickCard+" .state-badge"), text(sickCard+" .notice.aside"); st != "Set aside" ||
		!strings.Contains(reason, "jobs in a row failed here") || !strings.Contains(reason, "torch.OutOfMemoryError") || !visible(sickCard+" .put-back") {
		t.Errorf("gpu-a/sick: badge %q, notice %q, put back %v", st, reason, visible(sickCard+" .put-back"))
	}
	step("the countdown ticks", poll(fmt.Sprintf(`document.querySelector(%q).textContent !== %q`, goneCard+" .notice.lost", lost)))
	if os.Getenv("SCREENSHOTS") == "1" {
		chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector("#toasts")?.replaceChildren()`))
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.MkdirAll("../docs/screenshots", 0o755)
			os.WriteFile("../docs/screenshots/live-admin-gpus.png", png, 0o644)
		}
	}

	// Fixed, then put back from the page.
	setFault(t, sick, `{}`)
	step("put back gpu-a/sick",
		chromedp.Click(css(sickCard+" .put-back")),
		poll(fmt.Sprintf(`document.querySelector(%q).dataset.state === "idle"`, sickCard)),
		poll(`!document.querySelector("#gpu-alert").textContent.includes("set aside")`),
	)
	if w := a.worker("gpu-a/sick"); w.SetAside != nil || w.State != "idle" {
		t.Errorf("after Put back: %+v", w)
	}
	// gpu-b is not coming back: Remove (asks once more) requeues its job.
	step("remove gpu-b/0",
		chromedp.Click(css(goneCard+" .remove")),
		poll(fmt.Sprintf(`document.querySelector(%q).dataset.armed === "1"`, goneCard+" .remove")),
		chromedp.Click(css(goneCard+" .remove")),
		chromedp.WaitNotPresent(css(goneCard)),
		poll(`document.querySelector("#gpu-alert").hidden`),
	)
	ev.waitDone(60*time.Second, held.ID)
	if got := a.job(held.ID); got.Status != "completed" || !strings.HasPrefix(got.Worker, "gpu-a/") {
		t.Errorf("the job gpu-b held: %+v", got)
	}
}
