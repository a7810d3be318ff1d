package extension

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, header ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFiles(t *testing.T) {
	name := strings.TrimPrefix(Path, Dir)
	if !strings.HasPrefix(Path, Dir) || name != "workshop.js" {
		t.Fatalf("Path %q is not under Dir %q", Path, Dir)
	}
	for _, f := range []string{"workshop.js", "workshop.css"} {
		if _, err := fs.Stat(Files, f); err != nil {
			t.Errorf("Files lacks %s: %v", f, err)
		}
	}
	js, err := fs.ReadFile(Files, "workshop.js")
	if err != nil {
		t.Fatal(err)
	}
	src := string(js)
	if !strings.Contains(src, `name: EXTENSION_NAME`) || !strings.Contains(src, `const EXTENSION_NAME = "`+Name+`"`) {
		t.Errorf("workshop.js does not register as %q", Name)
	}
	for _, imp := range []string{`from "../../scripts/app.js"`, `from "../../scripts/api.js"`} {
		if !strings.Contains(src, imp) {
			t.Errorf("workshop.js lacks the standard import %s", imp)
		}
	}
	// Text only: no HTML sinks, and the frontend's methods are left alone.
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`\.(inner|outer)HTML\b`),
		regexp.MustCompile(`insertAdjacentHTML|document\.write|\beval\(|new Function\(`),
		regexp.MustCompile(`\b(api|app)\.\w+\s*=[^=]`),
	} {
		if m := bad.FindString(src); m != "" {
			t.Errorf("workshop.js uses %q", m)
		}
	}
}

func TestHandler(t *testing.T) {
	h := Handler()
	res := get(t, h, "GET", "/user/7/extensions/workshop/workshop.js")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if !strings.Contains(body(t, res), "registerExtension") {
		t.Error("not the extension")
	}
	etag := res.Header.Get("ETag")
	if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("caching headers: etag %q cache-control %q", etag, res.Header.Get("Cache-Control"))
	}
	if res := get(t, h, "GET", "/user/7/extensions/workshop/workshop.js", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: status %d, want 304", res.StatusCode)
	}
	if res := get(t, h, "HEAD", "/user/12/extensions/workshop/workshop.css"); res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("css: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Mounted with StripPrefix works too.
	if res := get(t, http.StripPrefix("/user/7/extensions/workshop", h), "GET", "/user/7/extensions/workshop/workshop.css"); res.StatusCode != 200 {
		t.Errorf("behind StripPrefix: %d", res.StatusCode)
	}
	for _, p := range []string{
		"/user/7/extensions/workshop/",
		"/user/7/extensions/workshop/nope.js",
		"/user/7/extensions/workshop/../../extension.go",
		"/user/7/extensions/workshop/..%2f..%2fextension.go",
		"/user/7/extensions/workshop/%2e%2e/extension.go",
		"/user/7/extensions/workshop/testpage/index.html",
	} {
		if res := get(t, h, "GET", p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
	if res := get(t, h, "POST", "/user/7/extensions/workshop/workshop.js"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", res.StatusCode)
	}
}

func TestTestPageHandler(t *testing.T) {
	h := TestPage()
	res := get(t, h, "GET", "/anything/workshop-test/?base=/user/1/")
	if b := body(t, res); res.StatusCode != 200 || !strings.Contains(b, `import("./extensions/workshop/workshop.js")`) {
		t.Errorf("index: %d", res.StatusCode)
	}
	for _, p := range []string{"/x/scripts/app.js", "/x/scripts/api.js", "/x/extensions/workshop/workshop.js"} {
		res := get(t, h, "GET", p)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("GET %s: %d %q", p, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if res := get(t, h, "GET", "/x/other.txt"); res.StatusCode != 404 {
		t.Errorf("unknown file: %d", res.StatusCode)
	}
}
