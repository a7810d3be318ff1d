package mirror_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/comfy-workshop/workshop/mirror"
)

// With Dir, the cache survives a restart: a new Mirror on the same folder
// serves what the last one cached while no GPU host is connected, and
// revalidates it once one is. Evicted, invalidated and 404 answers are not
// kept; a damaged file is dropped.
func TestCopyOnDiskSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	up := newFakeComfy(t)
	page := []byte("<!doctype html><title>ComfyUI</title>")
	js := bytes.Repeat([]byte("console.log(1);"), 500)
	tmpl := jsonDoc(20_000, "template")
	up.set("/", &file{body: page, contentType: "text/html", etag: `"p1"`})
	up.set(assetPath, &file{body: js, contentType: "text/javascript"})
	up.set("/templates/index.json", &file{body: gz(t, tmpl), contentType: "application/json", etag: `"t1"`, gzipped: true})
	up.set("/gone.js", &file{body: []byte("x"), contentType: "text/javascript"})
	up.set(infoPath, &file{body: jsonDoc(3000, "x"), contentType: "application/json"})

	e := newEnvWith(t, up, mirror.Config{Dir: dir})
	for _, p := range []string{"/", assetPath, "/templates/index.json", "/gone.js", "/missing.js", infoPath} {
		e.get(p, "Accept-Encoding: gzip")
	}
	e.m.Invalidate("/gone.js")
	e.m.Invalidate(infoPath)
	files, _ := os.ReadDir(dir)
	if len(files) != 3 {
		t.Fatalf("%d files on disk, want 3 (page, asset, template)", len(files))
	}
	// A damaged copy is dropped, not served.
	os.WriteFile(filepath.Join(dir, "0123456789abcdef0123456789abcdef.entry"), []byte("workshop-mirror-1\n\x00\x00\x00\x05{bad"), 0o644)

	// The restarted server, before any GPU host is back.
	e2 := newEnvWith(t, up, mirror.Config{Dir: dir})
	e2.connected.Store(false)
	for p, want := range map[string][]byte{"/": page, assetPath: js, "/templates/index.json": tmpl} {
		resp, body := e2.get(p)
		label := mirror.Stale
		if p == assetPath {
			label = mirror.Hit // content-hashed: never asked again
		}
		expect(t, resp, 200, label)
		if !bytes.Equal(body, want) {
			t.Errorf("%s after restart: %d bytes, want %d", p, len(body), len(want))
		}
	}
	resp, body := e2.get("/templates/index.json", "Accept-Encoding: gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, body), tmpl) || resp.Header.Get("ETag") != `"t1"` {
		t.Errorf("gzip copy after restart: encoding %q, ETag %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"))
	}
	for _, p := range []string{"/gone.js", infoPath, "/missing.js"} {
		resp, _ := e2.get(p)
		expect(t, resp, 503, mirror.Unavailable)
	}
	if _, err := os.Stat(filepath.Join(dir, "0123456789abcdef0123456789abcdef.entry")); !os.IsNotExist(err) {
		t.Errorf("the damaged file is still there: %v", err)
	}

	// Back online: the copy is revalidated, not fetched again.
	e2.connected.Store(true)
	resp, body = e2.get("/")
	expect(t, resp, 200, mirror.Revalidated)
	if !bytes.Equal(body, page) || up.count304("/") != 1 {
		t.Errorf("revalidation after restart: %q, %d 304s", body, up.count304("/"))
	}
}

// The copy on disk holds what the cache holds: an evicted entry's file goes.
func TestCopyOnDiskFollowsEviction(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, mirror.Config{Dir: dir, MaxCacheBytes: 100 << 10, MaxEntryBytes: 64 << 10})
	paths := []string{"/assets/a-Aa11Aa11.bin", "/assets/b-Bb22Bb22.bin", "/assets/c-Cc33Cc33.bin", "/assets/d-Dd44Dd44.bin"}
	for i, p := range paths {
		e.up.set(p, &file{body: randomBytes(30<<10, byte(i)), contentType: "application/octet-stream"})
		e.get(p)
	}
	if files, _ := os.ReadDir(dir); len(files) != 3 || e.m.Stats().Evictions != 1 {
		t.Fatalf("%d files on disk after one eviction, want 3", len(files))
	}
	e.connected.Store(false)
	e2 := newEnvWith(t, nil, mirror.Config{Dir: dir, MaxCacheBytes: 100 << 10})
	resp, _ := e2.get(paths[0]) // the one evicted
	expect(t, resp, 503, mirror.Unavailable)
	for _, p := range paths[1:] {
		resp, _ := e2.get(p)
		expect(t, resp, 200, mirror.Hit)
	}
}
