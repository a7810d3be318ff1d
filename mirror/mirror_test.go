package mirror_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/mirror"
)

const (
	assetPath = "/assets/index-Ab12Cd34.js"
	infoPath  = "/api/object_info"
)

func TestHitMissRevalidated(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	js := []byte("console.log('frontend');\n")
	info := jsonDoc(4000, "v1")
	e.up.set(assetPath, &file{body: js, contentType: "text/javascript", etag: `"a1"`, cacheControl: "no-cache"})
	e.up.set(infoPath, &file{body: info, contentType: "application/json", etag: `"o1"`})
	e.up.set("/api/embeddings", &file{body: []byte(`["easynegative"]`), contentType: "application/json"})

	// A content-hashed asset: fetched once, then served without asking.
	resp, body := e.get(assetPath)
	expect(t, resp, 200, mirror.Miss)
	if !bytes.Equal(body, js) {
		t.Fatalf("asset body %q", body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Fatalf("asset Cache-Control %q", cc)
	}
	resp, body = e.get(assetPath)
	expect(t, resp, 200, mirror.Hit)
	if !bytes.Equal(body, js) || e.up.count(assetPath) != 1 {
		t.Fatalf("hit: body %q, upstream asked %d times", body, e.up.count(assetPath))
	}

	// API JSON: revalidated on every request, 304 serves the cached copy.
	resp, body = e.get(infoPath)
	expect(t, resp, 200, mirror.Miss)
	if !bytes.Equal(body, info) || resp.Header.Get("ETag") != `"o1"` || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("object_info: %d bytes, ETag %q, Cache-Control %q", len(body), resp.Header.Get("ETag"), resp.Header.Get("Cache-Control"))
	}
	resp, body = e.get(infoPath)
	expect(t, resp, 200, mirror.Revalidated)
	if !bytes.Equal(body, info) || e.up.count(infoPath) != 2 || e.up.count304(infoPath) != 1 {
		t.Fatalf("revalidated: same body %v, upstream %d requests, %d 304s",
			bytes.Equal(body, info), e.up.count(infoPath), e.up.count304(infoPath))
	}

	// The browser's own revalidation is answered by the mirror.
	resp, body = e.get(infoPath, `If-None-Match: "o1"`)
	expect(t, resp, 304, mirror.Revalidated)
	if len(body) != 0 {
		t.Fatalf("304 with a body of %d bytes", len(body))
	}

	// A new version upstream replaces the copy.
	info2 := jsonDoc(5000, "v2")
	e.up.update(infoPath, func(f *file) { f.body, f.etag = info2, `"o2"` })
	resp, body = e.get(infoPath)
	expect(t, resp, 200, mirror.Miss)
	if !bytes.Equal(body, info2) || resp.Header.Get("ETag") != `"o2"` {
		t.Fatalf("after a change: body v2 %v, ETag %q", bytes.Equal(body, info2), resp.Header.Get("ETag"))
	}

	// JSON without validators: the same bytes again count as revalidated,
	// and the browser gets an ETag made by the mirror.
	resp, _ = e.get("/api/embeddings")
	expect(t, resp, 200, mirror.Miss)
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `W/"m`) {
		t.Fatalf("made-up ETag %q", etag)
	}
	resp, body = e.get("/api/embeddings")
	expect(t, resp, 200, mirror.Revalidated)
	if string(body) != `["easynegative"]` || e.up.count("/api/embeddings") != 2 {
		t.Fatalf("embeddings %q after %d upstream requests", body, e.up.count("/api/embeddings"))
	}
	resp, _ = e.get("/api/embeddings", "If-None-Match: "+etag)
	expect(t, resp, 304, mirror.Revalidated)

	// The query is part of the key.
	e.up.set("/api/i18n", &file{body: []byte(`{}`), contentType: "application/json", etag: `"i"`})
	e.get("/api/i18n?lang=fr")
	resp, _ = e.get("/api/i18n?lang=de")
	expect(t, resp, 200, mirror.Miss)
	if e.up.count("/api/i18n?lang=fr") != 1 || e.up.count("/api/i18n?lang=de") != 1 {
		t.Fatal("query strings were not forwarded as distinct keys")
	}

	s := e.m.Stats()
	if s.Hits != 1 || s.Revalidated < 4 || s.Misses < 5 || s.Entries != 5 || s.Bytes <= 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLastModifiedRevalidation(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.up.set("/extensions/core/widgets.js", &file{body: []byte("export {}"), contentType: "text/javascript", lastModified: mod})
	resp, _ := e.get("/extensions/core/widgets.js")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Last-Modified") != mod.Format(http.TimeFormat) {
		t.Fatalf("Last-Modified %q", resp.Header.Get("Last-Modified"))
	}
	resp, _ = e.get("/extensions/core/widgets.js")
	expect(t, resp, 200, mirror.Revalidated)
	if e.up.count304("/extensions/core/widgets.js") != 1 {
		t.Fatal("If-Modified-Since was not sent upstream")
	}
	resp, _ = e.get("/extensions/core/widgets.js", "If-Modified-Since: "+mod.Format(http.TimeFormat))
	expect(t, resp, 304, mirror.Revalidated)
}

func TestStaleWhenUpstreamAway(t *testing.T) {
	e := newEnv(t, mirror.Config{Timeout: 300 * time.Millisecond})
	page := []byte("<!doctype html><title>ComfyUI</title>")
	info := jsonDoc(3000, "x")
	e.up.set("/", &file{body: page, contentType: "text/html", cacheControl: "no-store, must-revalidate"})
	e.up.set(infoPath, &file{body: info, contentType: "application/json", etag: `"o"`})
	e.get("/")
	e.get(infoPath)
	before := e.up.count(infoPath)

	// No GPU host connected: the cached copies serve.
	e.connected.Store(false)
	resp, body := e.get("/")
	expect(t, resp, 200, mirror.Stale)
	if !bytes.Equal(body, page) {
		t.Fatalf("stale page %q", body)
	}
	resp, body = e.get(infoPath)
	expect(t, resp, 200, mirror.Stale)
	if !bytes.Equal(body, info) || e.up.count(infoPath) != before {
		t.Fatal("stale object_info: wrong body, or the upstream was asked")
	}
	if b, h, err := e.m.Get(context.Background(), infoPath); err != nil || !bytes.Equal(b, info) || h.Get(mirror.CacheHeader) != mirror.Stale {
		t.Fatalf("Get while away: err %v, label %q", err, h.Get(mirror.CacheHeader))
	}
	e.connected.Store(true)

	// The upstream answers 500: stale.
	e.up.update(infoPath, func(f *file) { f.status = 500 })
	resp, body = e.get(infoPath)
	expect(t, resp, 200, mirror.Stale)
	if !bytes.Equal(body, info) {
		t.Fatal("stale after 500: wrong body")
	}

	// The upstream hangs past the timeout: stale, in about the timeout.
	e.up.update(infoPath, func(f *file) { f.status, f.hang = 0, true })
	start := time.Now()
	resp, _ = e.get(infoPath)
	expect(t, resp, 200, mirror.Stale)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stale after a hang took %s", d)
	}
	e.up.update(infoPath, func(f *file) { f.hang = false })
	resp, _ = e.get(infoPath)
	expect(t, resp, 200, mirror.Revalidated)

	// The upstream goes away entirely (the dial fails): stale.
	e.up.srv.Close()
	for _, p := range []string{"/", infoPath} {
		resp, _ = e.get(p)
		expect(t, resp, 200, mirror.Stale)
	}
	// And what was never cached gets the 503.
	resp, _ = e.get("/api/models")
	expect(t, resp, 503, mirror.Unavailable)
	if s := e.m.Stats(); s.Stale != 7 || s.UpstreamErrors < 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestUnavailable(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	e.connected.Store(false)

	resp, body := e.get("/", "Accept: text/html,application/xhtml+xml")
	expect(t, resp, 503, mirror.Unavailable)
	page := string(body)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(page, "The GPUs are not connected yet") ||
		!strings.Contains(page, `http-equiv="refresh"`) || !strings.Contains(page, "location.reload") {
		t.Fatalf("503 page: %s\n%s", resp.Header.Get("Content-Type"), page)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}

	// A navigation to another page also gets HTML; API calls get JSON.
	resp, _ = e.get("/some/page", "Accept: text/html")
	if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("navigation: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{infoPath, "/object_info", "/assets/index-Ab12Cd34.js"} {
		resp, body = e.get(p, "Accept: */*")
		expect(t, resp, 503, mirror.Unavailable)
		var got struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(body, &got); err != nil || got.Error.Code != "unavailable" ||
			got.Error.Message != "the GPUs are not connected yet" || resp.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %s %s", p, resp.Header.Get("Content-Type"), body)
		}
	}
	if _, _, err := e.m.Get(context.Background(), infoPath); !errors.Is(err, mirror.ErrUnavailable) {
		t.Fatalf("Get: %v", err)
	}

	// A mirror with no Upstream at all behaves the same.
	e2 := newEnvWith(t, nil, mirror.Config{})
	resp, _ = e2.get("/")
	expect(t, resp, 503, mirror.Unavailable)

	// Once the GPUs connect, the same URL works.
	e.up.set("/", &file{body: []byte("<html>ComfyUI</html>"), contentType: "text/html"})
	e.connected.Store(true)
	resp, body = e.get("/", "Accept: text/html")
	expect(t, resp, 200, mirror.Miss)
	if string(body) != "<html>ComfyUI</html>" {
		t.Fatalf("after connecting: %q", body)
	}
}

func TestCoalescing(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	const n = 32
	info := jsonDoc(100_000, "big")
	gate := make(chan struct{})
	e.up.set(infoPath, &file{body: info, contentType: "application/json", etag: `"c1"`, gate: gate})

	wave := func(wantLabel string) {
		t.Helper()
		before := e.m.Stats().Coalesced
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := e.client.Get(e.base + infoPath)
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				switch {
				case err != nil:
					errs <- err
				case resp.StatusCode != 200 || !bytes.Equal(body, info):
					errs <- fmt.Errorf("got %d with %d bytes", resp.StatusCode, len(body))
				case resp.Header.Get(mirror.CacheHeader) != wantLabel:
					errs <- fmt.Errorf("label %q, want %q", resp.Header.Get(mirror.CacheHeader), wantLabel)
				}
			}()
		}
		waitFor(t, "every request to wait on one upstream request", func() bool {
			return e.m.Stats().Coalesced-before == n-1
		})
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}

	wave(mirror.Miss)
	if c := e.up.count(infoPath); c != 1 {
		t.Fatalf("%d concurrent misses made %d upstream requests", n, c)
	}
	// Revalidations are shared too.
	gate = make(chan struct{})
	e.up.update(infoPath, func(f *file) { f.gate = gate })
	wave(mirror.Revalidated)
	if c, c304 := e.up.count(infoPath), e.up.count304(infoPath); c != 2 || c304 != 1 {
		t.Fatalf("after two waves: %d upstream requests, %d 304s", c, c304)
	}
}

func TestLargeBodyStreamed(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	for _, p := range []string{"/big", "/big-chunked"} {
		t.Run(strings.TrimPrefix(p, "/"), func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)

			resp, err := e.client.Get(e.base + p)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			expect(t, resp, 200, mirror.Miss)
			if n != bigSize || !bytes.Equal(h.Sum(nil), bigSum[:]) {
				t.Fatalf("got %d bytes, sha256 %x", n, h.Sum(nil))
			}
			if p == "/big" && resp.ContentLength != bigSize {
				t.Fatalf("Content-Length %d", resp.ContentLength)
			}
			// Everything allocated while 64 MiB went through, by the test
			// client, the fake upstream and the mirror together.
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d KiB allocated while streaming 64 MiB", alloc>>10)
			if alloc > 24<<20 {
				t.Fatalf("%d MiB allocated to stream 64 MiB", alloc>>20)
			}
			if s := e.m.Stats(); s.Bytes > 1<<20 {
				t.Fatalf("the cache holds %d bytes", s.Bytes)
			}
			// Not kept: the next request streams from the upstream again.
			resp, err = e.client.Get(e.base + p)
			if err != nil {
				t.Fatal(err)
			}
			n, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			expect(t, resp, 200, mirror.Miss)
			if n != bigSize || e.up.count(p) != 2 {
				t.Fatalf("second request: %d bytes, upstream asked %d times", n, e.up.count(p))
			}
		})
	}
	if s := e.m.Stats(); s.Streamed != 4 || s.Entries != 0 {
		t.Fatalf("stats %+v", s)
	}

	// HEAD gives the length without the body.
	resp, body := e.do(http.MethodHead, "/big")
	if resp.StatusCode != 200 || resp.ContentLength != bigSize || len(body) != 0 {
		t.Fatalf("HEAD: %d, length %d, %d bytes", resp.StatusCode, resp.ContentLength, len(body))
	}

	// A client that goes away stops the upstream transfer.
	aborted := e.up.aborted.Load()
	resp, err := e.client.Get(e.base + "/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the upstream transfer to stop", func() bool { return e.up.aborted.Load() > aborted })
}

func TestGzip(t *testing.T) {
	e := newEnv(t, mirror.Config{MaxEntryBytes: 256 << 10})
	info := jsonDoc(60_000, "gz")
	e.up.set(infoPath, &file{body: info, contentType: "application/json; charset=utf-8", etag: `"g1"`})
	tmpl := jsonDoc(20_000, "template")
	e.up.set("/templates/index.json", &file{body: gz(t, tmpl), contentType: "application/json", etag: `"t1"`, gzipped: true})
	// 1 MiB of JSON that gzip cannot shrink below the 256 KiB limit.
	bigJSON := []byte(`["` + hex.EncodeToString(randomBytes(512<<10, 4)) + `"]`)
	e.up.set("/api/workflow_templates", &file{body: gz(t, bigJSON), contentType: "application/json", gzipped: true})
	// 1 MiB that gzip shrinks to a few KiB: kept compressed only.
	packed := jsonDoc(1<<20, "packed")
	e.up.set("/api/experiment/models", &file{body: gz(t, packed), contentType: "application/json", gzipped: true})

	// An identity answer is compressed once for clients that take gzip.
	resp, body := e.get(infoPath, "Accept-Encoding: gzip, deflate, br")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" ||
		len(body) >= len(info)/3 || !bytes.Equal(gunzip(t, body), info) {
		t.Fatalf("gzip client: encoding %q, vary %q, %d bytes", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"), len(body))
	}
	if resp.Header.Get("ETag") != `W/"g1"` {
		t.Fatalf("re-encoded body has ETag %q, want the weak form", resp.Header.Get("ETag"))
	}
	for _, ae := range []string{"", "identity", "gzip;q=0, deflate"} {
		resp, body = e.get(infoPath, "Accept-Encoding: "+ae)
		expect(t, resp, 200, mirror.Revalidated)
		if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, info) || resp.Header.Get("ETag") != `"g1"` {
			t.Fatalf("Accept-Encoding %q: encoding %q, ETag %q", ae, resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"))
		}
	}

	// A gzip answer is kept compressed and decompressed for others.
	resp, body = e.get("/templates/index.json", "Accept-Encoding: gzip")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, body), tmpl) || resp.Header.Get("ETag") != `"t1"` {
		t.Fatalf("gzip from upstream: encoding %q, ETag %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"))
	}
	resp, body = e.get("/templates/index.json")
	expect(t, resp, 200, mirror.Revalidated)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, tmpl) {
		t.Fatalf("identity client: encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}
	b, h, err := e.m.Get(context.Background(), "/templates/index.json")
	if err != nil || !bytes.Equal(b, tmpl) || h.Get("Content-Type") != "application/json" {
		t.Fatalf("Get: %v, %d bytes", err, len(b))
	}

	// Too big to keep (1 MiB identity against a 256 KiB limit): streamed,
	// compressed or not as the client takes it.
	resp, body = e.get("/api/workflow_templates", "Accept-Encoding: gzip")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, body), bigJSON) {
		t.Fatalf("streamed gzip: encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, body = e.get("/api/workflow_templates")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, bigJSON) {
		t.Fatalf("streamed, decompressed: encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}
	if b, _, err := e.m.Get(context.Background(), "/api/workflow_templates"); err != nil || !bytes.Equal(b, bigJSON) {
		t.Fatalf("Get of a streamed body: %v, %d bytes", err, len(b))
	}

	// Kept compressed, decompressed on the way out for identity clients.
	resp, body = e.get("/api/experiment/models", "Accept-Encoding: gzip")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, body), packed) {
		t.Fatalf("kept gzip: encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, body = e.get("/api/experiment/models")
	expect(t, resp, 200, mirror.Revalidated)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, packed) {
		t.Fatalf("kept gzip, identity client: encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}
	if b, _, err := e.m.Get(context.Background(), "/api/experiment/models"); err != nil || !bytes.Equal(b, packed) {
		t.Fatalf("Get of a kept gzip body: %v, %d bytes", err, len(b))
	}

	// The mirror always asks the upstream for gzip.
	for _, h := range e.up.allHeaders() {
		if h.Get("Accept-Encoding") != "gzip" {
			t.Fatalf("upstream request with Accept-Encoding %q", h.Get("Accept-Encoding"))
		}
	}
}

func TestCredentialsNotForwarded(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	e.up.set(infoPath, &file{body: []byte(`{}`), contentType: "application/json", etag: `"x"`})
	e.up.set("/video.mp4", &file{body: randomBytes(4096, 3), contentType: "video/mp4"})
	secret := []string{
		"Cookie: workshop_session=s3cret",
		"Authorization: Bearer s3cret",
		"Proxy-Authorization: Basic czNjcmV0",
		"X-Forwarded-For: 10.1.2.3",
		"X-Real-Ip: 10.1.2.3",
		"Origin: https://workshop.example.org",
		"Referer: https://workshop.example.org/user/1/",
		"Comfy-User: someone",
	}
	e.get(infoPath, secret...)
	e.get(infoPath, secret...)
	e.get("/video.mp4", append(secret, "Range: bytes=0-99")...)
	allowed := map[string]bool{"Accept-Encoding": true, "User-Agent": true, "If-None-Match": true,
		"If-Modified-Since": true, "Range": true}
	hs := e.up.allHeaders()
	if len(hs) != 3 {
		t.Fatalf("%d upstream requests", len(hs))
	}
	for _, h := range hs {
		for k, v := range h {
			if !allowed[k] || strings.Contains(strings.Join(v, ""), "s3cret") {
				t.Fatalf("forwarded upstream: %s: %v", k, v)
			}
		}
	}
}

func TestRangeBypass(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	video := randomBytes(100_000, 5)
	e.up.set("/templates/intro.mp4", &file{body: video, contentType: "video/mp4", etag: `"v"`})
	resp, body := e.get("/templates/intro.mp4", "Range: bytes=100-199")
	expect(t, resp, 206, mirror.Bypass)
	if !bytes.Equal(body, video[100:200]) || resp.Header.Get("Content-Range") != "bytes 100-199/100000" {
		t.Fatalf("range: %d bytes, Content-Range %q", len(body), resp.Header.Get("Content-Range"))
	}
	// A plain GET caches it; ranges then get the whole cached body.
	resp, _ = e.get("/templates/intro.mp4")
	expect(t, resp, 200, mirror.Miss)
	e.connected.Store(false)
	resp, body = e.get("/templates/intro.mp4", "Range: bytes=100-199")
	expect(t, resp, 200, mirror.Stale)
	if !bytes.Equal(body, video) {
		t.Fatal("stale range request: wrong body")
	}
}

func TestEvictionByBytes(t *testing.T) {
	e := newEnv(t, mirror.Config{MaxCacheBytes: 100 << 10, MaxEntryBytes: 64 << 10})
	paths := []string{"/assets/a-Aa11Aa11.bin", "/assets/b-Bb22Bb22.bin", "/assets/c-Cc33Cc33.bin", "/assets/d-Dd44Dd44.bin"}
	for i, p := range paths {
		e.up.set(p, &file{body: randomBytes(30<<10, byte(i)), contentType: "application/octet-stream"})
	}
	for _, p := range paths[:3] {
		resp, _ := e.get(p)
		expect(t, resp, 200, mirror.Miss)
	}
	resp, _ := e.get(paths[0]) // a is now the most recently used
	expect(t, resp, 200, mirror.Hit)
	resp, _ = e.get(paths[3]) // d pushes out the least recently used: b
	expect(t, resp, 200, mirror.Miss)

	s := e.m.Stats()
	if s.Bytes > 100<<10 || s.Evictions != 1 || s.Entries != 3 {
		t.Fatalf("stats %+v", s)
	}
	for _, p := range []string{paths[0], paths[2], paths[3]} {
		resp, _ = e.get(p)
		expect(t, resp, 200, mirror.Hit)
	}
	resp, body := e.get(paths[1])
	expect(t, resp, 200, mirror.Miss)
	if !bytes.Equal(body, randomBytes(30<<10, 1)) || e.up.count(paths[1]) != 2 {
		t.Fatal("the evicted entry was not fetched again")
	}
}

func TestStatusPassThrough(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	// 404: passed through and kept briefly.
	resp, body := e.get("/api/models/nothing")
	expect(t, resp, 404, mirror.Miss)
	if string(body) != "404: Not Found\n" {
		t.Fatalf("404 body %q", body)
	}
	resp, _ = e.get("/api/models/nothing")
	expect(t, resp, 404, mirror.Hit)
	if e.up.count("/api/models/nothing") != 1 {
		t.Fatal("404 not kept")
	}
	e.clock.Advance(11 * time.Second)
	resp, _ = e.get("/api/models/nothing")
	expect(t, resp, 404, mirror.Revalidated) // the same 404 again
	if e.up.count("/api/models/nothing") != 2 {
		t.Fatal("404 kept too long")
	}
	if _, _, err := e.m.Get(context.Background(), "/api/models/nothing"); err == nil {
		t.Fatal("Get of a 404 gave no error")
	} else if se := (*mirror.StatusError)(nil); !errors.As(err, &se) || se.Status != 404 {
		t.Fatalf("Get of a 404: %v", err)
	}

	// Other 4xx: passed through, not kept.
	e.up.set("/api/view_metadata/x", &file{status: 400, body: []byte("bad folder"), contentType: "text/plain"})
	for i := 0; i < 2; i++ {
		resp, body = e.get("/api/view_metadata/x")
		expect(t, resp, 400, mirror.Miss)
		if string(body) != "bad folder" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("400: %q, Cache-Control %q", body, resp.Header.Get("Cache-Control"))
		}
	}
	if e.up.count("/api/view_metadata/x") != 2 {
		t.Fatal("400 was kept")
	}

	// 5xx with nothing cached: passed through.
	e.up.set("/api/features", &file{status: 502, body: []byte("bad gateway"), contentType: "text/plain"})
	resp, _ = e.get("/api/features")
	expect(t, resp, 502, mirror.Miss)

	// A redirect stays inside the participant's prefix.
	resp, _ = e.get("/redirect")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/user/1/assets/moved-Ab12Cd34.js" {
		t.Fatalf("redirect: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestMaxAge(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	png := randomBytes(2048, 9)
	e.up.set("/templates/thumb.png", &file{body: png, contentType: "image/png", etag: `"p"`, cacheControl: "public, max-age=60"})
	// JSON is revalidated whatever its max-age.
	e.up.set("/api/system_stats", &file{body: []byte(`{"system":{}}`), contentType: "application/json", cacheControl: "max-age=3600"})

	resp, _ := e.get("/templates/thumb.png")
	expect(t, resp, 200, mirror.Miss)
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Fatalf("Cache-Control %q", cc)
	}
	resp, _ = e.get("/templates/thumb.png")
	expect(t, resp, 200, mirror.Hit)
	e.clock.Advance(61 * time.Second)
	resp, body := e.get("/templates/thumb.png")
	expect(t, resp, 200, mirror.Revalidated)
	if !bytes.Equal(body, png) {
		t.Fatal("wrong body")
	}

	e.get("/api/system_stats")
	resp, _ = e.get("/api/system_stats")
	expect(t, resp, 200, mirror.Revalidated)
	if resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("JSON Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
}

func TestHeadMethodAndPaths(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	info := jsonDoc(3000, "h")
	e.up.set(infoPath, &file{body: info, contentType: "application/json", etag: `"h"`})

	resp, body := e.do(http.MethodHead, infoPath)
	expect(t, resp, 200, mirror.Miss)
	if resp.ContentLength != int64(len(info)) || len(body) != 0 {
		t.Fatalf("HEAD: length %d, %d body bytes", resp.ContentLength, len(body))
	}
	resp, body = e.get(infoPath)
	expect(t, resp, 200, mirror.Revalidated)
	if !bytes.Equal(body, info) {
		t.Fatal("GET after HEAD: wrong body")
	}

	resp, body = e.do(http.MethodPost, infoPath)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(string(body), `"code":"invalid"`) {
		t.Fatalf("POST: %d %q %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	resp, _ = e.get("/userdata/workflows%2F..%2F..%2Fsecret")
	if resp.StatusCode != 400 {
		t.Fatalf("escaped slashes: %d", resp.StatusCode)
	}
	for _, p := range []string{"/assets/../internal/logs", "/a/%2e%2e/b", "relative", "/a//b", "/a\\b"} {
		if _, _, err := e.m.Get(context.Background(), p); !errors.Is(err, mirror.ErrBadPath) {
			t.Fatalf("Get(%q): %v", p, err)
		}
	}
}

func TestInvalidateAndPurge(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	e.up.set(assetPath, &file{body: []byte("x"), contentType: "text/javascript"})
	e.up.set("/api/i18n", &file{body: []byte("{}"), contentType: "application/json"})
	e.get(assetPath)
	e.get("/api/i18n?lang=fr")
	e.get("/api/i18n?lang=de")
	if s := e.m.Stats(); s.Entries != 3 {
		t.Fatalf("%d entries", s.Entries)
	}
	e.m.Invalidate(assetPath)
	resp, _ := e.get(assetPath)
	expect(t, resp, 200, mirror.Miss)
	e.m.Invalidate("/api/i18n?lang=fr")
	if s := e.m.Stats(); s.Entries != 2 {
		t.Fatalf("%d entries after invalidating one query", s.Entries)
	}
	e.m.Invalidate("/api/i18n")
	if s := e.m.Stats(); s.Entries != 1 {
		t.Fatalf("%d entries after invalidating the path", s.Entries)
	}
	e.m.Purge()
	if s := e.m.Stats(); s.Entries != 0 || s.Bytes != 0 {
		t.Fatalf("after Purge: %+v", s)
	}
}

func TestGet(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	info := jsonDoc(10_000, "get")
	e.up.set(infoPath, &file{body: info, contentType: "application/json", etag: `"g"`})
	ctx := context.Background()
	b, h, err := e.m.Get(ctx, infoPath)
	if err != nil || !bytes.Equal(b, info) || h.Get(mirror.CacheHeader) != mirror.Miss || h.Get("ETag") != `"g"` {
		t.Fatalf("Get: %v, label %q, ETag %q", err, h.Get(mirror.CacheHeader), h.Get("ETag"))
	}
	// Served through Serve afterwards from the same entry.
	resp, _ := e.get(infoPath)
	expect(t, resp, 200, mirror.Revalidated)
	b, h, err = e.m.Get(ctx, infoPath+"?ignored=1")
	if err != nil || !bytes.Equal(b, info) || h.Get(mirror.CacheHeader) != mirror.Miss {
		t.Fatalf("Get with a query: %v %q", err, h.Get(mirror.CacheHeader))
	}
	if e.up.count(infoPath+"?ignored=1") != 1 {
		t.Fatal("Get did not forward the query")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	gate := make(chan struct{})
	defer close(gate)
	e.up.set("/api/slow", &file{body: []byte("{}"), gate: gate})
	if _, _, err := e.m.Get(cctx, "/api/slow"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context: %v", err)
	}
}

func TestNewInstanceURLAndDial(t *testing.T) {
	// The dial function the Upstream gives each time is the one used: a
	// reconnected agent's new session replaces the old one.
	up := newFakeComfy(t)
	up.set(infoPath, &file{body: []byte(`{"a":1}`), contentType: "application/json"})
	var which sync.Map
	addr := up.srv.Listener.Addr().String()
	gen := 0
	var mu sync.Mutex
	m := mirror.New(mirror.Config{Logger: quietLogger(), Upstream: func() (string, mirror.DialFunc, bool) {
		mu.Lock()
		g := gen
		mu.Unlock()
		return "http://gpu-1/", func(ctx context.Context, network, _ string) (net.Conn, error) {
			which.Store(g, true)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}, true
	}})
	defer m.Close()
	if _, _, err := m.Get(context.Background(), infoPath); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	gen = 1
	mu.Unlock()
	m.Close() // the old session's connections are gone
	if _, _, err := m.Get(context.Background(), infoPath); err != nil {
		t.Fatal(err)
	}
	if _, ok := which.Load(1); !ok {
		t.Fatal("the new dial function was not used")
	}
}

func TestUpstreamTimeoutNothingCached(t *testing.T) {
	e := newEnv(t, mirror.Config{Timeout: 200 * time.Millisecond})
	e.up.set(infoPath, &file{hang: true})
	start := time.Now()
	resp, body := e.get(infoPath)
	expect(t, resp, 503, mirror.Unavailable)
	if d := time.Since(start); d > 3*time.Second || !strings.Contains(string(body), `"unavailable"`) {
		t.Fatalf("after %s: %s", d, body)
	}
}

// TestConcurrentMixed runs hits, revalidations, coalesced misses, stale
// serves and invalidations at once, for the race detector.
func TestConcurrentMixed(t *testing.T) {
	e := newEnv(t, mirror.Config{})
	const paths = 12
	want := make([][]byte, paths)
	for i := range paths {
		want[i] = jsonDoc(2000+i*500, strconv.Itoa(i))
		p := fmt.Sprintf("/api/thing%d", i)
		if i%3 == 0 {
			p = fmt.Sprintf("/assets/chunk%d-Ab12Cd3%d.js", i, i%10)
		}
		e.up.set(p, &file{body: want[i], contentType: "application/json", etag: fmt.Sprintf(`"%d"`, i)})
	}
	pathOf := func(i int) string {
		if i%3 == 0 {
			return fmt.Sprintf("/assets/chunk%d-Ab12Cd3%d.js", i, i%10)
		}
		return fmt.Sprintf("/api/thing%d", i)
	}
	for i := range paths { // prime, so that every path can be served stale
		e.get(pathOf(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 150; j++ {
				i := (g*7 + j) % paths
				switch j % 50 {
				case 10:
					e.connected.Store(false)
				case 20:
					e.connected.Store(true)
				}
				req, _ := http.NewRequest(http.MethodGet, e.base+pathOf(i), nil)
				if j%2 == 0 {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				resp, err := e.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.Header.Get("Content-Encoding") == "gzip" {
					body = gunzip(t, body)
				}
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want[i]) {
					errs <- fmt.Errorf("%s: %d %s %v", pathOf(i), resp.StatusCode, resp.Header.Get(mirror.CacheHeader), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := e.m.Stats()
	t.Logf("stats %+v", s)
	if s.Hits == 0 || s.Revalidated == 0 || s.Stale == 0 {
		t.Fatalf("stats %+v", s)
	}
}

// With Allow set, a route is judged on its decoded path: an escaped
// spelling of a refused route is refused too, and never asked upstream.
func TestServeAllowDecodedPath(t *testing.T) {
	up := newFakeComfy(t)
	up.set("/api/internal/logs", &file{body: []byte("everyone's prompts")})
	up.set("/api/embeddings", &file{body: []byte(`[]`), contentType: "application/json"})
	e := newEnvWith(t, up, mirror.Config{Allow: mirror.ReadOnlyRoute})
	for _, p := range []string{"/api/internal/logs", "/api/%69nternal/logs", "/api/%69%6Eternal/logs", "/%61pi/internal/logs"} {
		resp, body := e.do("GET", p)
		if resp.StatusCode != 403 || bytes.Contains(body, []byte("prompts")) {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	if n := up.count("/api/internal/logs"); n != 0 {
		t.Errorf("the upstream was asked %d times", n)
	}
	if resp, body := e.do("GET", "/api/%65mbeddings"); resp.StatusCode != 200 || string(body) != "[]" {
		t.Errorf("an allowed route, escaped: %d %s", resp.StatusCode, body)
	}
}
