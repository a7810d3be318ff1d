// Package adminui embeds the instructor's control room: a single-page admin
// UI in plain ES modules and CSS (no build step), served by Fiber.
//
// It serves static files only. Login, the session cookie, CSRF checks and
// every /api route belong to the server; the page talks to them as described
// in the contract below.
//
// # Wiring
//
//	adminui.Register(app, adminui.Config{})
//
// registers, on any [fiber.Router] (an *fiber.App works):
//
//	GET /admin, GET /admin/     the control room (index.html)
//	GET /admin/spotlight        the full-screen projector view
//	GET /admin/seats/print      the printable sheet of join QR codes
//	GET /admin/static/*         the assets (HEAD too)
//
// None of these needs a session: the pages hold no data and ask the API for
// everything, showing a sign-in form (or a link to /admin) on 401. The
// server's own POST /admin/login, POST /admin/logout and GET /admin/session
// do not collide with these routes; register them on the same app. Register
// both /admin and /admin/ because the server uses StrictRouting.
//
// Assets are addressed as /admin/static/v-<hash>/..., where <hash> is a digest
// of every embedded file: the pages refer to that versioned path, so a
// browser caches the assets for a year (immutable) and a new binary changes
// every URL. Unversioned /admin/static/<file> also works, revalidated by
// ETag. Responses are gzip-compressed when the client accepts it. The HTML
// pages carry a strict Content-Security-Policy (scripts, styles and sockets
// from the same origin only; images from the same origin and data: URLs, for
// live previews), X-Frame-Options DENY and Cache-Control no-cache.
//
// # The contract with the server
//
// All JSON; errors are {"error":{"code","message"}}. Every POST, PUT, PATCH
// and DELETE the page sends carries the header X-CSRF-Token with the token
// from the login or session answer; the session cookie goes automatically.
//
//	POST /admin/login {"secret", "name"?} 200 {"csrf", "name"} + HttpOnly cookie; 401; 429
//	POST /admin/logout
//	GET  /admin/session               200 {"csrf", "name"} or 401 (the page shows the form)
//	GET  /ws                          admin events, cookie auth: queue_changed,
//	                                  job_created, job_updated, job_progress,
//	                                  workers_changed, announcement, spotlight,
//	                                  activity
//	GET  /api/queue/status; POST /api/queue/pause|resume; PUT /api/queue/mode
//	GET  /api/jobs?status=pending&limit=500 | ?status=running | ?limit=100
//	     | ?user_id=&status= (a seat's) | ?number=42 (one job, or none)
//	GET  /api/jobs/{id}/detail        {job, seat, outputs, wait_seconds, run_seconds, history}
//	DELETE /api/jobs/{id}; PATCH /api/jobs/{id}/priority; POST /api/jobs/{id}/move
//	POST /api/jobs/{id}/retry
//	POST /api/queue/cancel {user_id | status, ids?, dry_run?}  {count, counts, jobs}
//	GET  /api/workers; POST /api/workers/{agent}/{instance}/drain|undrain
//	GET  /api/seats?live=0 (every seat, for names) | ?q=&state=&offset=&limit=50
//	     (a page: {seats, total, offset, limit, summary})
//	POST /api/seats; PATCH|DELETE /api/seats/{n}; GET /api/seats/{n}/qr.png
//	GET|PUT /api/sheet {title, wifi_name, wifi_password, instructions}; GET /api/sheet/wifi.png
//	GET  /api/outputs?limit=60&order=newest|oldest|seat[&user_id=][&before=]
//	GET|POST|DELETE /api/spotlight
//	GET|POST /api/announcements; DELETE /api/announcements/{id}
//	GET  /api/workflows; PUT|DELETE /api/workflows/{name}
//	GET  /api/activity?kind=&limit=200; GET /api/metrics
//	GET  /api/export/jobs.csv, /api/export/outputs.zip (plain links)
//
// A Cancel waits a few seconds with an Undo before the DELETE goes (sent at
// once, with keepalive, if the page closes first); bulk cancels ask the
// server with dry_run, confirm with its numbers, and send those ids.
//
// The page keeps one WebSocket open and does not poll. When the socket drops
// it shows a banner, reconnects with exponential backoff and full jitter
// (0.5 s to 15 s; at once when the browser comes back online), and reloads
// its state over REST once the new socket is open. A 401 anywhere brings back
// the sign-in form. Events change the page at once; after job events it also
// refetches the pending list and the queue status, debounced, because the
// server's dispatch order, positions, estimated starts and counts are its
// own. The page exposes window.__adminStats (messages handled, last render
// times) for the browser tests and benchmarks.
package adminui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

//go:embed web
var webFS embed.FS

// Files holds the UI's files at its root: index.html, spotlight.html,
// print.html, css/, js/ and the vendored libraries (none at present).
var Files fs.FS = mustSub(webFS, "web")

// Config configures the UI. The zero value is ready to use.
type Config struct {
	// Title replaces "ComfyUI Workshop" in the pages' titles and header.
	Title string
}

// Pages maps each page route to the file it serves.
var Pages = map[string]string{
	"/admin":             "index.html",
	"/admin/":            "index.html",
	"/admin/spotlight":   "spotlight.html",
	"/admin/seats/print": "print.html",
}

// StaticPrefix is the URL folder of the assets.
const StaticPrefix = "/admin/static/"

// Register adds the UI's routes (see the package doc) to r.
func Register(r fiber.Router, cfg Config) {
	h := Handler(cfg)
	for route := range Pages {
		r.Get(route, h)
	}
	r.Get(StaticPrefix+"*", h)
}

// Handler answers every route of the UI by the request path: the pages in
// [Pages] and anything under [StaticPrefix]; other paths get 404. Use it to
// mount the UI behind middleware of your own, e.g.
//
//	app.Get("/admin", mw, h); app.Get("/admin/", mw, h); app.Get("/admin/static/*", mw, h)
func Handler(cfg Config) fiber.Handler {
	b := bundleFor(cfg)
	return func(c *fiber.Ctx) error {
		p := c.Path()
		if name, ok := Pages[p]; ok {
			return b.serve(c, b.pages[name], false)
		}
		if !strings.HasPrefix(p, StaticPrefix) {
			return fiber.ErrNotFound
		}
		name := strings.TrimPrefix(p, StaticPrefix)
		immutable := false
		if v, rest, ok := strings.Cut(name, "/"); ok && strings.HasPrefix(v, "v-") {
			if v != "v-"+b.version {
				// An old page asks for assets of another build: serve
				// today's, but do not let the browser keep them.
				name = rest
			} else {
				name, immutable = rest, true
			}
		}
		f, ok := b.files[name]
		if !ok || strings.HasSuffix(name, ".html") {
			return fiber.ErrNotFound
		}
		return b.serve(c, f, immutable)
	}
}

type file struct {
	name string
	ct   string
	data []byte
	gz   []byte // nil when compression does not pay
	etag string
	html bool
}

type bundle struct {
	version string
	files   map[string]*file // by path in Files
	pages   map[string]*file // by file name, with the version and title filled in
}

var (
	bundleMu    sync.Mutex
	bundleCache = map[Config]*bundle{}
)

func bundleFor(cfg Config) *bundle {
	bundleMu.Lock()
	defer bundleMu.Unlock()
	if b := bundleCache[cfg]; b != nil {
		return b
	}
	b := newBundle(cfg)
	bundleCache[cfg] = b
	return b
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".txt":  "text/plain; charset=utf-8",
	".json": "application/json",
}

func newBundle(cfg Config) *bundle {
	b := &bundle{files: map[string]*file{}, pages: map[string]*file{}}
	var names []string
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	all := sha256.New()
	raw := map[string][]byte{}
	for _, n := range names {
		data, err := fs.ReadFile(Files, n)
		if err != nil {
			panic(err)
		}
		raw[n] = data
		all.Write([]byte(n))
		all.Write([]byte{0})
		all.Write(data)
	}
	b.version = hex.EncodeToString(all.Sum(nil)[:6])
	title := cfg.Title
	if title == "" {
		title = "ComfyUI Workshop"
	}
	for _, n := range names {
		data := raw[n]
		if path.Ext(n) == ".html" {
			data = bytes.ReplaceAll(data, []byte(StaticPrefix), []byte(StaticPrefix+"v-"+b.version+"/"))
			data = bytes.ReplaceAll(data, []byte("{{TITLE}}"), []byte(htmlEscape(title)))
			b.pages[n] = newFile(n, data)
		}
		b.files[n] = newFile(n, raw[n])
	}
	return b
}

func htmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")
	return r.Replace(s)
}

func newFile(name string, data []byte) *file {
	ext := path.Ext(name)
	ct, ok := contentTypes[ext]
	if !ok {
		ct = "application/octet-stream"
	}
	sum := sha256.Sum256(data)
	f := &file{name: name, ct: ct, data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, html: ext == ".html"}
	if strings.HasPrefix(ct, "text/") || ext == ".svg" || ext == ".json" {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		if buf.Len() < len(data)*9/10 {
			f.gz = buf.Bytes()
		}
	}
	return f
}

// csp keeps the pages to their own origin. img-src allows data: for the live
// previews the socket carries; media-src for spotlighted videos. connect-src
// names the socket's origin too, for browsers whose 'self' does not cover
// ws: and wss: (Safari before 15.4).
func csp(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
		"media-src 'self' blob:; connect-src " + connect + "; font-src 'self'; manifest-src 'self'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	return true
}

func (b *bundle) serve(c *fiber.Ctx, f *file, immutable bool) error {
	if m := c.Method(); m != fiber.MethodGet && m != fiber.MethodHead {
		c.Set(fiber.HeaderAllow, "GET, HEAD")
		return fiber.ErrMethodNotAllowed
	}
	c.Set(fiber.HeaderContentType, f.ct)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
	c.Set(fiber.HeaderETag, f.etag)
	if immutable {
		c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	} else {
		c.Set(fiber.HeaderCacheControl, "no-cache")
	}
	if f.html {
		c.Set(fiber.HeaderContentSecurityPolicy, csp(string(c.Request().Host())))
		c.Set(fiber.HeaderXFrameOptions, "DENY")
		c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	}
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" && etagMatch(inm, f.etag) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	body := f.data
	if f.gz != nil && acceptsGzip(c.Get(fiber.HeaderAcceptEncoding)) {
		c.Set(fiber.HeaderContentEncoding, "gzip")
		body = f.gz
	}
	return c.Send(body) // fasthttp leaves the body out of a HEAD answer
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				q, err := strconv.ParseFloat(v, 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
