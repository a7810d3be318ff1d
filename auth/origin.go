package auth

import (
	"net/url"
	"strings"
)

// SameOrigin reports whether a browser request comes from a page of this
// server, as net/http's CrossOriginProtection decides it: by the
// browser's Sec-Fetch-Site when it sends one (every current browser does;
// it also holds behind a proxy that rewrites Host), else by Origin against
// the Host header. A page on another port of the same host is another
// origin, though the same site, so SameSite cookies alone do not keep it
// out. A request with neither header is not from a browser page (curl, a
// ComfyUI API client) and passes: it must still authenticate.
func SameOrigin(origin, fetchSite, host string) bool {
	switch strings.ToLower(fetchSite) {
	case "same-origin", "none": // none: the user's own navigation
		return true
	case "":
	default: // same-site, cross-site
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
