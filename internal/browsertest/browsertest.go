// Package browsertest starts Debian's headless Chromium for the project's
// browser tests, with the flags this workplace needs, and reports the page's
// console when a test fails.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Path is where Debian's chromium package installs the browser.
const Path = "/usr/bin/chromium"

// Start launches Chromium with a window of width x height and returns a
// context for chromedp that ends after timeout. Without Chromium the test
// is skipped, except in CI (CI=true), which installs it: there it fails.
// opts are added to the tab's context (a [Requests] listener, say).
func Start(t testing.TB, width, height int, timeout time.Duration, opts ...chromedp.ContextOption) context.Context {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI: %v (apt-get install -y chromium)", err)
		}
		t.Skipf("chromium not installed at %s (apt-get install -y chromium); skipping the browser test", Path)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(Path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		// Without these, Chromium keeps trying hosts this machine cannot reach.
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
		// Timers and frames in background tabs keep running (a projector tab).
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()),
		// Shared-memory files (disable-dev-shm-usage) go to TMPDIR: keep them
		// in the test's folder, which the test removes.
		chromedp.Env("TMPDIR="+t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	t.Cleanup(cancelAlloc) // kills Chromium and waits for it
	ctx, cancel := chromedp.NewContext(alloc, append([]chromedp.ContextOption{chromedp.WithListener(console(t))}, opts...)...)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

// console keeps the page's console lines and exceptions, logged if the
// test fails.
func console(t testing.TB) func(ev any) {
	var mu sync.Mutex
	var lines []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() && len(lines) > 0 {
			t.Logf("browser console:\n%s", strings.Join(lines, "\n"))
		}
	})
	return func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				if a.Value != nil {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			line = fmt.Sprintf("exception: %s %s (%s:%d)", d.Text, desc, d.URL, d.LineNumber)
		default:
			return
		}
		mu.Lock()
		lines = append(lines, line)
		mu.Unlock()
	}
}

// PollOpts polls every 25 ms (not on animation frames, which a background
// tab does not get) for up to 10 s (generous for a loaded CI machine; the
// conditions hold within milliseconds).
var PollOpts = []chromedp.PollOption{chromedp.WithPollingInterval(25 * time.Millisecond), chromedp.WithPollingTimeout(10 * time.Second)}

// TextContains waits until the element's text contains want, and says what
// it found instead when it gives up.
func TextContains(sel, want string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[chromedp.Void](fmt.Sprintf(
			`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want),
			PollOpts...)(ctx, t)
		if err != nil {
			now, _ := chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent ?? "(no element)"`, sel))(ctx, t)
			return chromedp.Void{}, fmt.Errorf("waiting for %s to contain %q (it says %q): %w", sel, want, now, err)
		}
		return chromedp.Void{}, nil
	}
}

// Dialogs answers every JavaScript dialog of a tab with OK, as a person
// who means it would ("Leave site?" on a reload with unsaved work, a
// confirm; a prompt gets the text SetPrompt gave), and keeps their
// messages.
type Dialogs struct {
	mu       sync.Mutex
	prompt   string
	messages []string
}

// AcceptDialogs starts answering the tab's dialogs until ctx ends.
func AcceptDialogs(ctx context.Context) *Dialogs {
	d := &Dialogs{}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			d.mu.Lock()
			d.messages = append(d.messages, ev.Message)
			text := d.prompt
			d.mu.Unlock()
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true, PromptText: text})
		}
	}()
	return d
}

// SetPrompt sets what the next prompts are answered with.
func (d *Dialogs) SetPrompt(text string) {
	d.mu.Lock()
	d.prompt = text
	d.mu.Unlock()
}

// Messages returns the dialogs' messages so far.
func (d *Dialogs) Messages() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.messages...)
}
