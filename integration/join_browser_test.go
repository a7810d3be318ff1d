package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/comfy-workshop/workshop/internal/browsertest"
)

// A participant's first minute on a phone, in a real browser: the bare
// address asks for the join code; a wrong one says so and keeps what was
// typed; the right one, typed in capitals with a space, opens their
// ComfyUI; the start page then offers the way back; a disabled seat says
// so. SCREENSHOTS=1 refreshes docs/screenshots/join-*.png.
func TestBrowserJoinPage(t *testing.T) {
	s := startStack(t)
	code := s.seatCode(1)
	ctx := browsertest.Start(t, 390, 844, 90*time.Second)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 600)`))
			t.Fatalf("%s: %v\npage: %s", what, err, body)
		}
	}
	shot := func(name string) {
		if os.Getenv("SCREENSHOTS") != "1" {
			return
		}
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile("../docs/screenshots/"+name+".png", png, 0o644)
		}
	}
	eval := func(expr string) string {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		return v
	}

	step("open the bare address",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(s.base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#join-code")),
		browsertest.TextContains("h1", "Join the workshop"),
		browsertest.TextContains("#admin-link", "admin page"),
	)
	if focused := eval(`document.activeElement.id`); focused != "join-code" {
		t.Errorf("the code field is not focused: %q", focused)
	}
	shot("join-page")

	step("a wrong code",
		chromedp.SendKeys(chromedp.CSS("#join-code"), "wrongcode2"),
		chromedp.Click(chromedp.CSS("#join-submit")),
		chromedp.WaitVisible(chromedp.CSS("#join-error")),
		browsertest.TextContains("#join-error", "not valid"),
	)
	if typed := eval(`document.querySelector("#join-code").value`); typed != "wrongcode2" {
		t.Errorf("the wrong code is not kept to correct: %q", typed)
	}
	shot("join-page-wrong-code")

	typed := strings.ToUpper(code[:5]) + " " + strings.ToUpper(code[5:])
	step("the right code, as someone types it from a card",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#join-code").value = "", null`),
		chromedp.SendKeys(chromedp.CSS("#join-code"), typed),
		chromedp.Click(chromedp.CSS("#join-submit")),
		chromedp.WaitVisible(chromedp.CSS("#queue")), // the simulator's ComfyUI page
	)
	if loc := eval(`location.pathname`); loc != "/user/1/" {
		t.Errorf("the code led to %s", loc)
	}

	step("back at the start page, the way on",
		chromedp.Navigate(s.base+"/join/"),
		chromedp.WaitVisible(chromedp.CSS("#join-continue")),
		browsertest.TextContains("#join-continue", "seat 1"),
	)

	if st := s.a.do("PATCH", "/api/seats/1", map[string]any{"disabled": true}, nil); st != 200 {
		t.Fatal(st)
	}
	step("a disabled seat",
		chromedp.Navigate(s.base+"/user/1/"),
		browsertest.TextContains("h1", "This seat is disabled"),
		browsertest.TextContains("#join-error", "Seat 1 is disabled: ask the instructor."),
	)
	shot("join-page-disabled")
}
