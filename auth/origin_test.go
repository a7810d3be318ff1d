package auth

import "testing"

func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		origin, site, host string
		want               bool
	}{
		{"", "", "h:8080", true}, // not a browser page
		{"http://h:8080", "", "h:8080", true},
		{"http://h:9999", "", "h:8080", false}, // another port
		{"http://evil", "", "h:8080", false},
		{"null", "", "h:8080", false},                         // a sandboxed page
		{"http://h:8080", "same-origin", "internal:80", true}, // Host rewritten by a proxy
		{"", "same-site", "h:8080", false},
		{"http://h:8080", "cross-site", "h:8080", false},
		{"", "none", "h:8080", true},
	} {
		if got := SameOrigin(c.origin, c.site, c.host); got != c.want {
			t.Errorf("%+v: %v", c, got)
		}
	}
}
