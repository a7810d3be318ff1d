package mirror_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/mirror"
)

// TestSimulatorUpstream puts the repository's ComfyUI simulator behind the
// mirror: its page, object_info and extensions come through, are kept, and
// still serve once it is gone.
func TestSimulatorUpstream(t *testing.T) {
	s, err := sim.New(sim.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	e := newEnvAddr(t, srv.Listener.Addr().String(), mirror.Config{})

	resp, page := e.get("/", "Accept: text/html", "Accept-Encoding: gzip")
	expect(t, resp, 200, mirror.Miss)
	if resp.Header.Get("Content-Encoding") == "gzip" {
		page = gunzip(t, page)
	}
	if !strings.Contains(string(page), "ComfyUI simulator") || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("page: Cache-Control %q\n%.200s", resp.Header.Get("Cache-Control"), page)
	}
	resp, _ = e.get("/", "Accept: text/html")
	expect(t, resp, 200, mirror.Revalidated)

	var info comfy.ObjectInfo
	for i, p := range []string{"/api/object_info", "/object_info"} {
		resp, body := e.get(p)
		expect(t, resp, 200, mirror.Miss)
		if err := json.Unmarshal(body, &info); err != nil || info["KSampler"].Category != "sampling" {
			t.Fatalf("%s: %v, %d nodes", p, err, len(info))
		}
		if i == 0 {
			resp, again := e.get(p)
			expect(t, resp, 200, mirror.Revalidated)
			if !bytes.Equal(again, body) {
				t.Fatal("revalidated object_info differs")
			}
		}
	}
	resp, body := e.get("/api/extensions")
	expect(t, resp, 200, mirror.Miss)
	var exts []string
	if err := json.Unmarshal(body, &exts); err != nil {
		t.Fatalf("extensions %q: %v", body, err)
	}
	b, h, err := e.m.Get(context.Background(), "/api/object_info")
	if err != nil || h.Get(mirror.CacheHeader) != mirror.Revalidated || json.Unmarshal(b, &info) != nil {
		t.Fatalf("Get object_info: %v, %q", err, h.Get(mirror.CacheHeader))
	}

	// The GPU host goes away: everything seen still serves.
	srv.Close()
	for _, p := range []string{"/", "/api/object_info", "/object_info", "/api/extensions"} {
		resp, body := e.get(p, "Accept: text/html")
		expect(t, resp, 200, mirror.Stale)
		if len(body) == 0 {
			t.Fatalf("%s: empty stale body", p)
		}
	}
	resp, _ = e.get("/api/system_stats")
	expect(t, resp, http.StatusServiceUnavailable, mirror.Unavailable)
}
