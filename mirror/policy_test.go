package mirror

import (
	"testing"
	"time"
)

func TestHashedAsset(t *testing.T) {
	for p, want := range map[string]bool{
		"/assets/index-DqS6dFzD.js":            true,
		"/assets/GraphView-Cd1ZwJGn.css":       true,
		"/assets/vendor.B9x_q2Lm.js.map":       true,
		"/assets/index-D-abc_12.js":            true,
		"/assets/Inter-Regular-Bx1cDe2F.woff2": true,
		"/assets/some-long-name.js":            false, // no hash
		"/assets/workflow-template.js":         false, // a word, not a hash
		"/assets/index.js":                     false,
		"/index-DqS6dFzD.js":                   false, // not under assets/
		"/extensions/core/x-DqS6dFzD.js":       false,
		"/assets/":                             false,
		"/assets/noext-DqS6dFzD":               false,
	} {
		if got := HashedAsset(p); got != want {
			t.Errorf("HashedAsset(%q) = %v", p, got)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for ae, want := range map[string]bool{
		"":                        false,
		"gzip":                    true,
		"gzip, deflate, br, zstd": true,
		"br;q=1.0, gzip;q=0.8":    true,
		"gzip;q=0":                false,
		"gzip;q=0.0, *":           false,
		"*":                       true,
		"*;q=0":                   false,
		"identity":                false,
		"deflate, br":             false,
		"x-gzip":                  true,
		"GZIP":                    true,
	} {
		if got := acceptsGzip(ae); got != want {
			t.Errorf("acceptsGzip(%q) = %v", ae, got)
		}
	}
}

func TestCacheControl(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":                          0,
		"no-cache":                  0,
		"no-store, must-revalidate": 0,
		"public, max-age=86400":     24 * time.Hour,
		"max-age=60, private":       0,
		"max-age=60, s-maxage=10":   10 * time.Second,
		`max-age="30"`:              30 * time.Second,
		"max-age=abc":               0,
	} {
		if got := parseCacheControl(v).lifetime(""); got != want {
			t.Errorf("lifetime(%q) = %s, want %s", v, got, want)
		}
	}
	if got := parseCacheControl("max-age=60").lifetime("50"); got != 10*time.Second {
		t.Errorf("with Age 50: %s", got)
	}
}

func TestValidPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/":                       true,
		"/api/object_info":        true,
		"/templates/a%20b.json":   true,
		"/api/experiment/models/": true,
		"":                        false,
		"api":                     false,
		"/a/../b":                 false,
		"/a/./b":                  false,
		"/a/%2e%2E/b":             false,
		"/a/%2e":                  false,
		"/a//b":                   false,
		"/a%2Fb":                  false,
		"/a%5Cb":                  false,
		"/a\\b":                   false,
		"/a%00b":                  false,
		"/a%zz":                   false,
		"/a?b":                    false,
		"/a#b":                    false,
		"/a\nb":                   false,
	} {
		if got := validPath(p); got != want {
			t.Errorf("validPath(%q) = %v", p, got)
		}
	}
}

func TestRewriteLocation(t *testing.T) {
	for _, c := range []struct{ loc, req, up, origin, want string }{
		{"/assets/x.js", "/user/1/old", "/old", "", "/user/1/assets/x.js"},
		{"/", "/user/12/", "/", "", "/user/12/"},
		{"http://gpu-1/x", "/user/1/y", "/y", "http://gpu-1", "/user/1/x"},
		{"x.js", "/user/1/y", "/y", "", "x.js"},
		{"https://example.org/z", "/user/1/y", "/y", "http://gpu-1", "https://example.org/z"},
		{"//evil.example/z", "/user/1/y", "/y", "", "//evil.example/z"},
	} {
		if got := rewriteLocation(c.loc, c.req, c.up, c.origin); got != c.want {
			t.Errorf("rewriteLocation(%q, %q, %q) = %q, want %q", c.loc, c.req, c.up, got, c.want)
		}
	}
}

func TestEtagMatch(t *testing.T) {
	if !etagMatch(`W/"a", "b"`, `"b"`) || !etagMatch(`"a"`, `W/"a"`) || !etagMatch("*", `"x"`) ||
		etagMatch(`"a"`, `"b"`) || etagMatch(`"a"`, "") {
		t.Fatal("etagMatch")
	}
}

// Only the read-only routes the participants' UI needs reach a GPU host;
// the decision is on the decoded path.
func TestReadOnlyRoute(t *testing.T) {
	allowed := []string{
		"/", "/index.html", "/user.css", "/favicon.ico", "/materialdesignicons.min.css",
		"/assets/index-DqS6dFzD.js", "/assets/images/favicon_progress_16x16/frame_1.png", "/extensions/core/widgets.js",
		"/fonts/x.woff2", "/scripts/app.js", "/lib/litegraph.core.js", "/templates/index.json", "/cursor/x.svg",
		"/api/embeddings", "/embeddings", "/api/models", "/api/models/checkpoints", "/models/loras",
		"/api/system_stats", "/system_stats", "/api/features", "/api/i18n", "/api/workflow_templates",
		"/api/workflow_templates/pack/x.json", "/api/experiment/models", "/api/experiment/models/loras",
		"/api/experiment/models/preview/loras/0/a.webp", "/api/view_metadata/loras", "/api/global_subgraphs",
		"/api/global_subgraphs/abc", "/api/node_replacements",
	}
	refused := []string{
		"/api/internal/logs", "/internal/logs", "/api/internal/files/output", "/internal/folder_paths",
		"/api/manager/reboot", "/manager/queue/start", "/sim/stats", "/sim/fault", "/api/free", "/free",
		"/api/logs", "/api/object_info", "/object_info", "/api/object_info/LoadImage", "/api/extensions",
		"/api/prompt", "/prompt", "/api/queue", "/api/history", "/api/view", "/view", "/api/upload/image",
		"/api/userdata/a.json", "/api/settings", "/api/users", "/api/jobs", "/api/interrupt", "/api/assets",
		"/api/secrets", "/api/models/a/b", "/workflow_templates/pack/x.json", "/api/embeddings/x",
		"/api/assets/x.js", "/customnode/getlist", "/something", "/index.php/x",
	}
	for _, p := range allowed {
		if !ReadOnlyRoute(p) {
			t.Errorf("%s refused", p)
		}
	}
	for _, p := range refused {
		if ReadOnlyRoute(p) {
			t.Errorf("%s allowed", p)
		}
	}
}
