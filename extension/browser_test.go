package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/comfy-workshop/workshop/internal/browsertest"
)

// fakeSeat is one participant's state as the fake workshop API answers it.
type fakeSeat struct {
	meStatus int
	me       map[string]any
	outputs  []map[string]any
}

// fakeWorkshop stands in for the server's /user/{n}/api/workshop/... routes.
type fakeWorkshop struct {
	mu     sync.Mutex
	seats  map[string]*fakeSeat
	png    []byte
	queued int
}

func newFakeWorkshop(t *testing.T) *fakeWorkshop {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := range 64 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(60 + 2*x), uint8(90 + y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return &fakeWorkshop{seats: map[string]*fakeSeat{}, png: buf.Bytes()}
}

func (f *fakeWorkshop) set(n string, fn func(s *fakeSeat)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.seats[n]
	if s == nil {
		s = &fakeSeat{meStatus: http.StatusOK}
		f.seats[n] = s
	}
	fn(s)
}

func (f *fakeWorkshop) routes(mux *http.ServeMux) {
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /user/{n}/api/workshop/me", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		s := f.seats[r.PathValue("n")]
		if s == nil || s.meStatus != http.StatusOK {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		writeJSON(w, s.me)
	})
	mux.HandleFunc("GET /user/{n}/api/workshop/outputs", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		s := f.seats[r.PathValue("n")]
		if s == nil || s.meStatus != http.StatusOK || r.URL.Query().Get("limit") != "100" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"outputs": s.outputs})
	})
	mux.HandleFunc("GET /user/{n}/api/view", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Query().Get("filename"), ".png") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(f.png)
	})
	mux.HandleFunc("POST /user/{n}/api/prompt", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.queued++
		n := f.queued
		f.mu.Unlock()
		writeJSON(w, map[string]any{"prompt_id": fmt.Sprintf("p%d", n), "number": n, "node_errors": map[string]any{}})
	})
}

func output(seat int, name, created string) map[string]any {
	return map[string]any{
		"job_id":     "job-" + name,
		"filename":   name,
		"type":       "output",
		"subfolder":  "",
		"url":        fmt.Sprintf("/user/%d/api/view?filename=%s&type=output&subfolder=", seat, name),
		"mime":       "image/png",
		"size":       123456,
		"created_at": created,
	}
}

func queue(position, eta any) map[string]any {
	return map[string]any{"paused": false, "pending": 3, "running": 1, "position": position, "eta_seconds": eta}
}

// browser starts headless Chromium for the test, or skips (fails under CI).
func browser(t *testing.T) context.Context {
	t.Helper()
	return browsertest.Start(t, 1280, 800, 50*time.Second)
}

// receive feeds one socket message to the stand-in api.
func receive(t *testing.T, msgType string, data any) chromedp.Action[chromedp.Void] {
	b, err := json.Marshal(map[string]any{"type": msgType, "data": data})
	if err != nil {
		t.Fatal(err)
	}
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.__standinApi.receive(%s)`, b))
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// noEscapes checks that nothing escaped an extension into the stand-in app.
func noEscapes(t *testing.T, ctx context.Context) {
	t.Helper()
	errs := eval[[]string](t, ctx, `window.__standin.errors`)
	if len(errs) > 0 {
		t.Fatalf("errors reached the stand-in app: %q", errs)
	}
	if done := eval[bool](t, ctx, `window.__standin.setupDone["comfy.workshop"] === true`); !done {
		t.Fatal("setup of comfy.workshop did not complete")
	}
}

func TestBrowser(t *testing.T) {
	start := time.Now()
	ctx := browser(t)

	fake := newFakeWorkshop(t)
	mux := http.NewServeMux()
	mux.Handle("GET /test/", TestPage())
	fake.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	fake.set("7", func(s *fakeSeat) {
		s.me = map[string]any{
			"seat": 7, "user_id": "user007", "name": "Alice",
			"gpus":  map[string]any{"connected": 2, "total": 2},
			"queue": queue(2, 300),
			"announcements": []any{
				map[string]any{"id": "a1", "text": "Break at 11:00", "created_at": "2026-11-28T10:00:00Z"},
			},
		}
		s.outputs = []map[string]any{
			output(7, "t_00002_.png", "2026-11-28T10:05:00Z"),
			output(7, "t_00001_.png", "2026-11-28T10:01:00Z"),
		}
	})

	t.Run("live", func(t *testing.T) {
		do(t, ctx, "load page",
			chromedp.Navigate(srv.URL+"/test/?base=/user/7/"),
			chromedp.WaitVisible(chromedp.CSS("#comfy-workshop-badge")),
			browsertest.TextContains("#comfy-workshop-badge .cw-name", "Alice"),
			browsertest.TextContains("#comfy-workshop-badge .cw-seat", "Seat 7"),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "Position 2"),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "~5 min"),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "GPUs ready (2)"),
		)
		if got := eval[string](t, ctx, `document.querySelector(".cw-gpu").dataset.state`); got != "ready" {
			t.Errorf("gpu state = %q, want ready", got)
		}

		// The announcement from /workshop/me became a toast once.
		do(t, ctx, "announcement toast",
			chromedp.Poll[chromedp.Void](`window.__standin.toasts.some(t => t.detail === "Break at 11:00")`,
				browsertest.PollOpts...))

		// Live position change.
		do(t, ctx, "workshop_status position 1",
			receive(t, "workshop_status", map[string]any{
				"seat": 7, "user_id": "user007", "name": "Alice",
				"gpus": map[string]any{"connected": 2, "total": 2}, "queue": queue(1, 30),
			}),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "Position 1"),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "< 1 min"),
		)

		// GPUs gone (reconnecting), none at all, the server unreachable,
		// then all back: each said in its own words.
		do(t, ctx, "GPUs reconnecting",
			receive(t, "workshop_status", map[string]any{
				"gpus": map[string]any{"connected": 0, "total": 2}, "queue": queue(1, nil),
			}),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "GPUs reconnecting — your jobs wait in the queue"),
		)
		if got := eval[string](t, ctx, `document.querySelector(".cw-gpu").dataset.state`); got != "reconnecting" {
			t.Errorf("gpu state = %q, want reconnecting", got)
		}
		if got := eval[string](t, ctx, `document.querySelector(".cw-queue").textContent`); got != "Position 1" {
			t.Errorf("queue text with unknown eta = %q, want %q", got, "Position 1")
		}
		do(t, ctx, "no GPU yet",
			receive(t, "workshop_status", map[string]any{"gpus": map[string]any{"connected": 0, "total": 0}}),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "No GPU connected yet — your jobs wait in the queue"),
		)
		do(t, ctx, "server unreachable",
			chromedp.Evaluate[chromedp.Void](`window.__standinApi.dispatchCustomEvent("reconnecting")`),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "Workshop server unreachable"),
		)
		if got := eval[string](t, ctx, `document.querySelector(".cw-gpu").dataset.state`); got != "offline" {
			t.Errorf("gpu state = %q, want offline", got)
		}
		do(t, ctx, "GPUs back",
			receive(t, "workshop_status", map[string]any{"gpus": map[string]any{"connected": 2, "total": 2}}),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "GPUs ready (2)"),
		)

		// A live announcement becomes a toast.
		do(t, ctx, "live announcement",
			receive(t, "workshop_announcement", map[string]any{
				"id": "a2", "text": "Lunch at 12:30. Your queued jobs keep running.", "created_at": "2026-11-28T12:00:00Z",
			}),
			chromedp.Poll[chromedp.Void](`window.__standin.toasts.some(t => t.detail === "Lunch at 12:30. Your queued jobs keep running.")`,
				browsertest.PollOpts...),
		)
		if n := eval[int](t, ctx, `window.__standin.toasts.length`); n != 2 {
			t.Errorf("toasts = %d, want 2 (one per announcement)", n)
		}

		// The outputs panel: open it from the badge (the sidebar tab command).
		do(t, ctx, "open outputs",
			chromedp.Click(chromedp.CSS("#comfy-workshop-badge .cw-badge-main")),
			chromedp.WaitVisible(chromedp.CSS("#standin-sidebar .cw-panel")),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll(".cw-outputs-list > li").length === 2`,
				browsertest.PollOpts...),
			browsertest.TextContains(".cw-outputs-list > li:first-child .cw-filename", "t_00002_.png"),
			browsertest.TextContains(".cw-announcements li:first-child", "Lunch at 12:30"),
		)
		if tabs := eval[[]string](t, ctx, `window.__standin.sidebarTabs`); len(tabs) != 1 || tabs[0] != "workshop-outputs" {
			t.Errorf("sidebar tabs = %q", tabs)
		}

		// A new output arrives over the socket and goes on top, with a working link.
		newest := output(7, "t_00003_.png", "2026-11-28T10:09:00Z")
		fake.set("7", func(s *fakeSeat) { s.outputs = append([]map[string]any{newest}, s.outputs...) })
		do(t, ctx, "workshop_output",
			chromedp.Evaluate[chromedp.Void](`document.querySelector(".cw-outputs-list > li:first-child").__kept = true`),
			receive(t, "workshop_output", newest),
			browsertest.TextContains(".cw-outputs-list > li:first-child .cw-filename", "t_00003_.png"),
		)
		if n := eval[int](t, ctx, `document.querySelectorAll(".cw-outputs-list > li").length`); n != 3 {
			t.Errorf("outputs = %d, want 3", n)
		}
		if !eval[bool](t, ctx, `document.querySelectorAll(".cw-outputs-list > li")[1].__kept === true`) {
			t.Error("prepending an output rebuilt the existing items (their thumbnails would reload)")
		}
		href := eval[string](t, ctx, `document.querySelector(".cw-outputs-list > li:first-child .cw-filename").href`)
		if want := srv.URL + "/user/7/api/view?filename=t_00003_.png&type=output&subfolder="; href != want {
			t.Errorf("link = %q, want %q", href, want)
		}
		if dl := eval[string](t, ctx, `document.querySelector(".cw-outputs-list > li:first-child .cw-download").download`); dl != "t_00003_.png" {
			t.Errorf("download name = %q", dl)
		}
		got := eval[string](t, ctx, `fetch(document.querySelector(".cw-outputs-list > li:first-child .cw-filename").href)
			.then(r => r.status + " " + r.headers.get("content-type"))`)
		if got != "200 image/png" {
			t.Errorf("following the output link: %s", got)
		}
		do(t, ctx, "thumbnail loads",
			chromedp.Poll[chromedp.Void](`(() => { const i = document.querySelector(".cw-outputs-list > li:first-child img"); return !!i && i.complete && i.naturalWidth === 64; })()`,
				browsertest.PollOpts...))

		// ComfyUI's own status message makes it refetch /workshop/me.
		fake.set("7", func(s *fakeSeat) { s.me["queue"] = queue(3, 90) })
		do(t, ctx, "status refresh",
			receive(t, "status", map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": 4}}}),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "Position 3"),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "~2 min"),
		)
		// And so does a reconnect.
		fake.set("7", func(s *fakeSeat) { s.me["queue"] = queue(nil, nil); s.me["queue"].(map[string]any)["pending"] = 0 })
		do(t, ctx, "reconnect refresh",
			chromedp.Evaluate[chromedp.Void](`window.__standinApi.reconnect()`),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "Your job is running"),
		)

		if unknown := eval[[]string](t, ctx, `window.__standinApi.unknown`); len(unknown) != 0 {
			t.Errorf("message types dropped as unknown (no listener registered): %q", unknown)
		}
		if same := eval[bool](t, ctx, `window.__standinApi.queuePrompt === window.__standin.originalQueuePrompt`); !same {
			t.Error("the extension replaced api.queuePrompt")
		}
		noEscapes(t, ctx)

		if os.Getenv("SCREENSHOTS") == "1" {
			do(t, ctx, "screenshot state",
				receive(t, "workshop_status", map[string]any{"queue": queue(2, 240)}),
				browsertest.TextContains("#comfy-workshop-badge .cw-queue", "Position 2"),
				chromedp.Poll[chromedp.Void](`[...document.images].every(i => i.complete)`, browsertest.PollOpts...),
			)
			shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			dir := filepath.Join("..", "docs", "screenshots")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "extension.png"), shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", filepath.Join(dir, "extension.png"))
		}

		// After a reload the same announcements are not toasted again.
		do(t, ctx, "reload",
			chromedp.Navigate(srv.URL+"/test/?base=/user/7/&reloaded=1"),
			chromedp.Poll[chromedp.Void](`window.__standin.ready === true`, browsertest.PollOpts...),
			browsertest.TextContains("#comfy-workshop-badge .cw-name", "Alice"),
			chromedp.Click(chromedp.CSS("#comfy-workshop-badge .cw-badge-main")),
			browsertest.TextContains("#standin-sidebar .cw-announcements", "Break at 11:00"),
		)
		if n := eval[int](t, ctx, `window.__standin.toasts.length`); n != 0 {
			t.Errorf("after a reload, %d announcements were toasted again", n)
		}
		noEscapes(t, ctx)
	})

	t.Run("status fails", func(t *testing.T) {
		fake.set("8", func(s *fakeSeat) { s.meStatus = http.StatusInternalServerError })
		do(t, ctx, "load page",
			chromedp.Navigate(srv.URL+"/test/?base=/user/8/"),
			chromedp.WaitVisible(chromedp.CSS("#comfy-workshop-badge")),
			chromedp.Poll[chromedp.Void](`window.__standin.ready === true`, browsertest.PollOpts...),
			browsertest.TextContains("#comfy-workshop-badge .cw-queue", "Workshop status unavailable"),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "Workshop server unreachable"),
		)
		noEscapes(t, ctx)

		// Queueing still works, through the frontend's own queuePrompt.
		do(t, ctx, "queue a prompt",
			chromedp.Click(chromedp.CSS("#standin-queue")),
			chromedp.Poll[chromedp.Void](`window.__standin.lastQueued?.prompt_id?.startsWith("p")`,
				browsertest.PollOpts...),
		)
		// Garbage over the socket does not break anything either.
		do(t, ctx, "garbage messages",
			receive(t, "workshop_status", "not an object"),
			receive(t, "workshop_status", nil),
			receive(t, "workshop_output", map[string]any{"url": "javascript:alert(1)", "filename": "x.png"}),
			receive(t, "workshop_announcement", 42),
		)
		if n := eval[int](t, ctx, `document.querySelectorAll(".cw-outputs-list > li").length`); n != 0 {
			t.Errorf("a javascript: output was listed")
		}
		noEscapes(t, ctx)

		// The server recovers; the reconnect picks it up.
		fake.set("8", func(s *fakeSeat) {
			s.meStatus = http.StatusOK
			s.me = map[string]any{"seat": 8, "user_id": "user008", "name": "",
				"gpus": map[string]any{"connected": 0, "total": 0}, "queue": queue(nil, nil)}
		})
		do(t, ctx, "recovers",
			chromedp.Evaluate[chromedp.Void](`window.__standinApi.reconnect()`),
			browsertest.TextContains("#comfy-workshop-badge .cw-name", "Seat 8"),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "No GPU connected yet"),
		)
		noEscapes(t, ctx)
	})

	t.Run("many announcements on load", func(t *testing.T) {
		var notes []any
		for i := 1; i <= 8; i++ {
			notes = append(notes, map[string]any{"id": fmt.Sprintf("m%d", i), "text": fmt.Sprintf("Note %d", i),
				"created_at": fmt.Sprintf("2026-11-28T10:%02d:00Z", i)})
		}
		fake.set("10", func(s *fakeSeat) {
			s.me = map[string]any{"seat": 10, "gpus": map[string]any{"connected": 1, "total": 1}, "queue": queue(nil, nil), "announcements": notes}
		})
		// The newest, and one line for the other seven: not eight toasts.
		do(t, ctx, "load page",
			chromedp.Navigate(srv.URL+"/test/?base=/user/10/"),
			chromedp.Poll[chromedp.Void](`window.__standin.toasts.length >= 2`, browsertest.PollOpts...),
		)
		toasts := eval[[]string](t, ctx, `window.__standin.toasts.map(t => t.detail)`)
		if len(toasts) != 2 || toasts[0] != "Note 8" || !strings.HasPrefix(toasts[1], "7 earlier announcements") {
			t.Errorf("toasts on load: %q", toasts)
		}
	})

	t.Run("legacy frontend", func(t *testing.T) {
		fake.set("9", func(s *fakeSeat) {
			s.me = map[string]any{"seat": 9, "name": "Bob", "gpus": map[string]any{"connected": 1, "total": 1},
				"queue":         queue(nil, nil),
				"announcements": []any{map[string]any{"id": "b1", "text": "Welcome <b>all</b> <img src=x onerror=alert(1)>", "created_at": "2026-11-28T09:00:00Z"}}}
			s.outputs = []map[string]any{output(9, "b_00001_.png", "2026-11-28T10:00:00Z")}
		})
		do(t, ctx, "load page without extensionManager",
			chromedp.Navigate(srv.URL+"/test/?base=/user/9/&legacy=1"),
			browsertest.TextContains("#comfy-workshop-badge .cw-name", "Bob"),
			browsertest.TextContains("#comfy-workshop-badge .cw-gpu-text", "GPUs ready (1)"),
			// The fallback toast and the panel show the text as text, never as HTML.
			browsertest.TextContains(".cw-toasts .cw-toast-text", "Welcome <b>all</b> <img src=x onerror=alert(1)>"),
			chromedp.Click(chromedp.CSS("#comfy-workshop-badge .cw-badge-main")),
			chromedp.WaitVisible(chromedp.CSS("#comfy-workshop-floating .cw-panel")),
			browsertest.TextContains("#comfy-workshop-floating .cw-outputs-list", "b_00001_.png"),
			browsertest.TextContains("#comfy-workshop-floating .cw-announcements", "Welcome <b>all</b>"),
		)
		if n := eval[int](t, ctx, `document.querySelectorAll(".cw-toasts b, .cw-toasts img, .cw-panel b, .cw-panel img:not(.cw-thumb img)").length`); n != 0 {
			t.Errorf("announcement text was parsed as HTML (%d elements)", n)
		}
		noEscapes(t, ctx)

		// Phone-sized screen: the badge and the panel stay inside the viewport.
		do(t, ctx, "phone viewport",
			chromedp.EmulateViewport(390, 844),
			chromedp.Poll[chromedp.Void](`window.innerWidth === 390`, browsertest.PollOpts...),
		)
		fits := eval[bool](t, ctx, `[".cw-badge-main", "#comfy-workshop-floating"].every(sel => {
			const r = document.querySelector(sel).getBoundingClientRect();
			return r.left >= 0 && r.right <= window.innerWidth && r.top >= 0 && r.bottom <= window.innerHeight;
		})`)
		if !fits {
			t.Error("on a 390px wide screen the badge or the panel leaves the viewport")
		}
	})

	t.Logf("browser checks took %v", time.Since(start).Round(time.Millisecond))
}
