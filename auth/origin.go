package auth

import (
	"net/url"
	"strings"
)

// SameOrigin reports whether a browser request comes from a page of this
// server (host, as the Host header names it), from its Origin and
// Sec-Fetch-Site headers. Browsers send Origin on every cross-origin
// request that changes state and on every WebSocket; a page on another
// port of the same host is another origin, though the same site, so
// SameSite cookies alone do not keep it out. A request with neither header
// is not from a browser page (curl, a ComfyUI API client) and passes: it
// must still authenticate.
func SameOrigin(origin, fetchSite, host string) bool {
	switch strings.ToLower(fetchSite) {
	case "", "same-origin", "none": // none: typed in the address bar
	default:
		return false
	}
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// SafeMethod reports the HTTP methods that change nothing (GET, HEAD,
// OPTIONS): the others need a same-origin page, and a session's CSRF token.
func SafeMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS":
		return true
	}
	return false
}
