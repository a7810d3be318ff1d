package adminui

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func testApp(cfg Config) *fiber.App {
	app := fiber.New(fiber.Config{StrictRouting: true})
	Register(app, cfg)
	return app
}

func get(t *testing.T, app *fiber.App, target string, headers ...string) (int, map[string]string, []byte) {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	h := map[string]string{}
	for k := range res.Header {
		h[k] = res.Header.Get(k)
	}
	return res.StatusCode, h, body
}

func TestPages(t *testing.T) {
	app := testApp(Config{})
	version := bundleFor(Config{}).version
	for route, title := range map[string]string{
		"/admin":             "ComfyUI Workshop · Instructor",
		"/admin/":            "ComfyUI Workshop · Instructor",
		"/admin/spotlight":   "ComfyUI Workshop · Spotlight",
		"/admin/seats/print": "ComfyUI Workshop · Join codes",
	} {
		code, h, body := get(t, app, route)
		if code != 200 || !strings.HasPrefix(h["Content-Type"], "text/html") {
			t.Errorf("%s: %d %s", route, code, h["Content-Type"])
			continue
		}
		if !strings.Contains(string(body), "<title>"+title+"</title>") {
			t.Errorf("%s: title %q missing", route, title)
		}
		if !strings.Contains(h["Content-Security-Policy"], "script-src 'self'") || h["X-Frame-Options"] != "DENY" ||
			h["Cache-Control"] != "no-cache" || h["X-Content-Type-Options"] != "nosniff" {
			t.Errorf("%s: headers %v", route, h)
		}
		if strings.Contains(string(body), "{{") {
			t.Errorf("%s: a placeholder is left: %s", route, body)
		}
		// Every asset the page names is versioned and served.
		refs := regexp.MustCompile(`/admin/static/[^"]+`).FindAllString(string(body), -1)
		if len(refs) == 0 {
			t.Errorf("%s names no asset", route)
		}
		for _, ref := range refs {
			if !strings.HasPrefix(ref, StaticPrefix+"v-"+version+"/") {
				t.Errorf("%s: unversioned asset %s", route, ref)
			}
			code, h, _ := get(t, app, ref)
			if code != 200 || h["Cache-Control"] != "public, max-age=31536000, immutable" {
				t.Errorf("%s: %d, Cache-Control %q", ref, code, h["Cache-Control"])
			}
		}
	}
}

func TestCSPHost(t *testing.T) {
	app := testApp(Config{})
	_, h, _ := get(t, app, "http://workshop.example.org:8443/admin")
	if !strings.Contains(h["Content-Security-Policy"], "connect-src 'self' ws://workshop.example.org:8443 wss://workshop.example.org:8443;") {
		t.Errorf("CSP %q", h["Content-Security-Policy"])
	}
	if validHost("evil; script-src *") || validHost("") || !validHost("[::1]:8080") {
		t.Error("validHost")
	}
}

func TestTitle(t *testing.T) {
	_, _, body := get(t, testApp(Config{Title: `Day <1> & "more"`}), "/admin")
	if !strings.Contains(string(body), "<h1>Day &lt;1&gt; &amp; &#34;more&#34;</h1>") {
		t.Errorf("title not escaped: %s", body)
	}
}

func TestAssets(t *testing.T) {
	app := testApp(Config{})
	version := bundleFor(Config{}).version
	want, err := fs.ReadFile(Files, "js/app.js")
	if err != nil {
		t.Fatal(err)
	}

	code, h, body := get(t, app, "/admin/static/js/app.js")
	if code != 200 || h["Content-Type"] != "text/javascript; charset=utf-8" || h["Cache-Control"] != "no-cache" || !bytes.Equal(body, want) {
		t.Fatalf("unversioned: %d %v", code, h)
	}
	etag := h["Etag"]
	if code, _, _ := get(t, app, "/admin/static/js/app.js", "If-None-Match", etag); code != 304 {
		t.Errorf("If-None-Match: %d, want 304", code)
	}
	// An old page asking for another build's file gets today's, uncached.
	if code, h, _ := get(t, app, "/admin/static/v-0123456789ab/js/app.js"); code != 200 || h["Cache-Control"] != "no-cache" {
		t.Errorf("old version: %d %q", code, h["Cache-Control"])
	}
	code, h, body = get(t, app, "/admin/static/v-"+version+"/js/app.js", "Accept-Encoding", "br, gzip")
	if code != 200 || h["Content-Encoding"] != "gzip" || h["Vary"] != "Accept-Encoding" {
		t.Fatalf("gzip: %d %v", code, h)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, want) {
		t.Error("gzip body differs from the file")
	}
	if _, h, _ := get(t, app, "/admin/static/js/app.js", "Accept-Encoding", "gzip;q=0"); h["Content-Encoding"] != "" {
		t.Error("gzip;q=0 was answered with gzip")
	}
	for _, p := range []string{"/admin/static/nope.js", "/admin/static/index.html", "/admin/static/../adminui.go",
		"/admin/static/%2e%2e/adminui.go", "/admin/static/", "/admin/other"} {
		if code, _, _ := get(t, app, p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	req := httptest.NewRequest("HEAD", "/admin/static/css/admin.css", nil)
	res, err := app.Test(req, -1)
	if err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("HEAD: %v %v", err, res)
	}
}

func TestHandlerAlone(t *testing.T) {
	app := fiber.New()
	h := Handler(Config{})
	app.Get("/admin/static/*", func(c *fiber.Ctx) error { c.Set("X-Mw", "1"); return c.Next() }, h)
	code, hd, _ := get(t, app, "/admin/static/js/dom.js")
	if code != 200 || hd["X-Mw"] != "1" {
		t.Errorf("%d %v", code, hd)
	}
}

var importRe = regexp.MustCompile(`(?m)^\s*import\s[^'"]*['"]([^'"]+)['"]`)

// TestSources checks the UI's files: nothing builds HTML from strings, every
// import resolves, and each page preloads every module it needs (no
// request waterfall on a slow link).
func TestSources(t *testing.T) {
	forbidden := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(['"]style`)
	imports := map[string][]string{}
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".js" {
			return err
		}
		b, err := fs.ReadFile(Files, p)
		if err != nil {
			return err
		}
		if loc := forbidden.FindIndex(b); loc != nil {
			t.Errorf("%s uses %s: data must reach the page as text", p, b[loc[0]:loc[1]])
		}
		for _, m := range importRe.FindAllSubmatch(b, -1) {
			dep := path.Join(path.Dir(p), string(m[1]))
			if _, err := fs.Stat(Files, dep); err != nil {
				t.Errorf("%s imports %s, which is missing", p, m[1])
			}
			imports[p] = append(imports[p], dep)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for page, entry := range map[string]string{"index.html": "js/app.js", "spotlight.html": "js/spotlight.js", "print.html": "js/print.js"} {
		b, err := fs.ReadFile(Files, page)
		if err != nil {
			t.Fatal(err)
		}
		html := string(b)
		seen := map[string]bool{}
		var walk func(string)
		walk = func(m string) {
			if seen[m] {
				return
			}
			seen[m] = true
			for _, d := range imports[m] {
				walk(d)
			}
		}
		walk(entry)
		for m := range seen {
			if m == entry {
				if !strings.Contains(html, `<script type="module" src="/admin/static/`+m+`">`) {
					t.Errorf("%s does not load %s", page, m)
				}
				continue
			}
			if !strings.Contains(html, `<link rel="modulepreload" href="/admin/static/`+m+`">`) {
				t.Errorf("%s does not preload %s", page, m)
			}
		}
		for _, ref := range regexp.MustCompile(`/admin/static/([^"]+)`).FindAllStringSubmatch(html, -1) {
			if _, err := fs.Stat(Files, ref[1]); err != nil {
				t.Errorf("%s names %s, which is missing", page, ref[1])
			}
		}
	}
}
