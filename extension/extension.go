// Package extension embeds the workshop's ComfyUI frontend extension: plain
// JavaScript modules (no build step) that show a participant their seat name,
// queue position and estimated wait, GPU connection state, their outputs and
// the instructor's announcements, inside their own ComfyUI page.
//
// Serving it takes two things on the participant's ComfyUI surface:
//
//   - add [Path] to the JSON list that GET /user/{n}/extensions (and
//     /user/{n}/api/extensions) answers; the frontend imports each entry as
//     its base plus the entry, here /user/{n}/extensions/workshop/workshop.js;
//   - serve [Handler] for /user/{n}/extensions/workshop/ (before any route
//     that forwards /user/{n}/extensions/ to a GPU instance).
//
// The module imports "../../scripts/app.js" and "../../scripts/api.js", so it
// relies on the instance's UI files being served at /user/{n}/scripts/ as
// usual.
//
// The contract with the server, all relative to the participant's base
// through the frontend's api.fetchApi (so /user/{n}/api/workshop/...):
//
//	GET /workshop/me
//	  {"seat":7,"user_id":"user007","name":"Alice",
//	   "gpus":{"connected":2,"total":2},
//	   "queue":{"paused":false,"pending":3,"running":1,"position":2,"eta_seconds":40},
//	   "announcements":[{"id":"a1","text":"Break at 11:00","created_at":"2026-11-28T10:00:00Z"}]}
//	  position: 1 = next to run, null or absent when nothing is pending;
//	  eta_seconds: null or absent when unknown;
//	  gpus: connected 0 of total > 0 reads "GPUs reconnecting", total 0
//	  "no GPU connected yet"; a failing /workshop/me or a reconnecting
//	  socket reads "workshop server unreachable";
//	  "default_workflow": "day-one.json" (optional): a file in the
//	  workflows/workshop/ folder the page opens once per browser;
//	  announcements: on load only the ones this browser has not shown
//	  become toasts, the newest and one line for the rest.
//	GET /workshop/outputs?limit=100[&before=CURSOR]
//	  {"outputs":[{"job_id":"...","filename":"t_00001_.png","type":"output",
//	   "subfolder":"","url":"/user/7/api/view?filename=...&type=output&subfolder=",
//	   "mime":"image/png","size":1234,"created_at":"..."}], "next":"CURSOR"}
//	  newest first; url is an absolute path on the same origin, used as given;
//	  "next" is optional: when present, "Load more" asks for before=next.
//
// and on the participant's socket (/user/{n}/ws), as {"type":..,"data":..}:
//
//	workshop_status        data = the /workshop/me object without announcements
//	workshop_announcement  data = one announcement
//	workshop_output        data = one output (prepended to the panel)
//
// It also refetches /workshop/me (debounced) on ComfyUI's own status and
// execution_success messages and after the socket reconnects, and every 30 s
// while the page is visible.
//
// [TestPage] serves a page that loads the real extension with stand-ins for
// the frontend's app and api objects, for browser tests against a real
// server (see its doc).
package extension

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Path is the entry to add to ComfyUI's GET /extensions list. The frontend
// loads it relative to the participant's base, so the browser requests
// /user/{n}/extensions/workshop/workshop.js.
const Path = "/extensions/workshop/workshop.js"

// Dir is the URL folder that holds the extension's files, relative to the
// participant's ComfyUI base: [Handler] answers for Dir + any name in [Files].
const Dir = "/extensions/workshop/"

// Name is the name the extension registers with the frontend.
const Name = "comfy.workshop"

//go:embed web/extensions/workshop
var webFS embed.FS

//go:embed testpage
var testFS embed.FS

// Files holds the extension's files (workshop.js, workshop.css) at its root.
var Files fs.FS = mustSub(webFS, "web/extensions/workshop")

// testScripts holds the stand-in scripts/app.js and scripts/api.js.
var testScripts fs.FS = mustSub(testFS, "testpage/scripts")

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Handler serves [Files]. It takes the file name from whatever follows the
// last "/extensions/workshop/" in the request path (or, failing that, the
// whole path), so it can be mounted under any prefix without StripPrefix:
//
//	mux.Handle("GET /user/{n}/extensions/workshop/", extension.Handler())
//
// Responses carry a content ETag and Cache-Control: no-cache, so browsers
// revalidate cheaply and a new binary's files take effect on the next load.
func Handler() http.Handler {
	return &fileHandler{files: Files}
}

// TestPage serves a page that loads the real extension with stand-ins for
// the frontend's scripts/app.js and scripts/api.js, for browser checks.
// Mount it under any prefix ending in a folder, e.g.
//
//	mux.Handle("GET /user/{n}/workshop-test/", extension.TestPage())
//
// and open {prefix}/?base=/user/1/ (the participant base whose
// /api/workshop/... routes the extension will call; default /user/1/). Query
// ws=1 makes the stand-in api open the real socket at {base}ws and dispatch
// its messages as the frontend does; legacy=1 leaves out extensionManager (an
// old frontend: the extension falls back to its own panel and toasts). The
// page records what happened in window.__standin: registered, setupDone,
// ready, errors (anything that escaped an extension), toasts, sidebarTabs,
// commands; window.__standinApi is the stand-in api (receive({type, data})
// feeds a socket message, reconnect() simulates a dropped socket). The badge
// is #comfy-workshop-badge and the outputs list .cw-outputs-list.
func TestPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.Contains(p, Dir):
			(&fileHandler{files: Files}).ServeHTTP(w, r)
		case strings.Contains(p, "/scripts/"):
			name := p[strings.LastIndex(p, "/scripts/")+len("/scripts/"):]
			serveFile(w, r, testScripts, name)
		case strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/index.html"):
			serveFile(w, r, testFS, "testpage/index.html")
		default:
			http.NotFound(w, r)
		}
	})
}

type fileHandler struct {
	files fs.FS
}

func (h *fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if i := strings.LastIndex(p, Dir); i >= 0 {
		p = p[i+len(Dir):]
	}
	serveFile(w, r, h.files, strings.TrimPrefix(p, "/"))
}

var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
}

// serveFile answers GET and HEAD for one regular file of fsys, with an ETag.
func serveFile(w http.ResponseWriter, r *http.Request, fsys fs.FS, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name = path.Clean("/" + name)[1:]
	if name == "" || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	sum := sha256.Sum256(data)
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}
