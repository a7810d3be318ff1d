package api

import (
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/seats"
)

// canonicalPath makes every route decide on the path the way a server
// behind it would read it: escapes of plain characters are decoded
// ("/api/%69nternal" is "/api/internal"), the rest are kept in upper case
// ("%2F" stays one segment, for userdata), empty segments are dropped, and
// a path with dot segments, backslashes or control characters, in any
// spelling, is refused. It runs before every route, so no rule (the
// participants' refusals, the admin API, the GPU host's allow-list) can be
// passed by spelling a path another way.
func canonicalPath(c *fiber.Ctx) error {
	raw := c.Path()
	clean, ok := CanonicalPath(raw)
	if !ok {
		return workshop.Errorf(workshop.EINVALID, "the path is not allowed: no dot segments, backslashes or control characters")
	}
	if clean != raw {
		c.Path(clean)
	}
	return c.Next()
}

// sameOriginSockets refuses a WebSocket opened by a page of another origin
// (another port of this host included): browsers send cookies with it,
// SameSite or not, and the socket then reads a seat's or the admin's
// events. (GPU agents upgrade to the tunnel, not to a WebSocket.)
func sameOriginSockets(c *fiber.Ctx) error {
	if strings.EqualFold(c.Get(fiber.HeaderUpgrade), "websocket") {
		if err := checkOrigin(c); err != nil {
			return err
		}
	}
	return c.Next()
}

// CanonicalPath returns the canonical form of an escaped URL path, or false
// when the path is refused.
func CanonicalPath(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' || len(raw) > 8192 {
		return "", false
	}
	if plainPath(raw) {
		return raw, true // most requests: nothing to decode or check
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return "", false
			}
			v, err := strconv.ParseUint(raw[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			c = byte(v)
			i += 2
			if !unreserved(c) {
				if c < 0x20 || c == 0x7f || c == '\\' {
					return "", false
				}
				b.WriteByte('%')
				b.WriteByte(upperHex[c>>4])
				b.WriteByte(upperHex[c&15])
				continue
			}
		} else if c < 0x20 || c == 0x7f || c == '\\' {
			return "", false
		}
		b.WriteByte(c)
	}
	// Dot segments and empty segments, after decoding.
	segs := strings.Split(b.String()[1:], "/")
	out := segs[:0]
	for i, s := range segs {
		switch {
		case s == "." || s == "..":
			return "", false
		case s == "" && i < len(segs)-1:
			continue // "//": one slash
		}
		out = append(out, s)
	}
	return "/" + strings.Join(out, "/"), true
}

// plainPath reports a path with no escapes, backslashes or control
// characters, and no segment that is empty or starts with a dot.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%' || c == '\\' || c < 0x20 || c == 0x7f:
			return false
		case c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.'):
			return false
		}
	}
	return true
}

// unreserved are RFC 3986's characters that mean the same escaped or not.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

const upperHex = "0123456789ABCDEF"

// requestLimits is fasthttp's HeaderReceived hook: it runs once a request's
// headers are in, before its body is read, and sets the body's cap and
// read deadline from who the headers say is calling. An anonymous caller's
// 50 MB upload is refused (413) before a byte of it is read.
func (s *Server) requestLimits(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() == 0 {
		return fasthttp.RequestConfig{} // no body to read
	}
	path, _, _ := strings.Cut(string(h.RequestURI()), "?")
	clean, ok := CanonicalPath(path)
	if !ok || !s.signedIn(h, clean) {
		return fasthttp.RequestConfig{MaxRequestBodySize: AnonymousBodyLimit, ReadTimeout: bodyTimeout}
	}
	if s.cfg.LargeBody != nil {
		if n := s.cfg.LargeBody(clean); n > s.cfg.BodyLimit {
			return fasthttp.RequestConfig{MaxRequestBodySize: n, ReadTimeout: largeBodyTimeout}
		}
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: s.cfg.BodyLimit, ReadTimeout: bodyTimeout}
}

// signedIn reports whether request headers carry the admin token, an admin
// session or a participant's session (or, with open seats, go to a
// participant's routes). The routes check again, and check what for.
func (s *Server) signedIn(h *fasthttp.RequestHeader, path string) bool {
	if s.cfg.OpenSeats && strings.HasPrefix(path, "/user/") {
		return true
	}
	if tok := auth.BearerToken(string(h.Peek(fiber.HeaderAuthorization))); tok != "" {
		return auth.TokenMatches(s.cfg.AdminTokenHash, tok)
	}
	if s.cfg.Seats == nil {
		return false
	}
	for _, name := range []string{seats.AdminCookieName, seats.CookieName} {
		if _, ok := s.cfg.Seats.Session(string(h.Cookie(name))); ok {
			return true
		}
	}
	return false
}
