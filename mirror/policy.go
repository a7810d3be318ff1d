package mirror

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Cache-Control values sent to the browser.
const (
	ccImmutable  = "public, max-age=31536000, immutable"
	ccRevalidate = "no-cache"
	ccNoStore    = "no-store"
)

// HashedAsset reports whether path names a content-hashed build file of the
// ComfyUI frontend, which never changes under its name: a file under an
// assets/ folder whose name ends, before its extension, in a Vite-style
// hash of eight characters from [A-Za-z0-9_-] after a '-' or '.', with at
// least one digit, capital or '_' among them ("index-DqS6dFzD.js",
// "GraphView-Cd1ZwJGn.css", "vendor.B9x_q2Lm.js.map").
func HashedAsset(path string) bool {
	if !strings.Contains(path, "/assets/") {
		return false
	}
	name := path[strings.LastIndexByte(path, '/')+1:]
	name = strings.TrimSuffix(name, ".map")
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return false
	}
	stem := name[:dot]
	if len(stem) < 10 {
		return false
	}
	if c := stem[len(stem)-9]; c != '-' && c != '.' {
		return false
	}
	mixed := false
	for i := len(stem) - 8; i < len(stem); i++ {
		switch c := stem[i]; {
		case c >= 'a' && c <= 'z', c == '-':
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			mixed = true
		default:
			return false
		}
	}
	return mixed
}

// cacheControl is the part of a Cache-Control header the mirror uses.
type cacheControl struct {
	noStore, noCache, private bool
	maxAge, sMaxAge           int // -1 when absent
}

func parseCacheControl(v string) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1}
	for _, part := range strings.Split(v, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "no-store":
			cc.noStore = true
		case "no-cache":
			cc.noCache = true
		case "private":
			cc.private = true
		case "max-age":
			if n, err := strconv.Atoi(val); err == nil && n >= 0 {
				cc.maxAge = n
			}
		case "s-maxage":
			if n, err := strconv.Atoi(val); err == nil && n >= 0 {
				cc.sMaxAge = n
			}
		}
	}
	return cc
}

// lifetime is how long an upstream answer may be served without asking
// again, from its Cache-Control (s-maxage before max-age) less its Age;
// 0 when it must be revalidated every time.
func (cc cacheControl) lifetime(age string) time.Duration {
	if cc.noStore || cc.noCache || cc.private {
		return 0
	}
	secs := cc.maxAge
	if cc.sMaxAge >= 0 {
		secs = cc.sMaxAge
	}
	if secs <= 0 {
		return 0
	}
	if a, err := strconv.Atoi(strings.TrimSpace(age)); err == nil && a > 0 {
		secs -= a
	}
	if secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// alwaysRevalidate says whether a content type is one the UI must see fresh
// whatever the upstream says: pages and API JSON.
func alwaysRevalidate(contentType string) bool {
	ct := mediaType(contentType)
	return ct == "text/html" || ct == "application/json" || strings.HasSuffix(ct, "+json")
}

func mediaType(contentType string) string {
	ct, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(ct))
}

// compressible says whether gzip is worth trying on a content type.
func compressible(contentType string) bool {
	ct := mediaType(contentType)
	switch {
	case strings.HasPrefix(ct, "text/"),
		strings.HasSuffix(ct, "+json"), strings.HasSuffix(ct, "+xml"),
		strings.HasSuffix(ct, "/json"), strings.HasSuffix(ct, "/xml"),
		strings.Contains(ct, "javascript"), strings.Contains(ct, "ecmascript"):
		return true
	}
	switch ct {
	case "image/svg+xml", "application/wasm", "font/ttf", "font/otf",
		"application/vnd.ms-fontobject", "application/x-font-ttf":
		return true
	}
	return false
}

// acceptsGzip reads an Accept-Encoding header: gzip (or x-gzip) with a
// non-zero q, or * with a non-zero q and no explicit gzip entry.
func acceptsGzip(ae string) bool {
	if ae == "" {
		return false
	}
	if ae == "gzip" || strings.HasPrefix(ae, "gzip, ") && !strings.Contains(ae, ";") {
		return true // the common browser forms, without allocating
	}
	gzip, star, explicit := false, false, false
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		ok := qNonZero(params)
		switch name {
		case "gzip", "x-gzip":
			gzip, explicit = ok, true
		case "*":
			star = ok
		}
	}
	if explicit {
		return gzip
	}
	return star
}

func qNonZero(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err != nil || q > 0
		}
	}
	return true
}

// etagMatch is the weak comparison of If-None-Match against an ETag.
func etagMatch(ifNoneMatch, etag string) bool {
	if etag == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(ifNoneMatch, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}

// weaken turns a strong ETag into a weak one, for a representation that is
// not byte for byte the one the upstream tagged (a re-encoding).
func weaken(etag string) string {
	if etag == "" || strings.HasPrefix(etag, "W/") {
		return etag
	}
	return "W/" + etag
}

// validPath accepts an absolute, escaped URL path without dot segments,
// empty segments, escaped slashes, backslashes or control characters, so that a route the
// caller allowed cannot be turned into another one upstream.
func validPath(p string) bool {
	if p == "" || p[0] != '/' || len(p) > 4096 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' || c == '?' || c == '#' {
			return false
		}
	}
	for rest := p[1:]; ; {
		s, tail, more := strings.Cut(rest, "/")
		if s == "" && more {
			return false
		}
		d, err := url.PathUnescape(s)
		if err != nil || d == "." || d == ".." || strings.ContainsAny(d, "/\\\x00") {
			return false
		}
		if !more {
			break
		}
		rest = tail
	}
	return true
}

// isNavigation says whether a request is a page load, which gets the HTML
// "GPUs are not connected" page rather than a JSON error.
func isNavigation(path, accept, fetchMode string) bool {
	if path == "/" || strings.HasSuffix(path, ".html") || fetchMode == "navigate" {
		return true
	}
	return strings.Contains(accept, "text/html")
}

// ReadOnlyRoute reports whether a decoded path is one of the read-only
// routes of ComfyUI that participants' UIs need from a GPU host: the
// frontend's static files, and the node, model and template lists. Every
// other route (internal/*, manager/*, free, logs, a simulator's controls,
// and anything a newer ComfyUI adds) is not forwarded: a GPU host's routes
// are global, so whatever one participant could reach there they could
// reach for everyone. object_info and extensions are not here either: the
// server answers them per participant.
func ReadOnlyRoute(p string) bool {
	if p == "/" || p == "/index.html" {
		return true
	}
	rest, api := strings.CutPrefix(p, "/api/")
	if !api {
		rest = strings.TrimPrefix(p, "/")
	}
	first, sub, nested := strings.Cut(rest, "/")
	if !api {
		switch {
		case !nested && staticFile(first): // index.html's neighbours: user.css, favicon.ico...
			return true
		case nested && staticFolder(first):
			return true
		}
	}
	// An API route, under /api or bare (as older clients call them).
	switch first {
	case "embeddings", "system_stats", "features", "i18n", "node_replacements":
		return !nested
	case "global_subgraphs":
		return !nested || !strings.Contains(sub, "/")
	case "models", "view_metadata":
		return !nested || sub != "" && !strings.Contains(sub, "/")
	case "experiment":
		return sub == "models" || strings.HasPrefix(sub, "models/")
	case "workflow_templates":
		return !nested || api // /api/workflow_templates/{pack}/{name}.json are files
	}
	return false
}

// staticFolder reports the folders of a frontend build, of custom nodes'
// web files (extensions/) and of workflow templates.
func staticFolder(name string) bool {
	switch name {
	case "assets", "extensions", "fonts", "scripts", "lib", "cursor", "templates", "docs", "types":
		return true
	}
	return false
}

// staticFile reports a top-level file name of a frontend build.
func staticFile(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".html", ".css", ".js", ".mjs", ".map", ".json", ".ico", ".png", ".svg", ".webp", ".jpg", ".woff", ".woff2", ".ttf", ".txt", ".webmanifest":
		return true
	}
	return false
}

// decodedPath is an escaped path that validPath accepted, decoded.
func decodedPath(p string) string {
	d, err := url.PathUnescape(p)
	if err != nil {
		return ""
	}
	return d
}
