package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/comfy-workshop/workshop/internal/browsertest"
)

// browser starts headless Chromium, or skips where it is not installed
// (never in CI, which installs it).
func browser(t testing.TB) context.Context {
	t.Helper()
	return browsertest.Start(t, 1280, 800, 90*time.Second)
}

// A participant joins by link in a real browser, lands in their ComfyUI
// (here the simulator's page, served through the tunnel and the mirror),
// queues a prompt and sees live progress and the image.
func TestBrowserJoinQueueAndSeeImage(t *testing.T) {
	// One slow simulator, so progress is there to see (with a fast one
	// beside it the job may finish before the page shows a step).
	s := startGPUStack(t, "--seats", "3", "--extension-test-page").withSim("--step-ms", "60", "--steps", "15")
	ctx := browser(t)
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))
	}
	eval := func(expr string) string {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		return v
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/join/"+s.seatCode(1)),
		chromedp.WaitVisible(chromedp.CSS("#queue")),
	); err != nil {
		t.Fatal(err)
	}
	if loc := eval(`location.href`); !strings.HasSuffix(loc, "/user/1/") {
		t.Fatalf("landed on %s", loc)
	}
	err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#prompt"), "a lighthouse at dusk"),
		chromedp.Click(chromedp.CSS("#queue")),
		// Progress streams in through the participant's socket...
		poll(`document.querySelector("#status").textContent.startsWith("step")`),
		// ...then the image, fetched from the server's output store.
		poll(`(() => { const i = document.querySelector("#gallery img"); return !!i && i.complete && i.naturalWidth > 0 })()`),
	)
	if err != nil {
		t.Fatalf("queue in the browser: %v (status %q, error %q)", err, eval(`document.querySelector("#status").textContent`), eval(`document.querySelector("#error").textContent`))
	}
	if src := eval(`document.querySelector("#gallery img").src`); !strings.Contains(src, "view?") {
		t.Errorf("image source %q", src)
	}

	// The workshop extension, on its test page against the real server:
	// the panel shows the queue position, then the output.
	if st := s.a.do("POST", "/api/queue/pause", nil, nil); st != 200 {
		t.Fatal(st)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(s.base+"/user/1/workshop-test/?base=/user/1/&ws=1"),
		chromedp.WaitVisible(chromedp.CSS("#comfy-workshop-badge")),
		chromedp.Evaluate[chromedp.Void](`fetch("/user/1/api/prompt", {method: "POST", body: JSON.stringify({prompt: {
			"1": {class_type: "EmptyImage", inputs: {width: 64, height: 64, batch_size: 1, color: 255}},
			"2": {class_type: "SaveImage", inputs: {images: ["1", 0], filename_prefix: "ext"}}}})}), null`),
		poll(`document.querySelector("#comfy-workshop-badge .cw-queue").textContent.includes("Position 1")`),
	)
	if err != nil {
		t.Fatalf("extension badge: %v (badge %q)", err, eval(`document.querySelector("#comfy-workshop-badge").textContent`))
	}
	s.a.do("POST", "/api/queue/resume", nil, nil)
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#comfy-workshop-badge")),
		poll(`[...document.querySelectorAll(".cw-outputs-list li .cw-filename")].some(a => a.textContent.startsWith("ext_"))`),
	)
	if err != nil {
		t.Fatalf("extension outputs: %v", err)
	}
	if os.Getenv("SCREENSHOTS") == "1" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.MkdirAll("../docs/screenshots", 0o755)
			os.WriteFile("../docs/screenshots/participant-extension.png", png, 0o644)
		}
	}
}
