package api_test

import (
	"slices"
	"testing"

	"github.com/comfy-workshop/workshop/api"
)

// Every spelling of a path routes as the path it decodes to, and dot
// segments, backslashes and control characters are refused in any spelling.
func TestCanonicalPath(t *testing.T) {
	for raw, want := range map[string]string{
		"/":                               "/",
		"/user/1/":                        "/user/1/",
		"/user/1/api/%69nternal/logs":     "/user/1/api/internal/logs",
		"/api/%6danager/reboot":           "/api/manager/reboot",
		"/user/1/%73im/stats":             "/user/1/sim/stats",
		"/user/1/api/%2569nternal/logs":   "/user/1/api/%2569nternal/logs", // decoded once upstream: "%69nternal", no route
		"/user/1/api/userdata/a%2fb.json": "/user/1/api/userdata/a%2Fb.json",
		"/user/1/api/userdata/a%20b.json": "/user/1/api/userdata/a%20b.json",
		"//user//1//api":                  "/user/1/api",
		"/assets/index-%41b12Cd34.js":     "/assets/index-Ab12Cd34.js",
		"/user/1/templates/a%20b%7E.json": "/user/1/templates/a%20b~.json",
	} {
		got, ok := api.CanonicalPath(raw)
		if !ok || got != want {
			t.Errorf("%q: %q %v, want %q", raw, got, ok, want)
		}
	}
	for _, raw := range []string{
		"", "user/1/", "/user/1/../2/", "/user/1/./api", "/user/1/%2e%2e/2/", "/user/1/%2E/api", "/user/1/.%2e/x",
		"/user/1/api\\internal", "/user/1/api%5cinternal", "/user/1/a%00b", "/user/1/a%0d%0ab", "/a\x01b",
		"/user/1/%", "/user/1/%6", "/user/1/%zz", "/user/1/%-1",
	} {
		if got, ok := api.CanonicalPath(raw); ok {
			t.Errorf("%q: accepted as %q", raw, got)
		}
	}
}

// The profiler's cmdline never shows a secret flag's value.
func TestRedactArgs(t *testing.T) {
	got := api.RedactArgs([]string{"workshop", "serve", "--admin-token", "s3cret-admin", "-agent-token=s3cret-agent",
		"--admin-password", "pw", "--seats", "20", "--data=/d"})
	want := []string{"workshop", "serve", "--admin-token", "REDACTED", "-agent-token=REDACTED", "--admin-password", "REDACTED", "--seats", "20", "--data=/d"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, p := range []string{"/user/12/api/queue", "/user/12/api/userdata/workflows%2Fa%20b.json"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				api.CanonicalPath(p)
			}
		})
	}
}
