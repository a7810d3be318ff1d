package mirror

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Upstream picks an instance to forward to: a base URL (only its scheme,
// host and path matter; the host is the Host header the instance sees) and
// a dial function that reaches it, through the tunnel. ok is false when no
// instance is connected. A nil dial dials the URL's host directly.
type Upstream func() (baseURL string, dial func(ctx context.Context, network, addr string) (net.Conn, error), ok bool)

// Config sets up a Mirror. Every field but Upstream is optional.
type Config struct {
	// Upstream picks the instance; nil means never connected.
	Upstream Upstream
	// Logger gets upstream failures (default slog.Default()).
	Logger *slog.Logger
	// MaxCacheBytes bounds the memory the cache holds (default 256 MiB).
	MaxCacheBytes int64
	// MaxEntryBytes is the largest body kept in the cache (default 16 MiB);
	// bigger bodies are streamed to the client and not kept.
	MaxEntryBytes int64
	// Timeout bounds one upstream request until its response headers, and
	// then each wait for more of its body (default 30 s).
	Timeout time.Duration
	// NotFoundTTL is how long a 404 or 410 is served without asking again
	// (default 10 s).
	NotFoundTTL time.Duration
	// Immutable says which paths never change under their name, so are
	// served from the cache without asking (default HashedAsset).
	Immutable func(path string) bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Allow says which paths (decoded: "/api/internal/logs", never
	// "/api/%69nternal/logs") Serve forwards; others get 403. Default: all.
	// A server for participants sets ReadOnlyRoute.
	Allow func(path string) bool
	// Dir, if set, keeps a copy of the cached 200 answers there, read back
	// by New, so that after a server restart the UI loads from the cache
	// before any GPU host is back. What was loaded is revalidated with the
	// upstream like any cached copy.
	Dir string
}

// Defaults of Config.
const (
	DefaultMaxCacheBytes = 256 << 20
	DefaultMaxEntryBytes = 16 << 20
	DefaultTimeout       = 30 * time.Second
	DefaultNotFoundTTL   = 10 * time.Second
)

// CacheHeader is the response header that says how the mirror answered.
const CacheHeader = "X-Workshop-Cache"

// Values of CacheHeader.
const (
	Hit         = "hit"         // from the cache, without asking the upstream
	Miss        = "miss"        // a new body from the upstream
	Revalidated = "revalidated" // the upstream confirmed the cached copy
	Stale       = "stale"       // the upstream is away or failing: the cached copy
	Bypass      = "bypass"      // an uncached range request, streamed as is
	Unavailable = "unavailable" // nothing cached and no upstream: 503
)

// RetryAfter is the Retry-After of the 503 answers, in seconds.
const RetryAfter = 5

// ErrUnavailable is returned by Get, and answered as 503 by Serve, when no
// upstream is connected or reachable and nothing is cached for the path.
var ErrUnavailable = errors.New("the GPUs are not connected yet")

// ErrBadPath is returned for a path with dot segments, escaped slashes and
// the like, which could reach another route upstream.
var ErrBadPath = errors.New("mirror: bad path")

// StatusError is returned by Get when the upstream's answer (possibly a
// cached 404) is not 200. Body holds its (identity) body.
type StatusError struct {
	Status int
	Body   []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("mirror: upstream answered %d %s", e.Status, http.StatusText(e.Status))
}

// Stats counts what the mirror did since New.
type Stats struct {
	Hits        int64 // answered from the cache without asking the upstream
	Misses      int64 // answered with a new body from the upstream (streamed ones too)
	Revalidated int64 // answered from the cache after the upstream confirmed it
	Stale       int64 // answered from the cache because the upstream was away or failing
	Bypassed    int64 // uncached range requests streamed as is
	Unavailable int64 // answered 503 (or ErrUnavailable): nothing cached, no upstream

	Coalesced        int64 // requests that waited for another's upstream request
	Streamed         int64 // bodies too big to keep, streamed through
	UpstreamRequests int64 // requests sent upstream
	UpstreamErrors   int64 // of which failed (dial, timeout, broken body)

	Entries   int   // entries in the cache now
	Bytes     int64 // their size
	Evictions int64 // entries evicted for space
}

// Mirror is the cached forwarder. Its methods are safe for concurrent use.
type Mirror struct {
	cfg     Config
	log     *slog.Logger
	cache   *lru
	clients clients

	fmu     sync.Mutex
	flights map[string]*flight

	stats struct {
		hits, misses, revalidated, stale, bypassed, unavailable atomic.Int64
		coalesced, streamed, upstream, upstreamErrors           atomic.Int64
	}
	lastWarn atomic.Int64
}

// flight is one upstream request that concurrent requests for the same key
// wait on.
type flight struct {
	done  chan struct{}
	e     *entry // the answer, when it was read whole
	label string
	err   error // the upstream failed (serve stale or 503)
	// stream is set when the body is too big to share: the request that
	// started the flight streams it; the others ask the upstream themselves.
	stream *stream
}

// New returns a Mirror.
func New(cfg Config) *Mirror {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxCacheBytes <= 0 {
		cfg.MaxCacheBytes = DefaultMaxCacheBytes
	}
	if cfg.MaxEntryBytes <= 0 {
		cfg.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.NotFoundTTL <= 0 {
		cfg.NotFoundTTL = DefaultNotFoundTTL
	}
	if cfg.Immutable == nil {
		cfg.Immutable = HashedAsset
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Mirror{
		cfg:     cfg,
		log:     cfg.Logger,
		cache:   newLRU(cfg.MaxCacheBytes),
		clients: clients{m: make(map[string]*upClient), timeout: cfg.Timeout},
		flights: make(map[string]*flight),
	}
	if cfg.Dir != "" {
		d, err := openDisk(cfg.Dir, cfg.Logger)
		if err != nil {
			cfg.Logger.Warn("the mirror keeps no copy on disk", "dir", cfg.Dir, "err", err)
			return m
		}
		loaded := d.load(cfg.MaxCacheBytes)
		for _, e := range slices.Backward(loaded) { // the newest ends up most recent
			m.cache.put(e)
		}
		m.cache.disk = d
		if len(loaded) > 0 {
			cfg.Logger.Info("mirror copy loaded", "entries", len(loaded), "dir", cfg.Dir)
		}
	}
	return m
}

// Invalidate drops the cached copies of path: the entry for path as given
// (which may carry a query) and, for a path without one, every entry for it
// with a query.
func (m *Mirror) Invalidate(path string) {
	if strings.Contains(path, "?") {
		m.cache.remove(path)
		return
	}
	m.cache.removePath(path)
}

// Purge drops the whole cache.
func (m *Mirror) Purge() { m.cache.purge() }

// Close closes the idle upstream connections. The Mirror stays usable.
func (m *Mirror) Close() error {
	m.clients.closeIdle()
	return nil
}

// Stats returns the counters.
func (m *Mirror) Stats() Stats {
	n, b, ev := m.cache.stats()
	s := &m.stats
	return Stats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), Revalidated: s.revalidated.Load(),
		Stale: s.stale.Load(), Bypassed: s.bypassed.Load(), Unavailable: s.unavailable.Load(),
		Coalesced: s.coalesced.Load(), Streamed: s.streamed.Load(),
		UpstreamRequests: s.upstream.Load(), UpstreamErrors: s.upstreamErrors.Load(),
		Entries: n, Bytes: b, Evictions: ev,
	}
}

func cacheKey(p, q string) string {
	if q == "" {
		return p
	}
	return p + "?" + q
}

// result is how to answer one request: an entry, a stream, or err.
type result struct {
	e      *entry
	stream *stream
	label  string
	err    error
}

func (m *Mirror) count(label string) {
	s := &m.stats
	switch label {
	case Hit:
		s.hits.Add(1)
	case Miss:
		s.misses.Add(1)
	case Revalidated:
		s.revalidated.Add(1)
	case Stale:
		s.stale.Add(1)
	case Bypass:
		s.bypassed.Add(1)
	case Unavailable:
		s.unavailable.Add(1)
	}
}

func (m *Mirror) answer(r result) result {
	if r.err != nil {
		m.count(Unavailable)
	} else {
		m.count(r.label)
	}
	return r
}

// staleOr answers with whatever is cached for key, or err.
func (m *Mirror) staleOr(key string, err error) result {
	if e := m.cache.get(key); e != nil {
		return m.answer(result{e: e, label: Stale})
	}
	return m.answer(result{err: err})
}

// upstream returns the client for the current upstream, or nil.
func (m *Mirror) upstream() *upClient {
	if m.cfg.Upstream == nil {
		return nil
	}
	base, dial, ok := m.cfg.Upstream()
	if !ok {
		return nil
	}
	uc, err := m.clients.get(base, dial, m.cfg.Now())
	if err != nil {
		m.warn("no usable upstream", "err", err)
		return nil
	}
	return uc
}

// resolve finds the answer for key: from the cache when fresh, else by
// asking the upstream (once for all concurrent requests), else stale, else
// ErrUnavailable.
func (m *Mirror) resolve(ctx context.Context, key, p, q string) result {
	e := m.cache.get(key)
	if e != nil && e.fresh(m.cfg.Now()) {
		return m.answer(result{e: e, label: Hit})
	}
	uc := m.upstream()
	if uc == nil {
		return m.staleOr(key, ErrUnavailable)
	}

	m.fmu.Lock()
	f, waiting := m.flights[key]
	if !waiting {
		f = &flight{done: make(chan struct{})}
		m.flights[key] = f
	}
	m.fmu.Unlock()
	if waiting {
		m.stats.coalesced.Add(1)
	} else {
		go m.run(f, key, p, q, uc, e)
	}

	select {
	case <-f.done:
	case <-ctx.Done():
		if !waiting {
			go func() {
				<-f.done
				if f.stream != nil {
					_ = f.stream.Close()
				}
			}()
		}
		return m.answer(result{err: ctx.Err()})
	}

	switch {
	case f.e != nil:
		return m.answer(result{e: f.e, label: f.label})
	case f.stream != nil && !waiting:
		m.stats.streamed.Add(1)
		return m.answer(result{stream: f.stream, label: Miss})
	case f.stream != nil:
		// Too big to share: ask for our own copy.
		fr, err := m.fetch(uc, p, q, nil, "")
		if err != nil {
			m.warn("upstream request failed", "path", key, "err", err)
			return m.staleOr(key, ErrUnavailable)
		}
		r, err := m.settle(key, p, fr, nil)
		if err != nil {
			return m.staleOr(key, ErrUnavailable)
		}
		if r.stream != nil {
			m.stats.streamed.Add(1)
		}
		return m.answer(r)
	default:
		return m.staleOr(key, ErrUnavailable)
	}
}

// run is the one upstream request of a flight.
func (m *Mirror) run(f *flight, key, p, q string, uc *upClient, cached *entry) {
	defer func() {
		if v := recover(); v != nil {
			f.e, f.stream, f.err = nil, nil, fmt.Errorf("mirror: panic: %v", v)
			m.log.Error("mirror: panic while fetching", "path", key, "panic", v)
		}
		m.fmu.Lock()
		delete(m.flights, key)
		m.fmu.Unlock()
		close(f.done)
	}()
	fr, err := m.fetch(uc, p, q, cached, "")
	if err != nil {
		m.warn("upstream request failed", "path", key, "err", err)
		f.err = err
		return
	}
	r, err := m.settle(key, p, fr, cached)
	if err != nil {
		m.warn("upstream request failed", "path", key, "err", err)
		f.err = err
		return
	}
	f.e, f.label, f.stream = r.e, r.label, r.stream
}

// settle turns an upstream answer into a result and updates the cache.
// It returns an error when the upstream failed and cached can be served.
func (m *Mirror) settle(key, p string, fr fetched, cached *entry) (result, error) {
	now := m.cfg.Now()
	resp := fr.resp
	if fr.notModified {
		ne := m.revalidated(cached, resp.Header, now)
		m.cache.put(ne)
		return result{e: ne, label: Revalidated}, nil
	}
	if fr.stream != nil {
		if cached != nil {
			m.cache.remove(key)
		}
		return result{stream: fr.stream, label: Miss}, nil
	}
	status := resp.StatusCode
	if cached != nil && (status >= 500 || status == http.StatusTooManyRequests) {
		return result{}, errStatus(status)
	}
	if cached != nil && status == cached.status && cached.encoding == "" &&
		bytes.Equal(cached.upstreamBytes(), fr.body) &&
		strings.EqualFold(resp.Header.Get("Content-Encoding"), contentEncoding(cached)) {
		// The same bytes again (an upstream without validators).
		ne := m.revalidated(cached, resp.Header, now)
		m.cache.put(ne)
		return result{e: ne, label: Revalidated}, nil
	}
	e, err := m.newEntry(key, p, resp, fr.body, now)
	if err != nil {
		return result{}, err
	}
	if e.cacheable() {
		m.cache.put(e)
	}
	// Any other status is passed on but neither kept nor dropping what is
	// kept: that copy still serves if the upstream goes away.
	return result{e: e, label: Miss}, nil
}

func contentEncoding(e *entry) string {
	if e.gzipped {
		return "gzip"
	}
	return ""
}

// revalidated is a copy of e confirmed by the upstream now, with the
// validators and freshness of its latest answer.
func (m *Mirror) revalidated(e *entry, h http.Header, now time.Time) *entry {
	ne := *e
	if v := h.Get("ETag"); v != "" {
		if ne.ownETag == ne.etag {
			ne.ownETag = v
		}
		ne.etag = v
	}
	if v := h.Get("Last-Modified"); v != "" {
		ne.lastModified = v
	}
	cc := h.Get("Cache-Control")
	m.setFreshness(&ne, parseCacheControl(cc), h.Get("Age"), cc != "", now)
	ne.computeSize()
	return &ne
}

// newEntry builds the entry of an upstream answer read whole.
func (m *Mirror) newEntry(key, p string, resp *http.Response, body []byte, now time.Time) (*entry, error) {
	h := resp.Header
	e := &entry{
		key:          key,
		status:       resp.StatusCode,
		contentType:  h.Get("Content-Type"),
		disposition:  h.Get("Content-Disposition"),
		language:     h.Get("Content-Language"),
		etag:         h.Get("ETag"),
		lastModified: h.Get("Last-Modified"),
	}
	if e.status >= 300 && e.status < 400 {
		e.location, e.origin = h.Get("Location"), upstreamOrigin(resp)
	}
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc {
	case "", "identity":
		e.plain, e.hasPlain = body, true
		if e.status == http.StatusOK && len(body) >= 1024 && compressible(e.contentType) {
			if gz := gzipBytes(body); len(gz) < len(body)-len(body)/10 {
				e.gz = gz
			}
		}
	case "gzip", "x-gzip":
		e.gz, e.gzipped = body, true
		plain, err := gunzipLimit(body, m.cfg.MaxEntryBytes)
		if err != nil && !errors.Is(err, errTooBig) {
			return nil, fmt.Errorf("mirror: the upstream's gzip body is broken: %w", err)
		}
		if err == nil {
			e.plain, e.hasPlain = plain, true
		}
	default:
		e.plain, e.hasPlain, e.encoding = body, true, enc
	}
	e.ownETag = e.etag
	if e.ownETag == "" && e.status == http.StatusOK {
		sum := sha256.Sum256(e.upstreamBytes())
		e.ownETag = `W/"m` + hex.EncodeToString(sum[:12]) + `"`
	}
	e.immutable = e.status == http.StatusOK && m.cfg.Immutable(p)
	cc := h.Get("Cache-Control")
	m.setFreshness(e, parseCacheControl(cc), h.Get("Age"), true, now)
	e.computeSize()
	return e, nil
}

// setFreshness sets how long e is served without asking, and what the
// browser is told. haveCC false keeps e's earlier upstream lifetime.
func (m *Mirror) setFreshness(e *entry, cc cacheControl, age string, haveCC bool, now time.Time) {
	e.validated = now
	switch {
	case e.status == http.StatusNotFound || e.status == http.StatusGone:
		e.freshUntil = now.Add(m.cfg.NotFoundTTL)
		e.browserCC = ccRevalidate
		return
	case e.status != http.StatusOK:
		e.freshUntil = time.Time{}
		e.browserCC = ccNoStore
		return
	case e.immutable:
		e.browserCC = ccImmutable
		return
	}
	if haveCC {
		e.maxAge = 0
		if !alwaysRevalidate(e.contentType) {
			e.maxAge = int(cc.lifetime(age) / time.Second)
		}
	}
	e.freshUntil = time.Time{}
	e.browserCC = ccRevalidate
	if e.maxAge > 0 {
		e.freshUntil = now.Add(time.Duration(e.maxAge) * time.Second)
		e.browserCC = "public, max-age=" + strconv.Itoa(e.maxAge)
	}
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	zw.Reset(io.Discard)
	gzipWriters.Put(zw)
	return buf.Bytes()
}

var errTooBig = errors.New("mirror: body too big")

func gunzipLimit(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, errTooBig
	}
	return out, nil
}

// warn logs an upstream failure at Warn at most every 10 s, at Debug
// otherwise: while a GPU host is away every request would log it.
func (m *Mirror) warn(msg string, args ...any) {
	now := m.cfg.Now().Unix()
	last := m.lastWarn.Load()
	if now-last >= 10 && m.lastWarn.CompareAndSwap(last, now) {
		m.log.Warn("mirror: "+msg, args...)
		return
	}
	m.log.Debug("mirror: "+msg, args...)
}

// Get returns the identity body of path (which may carry a ?query) the way
// Serve would answer it: from the cache when fresh, revalidated, or stale
// while the upstream is away. header has Content-Type, ETag, Last-Modified
// and CacheHeader. Without upstream or cache it returns ErrUnavailable; for
// an answer other than 200, the body and a *StatusError. A body too big for
// the cache is read whole (and not kept).
func (m *Mirror) Get(ctx context.Context, path string) ([]byte, http.Header, error) {
	p, q, _ := strings.Cut(path, "?")
	if !validPath(p) {
		return nil, nil, ErrBadPath
	}
	r := m.resolve(ctx, cacheKey(p, q), p, q)
	if r.err != nil {
		return nil, nil, r.err
	}
	h := http.Header{}
	h.Set(CacheHeader, r.label)
	var body []byte
	var status int
	if r.stream != nil {
		defer r.stream.Close()
		resp := r.stream.resp
		status = resp.StatusCode
		for _, k := range []string{"Content-Type", "ETag", "Last-Modified"} {
			if v := resp.Header.Get(k); v != "" {
				h.Set(k, v)
			}
		}
		var rd io.Reader = r.stream
		if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
			zr, err := gzip.NewReader(r.stream)
			if err != nil {
				return nil, nil, err
			}
			rd = zr
			h.Set("ETag", weaken(h.Get("ETag")))
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return nil, nil, err
		}
		body = b
	} else {
		e := r.e
		status = e.status
		if e.contentType != "" {
			h.Set("Content-Type", e.contentType)
		}
		if etag := e.etagFor(false); etag != "" {
			h.Set("ETag", etag)
		}
		if e.lastModified != "" {
			h.Set("Last-Modified", e.lastModified)
		}
		if e.encoding != "" {
			return nil, h, fmt.Errorf("mirror: the upstream sent Content-Encoding %q", e.encoding)
		}
		b, err := e.body()
		if err != nil {
			return nil, h, err
		}
		body = b
	}
	if status != http.StatusOK {
		return body, h, &StatusError{Status: status, Body: body}
	}
	return body, h, nil
}

// Serve answers the request in c from the upstream's path (the part after
// the participant's prefix, escaped as received: "/", "/api/object_info",
// "/assets/index-DqS6dFzD.js") and c's query. Only GET and HEAD are
// forwarded (405 otherwise); a path with dot segments or escaped slashes
// gets 400, one that Config.Allow refuses 403. See the package documentation for the caching rules.
func (m *Mirror) Serve(c *fiber.Ctx, path string) error {
	method := c.Method()
	if method != fiber.MethodGet && method != fiber.MethodHead {
		c.Set(fiber.HeaderAllow, "GET, HEAD")
		return jsonError(c, fiber.StatusMethodNotAllowed, "invalid", "only GET and HEAD are served here")
	}
	if !validPath(path) {
		return jsonError(c, fiber.StatusBadRequest, "invalid", "bad path")
	}
	// Decided on the decoded path, as the upstream will route it.
	if m.cfg.Allow != nil && !m.cfg.Allow(decodedPath(path)) {
		return jsonError(c, fiber.StatusForbidden, "forbidden", "this route of the GPU host is not available in the workshop")
	}
	// Fiber's strings point into buffers it reuses; the key outlives them.
	p := strings.Clone(path)
	q := string(c.Request().URI().QueryString())
	key := cacheKey(p, q)

	var r result
	if rng := c.Get(fiber.HeaderRange); rng != "" && method == fiber.MethodGet && m.cache.get(key) == nil {
		r = m.bypass(key, p, q, rng)
	} else {
		r = m.resolve(c.Context(), key, p, q)
	}
	switch {
	case r.e != nil:
		return m.writeEntry(c, p, r.e, r.label)
	case r.stream != nil:
		return m.writeStream(c, p, r.stream, r.label)
	default:
		return m.writeUnavailable(c, p)
	}
}

// bypass forwards an uncached range request and streams the answer as is.
func (m *Mirror) bypass(key, p, q, rng string) result {
	uc := m.upstream()
	if uc == nil {
		return m.staleOr(key, ErrUnavailable)
	}
	fr, err := m.fetch(uc, p, q, nil, rng)
	if err != nil {
		m.warn("upstream request failed", "path", key, "err", err)
		return m.staleOr(key, ErrUnavailable)
	}
	m.stats.streamed.Add(1)
	return m.answer(result{stream: fr.stream, label: Bypass})
}

func jsonError(c *fiber.Ctx, status int, code, msg string) error {
	c.Set(fiber.HeaderCacheControl, ccNoStore)
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": msg}})
}

// writeEntry answers from a cached (or just read) entry: 304 when the
// browser's validators match, gzip when it accepts it.
func (m *Mirror) writeEntry(c *fiber.Ctx, p string, e *entry, label string) error {
	resp := c.Response()
	h := &resp.Header
	h.Set(CacheHeader, label)
	if e.contentType != "" {
		h.Set(fiber.HeaderContentType, e.contentType)
	}
	if e.disposition != "" {
		h.Set(fiber.HeaderContentDisposition, e.disposition)
	}
	if e.language != "" {
		h.Set(fiber.HeaderContentLanguage, e.language)
	}
	if e.lastModified != "" {
		h.Set(fiber.HeaderLastModified, e.lastModified)
	}
	if e.location != "" {
		h.Set(fiber.HeaderLocation, rewriteLocation(e.location, rawPath(c), p, e.origin))
	}
	h.Set(fiber.HeaderCacheControl, e.browserCC)
	if e.gz != nil && e.hasPlain {
		h.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
	}
	useGz := e.gz != nil && acceptsGzip(c.Get(fiber.HeaderAcceptEncoding))
	etag := e.etagFor(useGz)
	if etag != "" {
		h.Set(fiber.HeaderETag, etag)
	}
	if e.status == http.StatusOK && notModified(c, e, etag) {
		resp.SetStatusCode(http.StatusNotModified)
		return nil
	}
	resp.SetStatusCode(e.status)
	switch {
	case e.encoding != "":
		h.Set(fiber.HeaderContentEncoding, e.encoding)
		resp.SetBodyRaw(e.plain)
	case useGz:
		h.Set(fiber.HeaderContentEncoding, "gzip")
		resp.SetBodyRaw(e.gz)
	case e.hasPlain:
		resp.SetBodyRaw(e.plain)
	default:
		zr, err := gzip.NewReader(bytes.NewReader(e.gz))
		if err != nil {
			return err
		}
		resp.SetBodyStream(zr, -1)
	}
	return nil
}

func notModified(c *fiber.Ctx, e *entry, etag string) bool {
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" {
		return etagMatch(inm, etag)
	}
	ims := c.Get(fiber.HeaderIfModifiedSince)
	if ims == "" || e.lastModified == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(e.lastModified)
	return err == nil && !lm.After(t)
}

// writeStream streams an upstream answer that is not kept.
func (m *Mirror) writeStream(c *fiber.Ctx, p string, s *stream, label string) error {
	up := s.resp
	resp := c.Response()
	h := &resp.Header
	h.Set(CacheHeader, label)
	for _, k := range []string{
		fiber.HeaderContentType, fiber.HeaderContentDisposition, fiber.HeaderContentLanguage,
		fiber.HeaderLastModified, fiber.HeaderETag, fiber.HeaderAcceptRanges, fiber.HeaderContentRange,
	} {
		if v := up.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	status := up.StatusCode
	switch {
	case status == http.StatusOK && m.cfg.Immutable(p):
		h.Set(fiber.HeaderCacheControl, ccImmutable)
	case status == http.StatusOK || status == http.StatusPartialContent:
		cc := ccRevalidate
		if ct := up.Header.Get("Content-Type"); !alwaysRevalidate(ct) {
			if life := parseCacheControl(up.Header.Get("Cache-Control")).lifetime(up.Header.Get("Age")); life > 0 {
				cc = "public, max-age=" + strconv.Itoa(int(life/time.Second))
			}
		}
		h.Set(fiber.HeaderCacheControl, cc)
	default:
		h.Set(fiber.HeaderCacheControl, ccNoStore)
	}
	if loc := up.Header.Get("Location"); loc != "" && status >= 300 && status < 400 {
		h.Set(fiber.HeaderLocation, rewriteLocation(loc, rawPath(c), p, upstreamOrigin(up)))
	}
	resp.SetStatusCode(status)

	var body io.ReadCloser = s
	size := int(up.ContentLength)
	if up.ContentLength < 0 || int64(size) != up.ContentLength {
		size = -1
	}
	switch enc := strings.ToLower(strings.TrimSpace(up.Header.Get("Content-Encoding"))); {
	case enc == "" || enc == "identity":
	case (enc == "gzip" || enc == "x-gzip") && !acceptsGzip(c.Get(fiber.HeaderAcceptEncoding)):
		h.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
		zr, err := gzip.NewReader(s)
		if err != nil {
			_ = s.Close()
			return jsonError(c, fiber.StatusBadGateway, "unavailable", "the GPU host sent a broken body")
		}
		body = readCloser{zr, s}
		size = -1
		if etag := up.Header.Get("ETag"); etag != "" {
			h.Set(fiber.HeaderETag, weaken(etag))
		}
	default:
		h.Set(fiber.HeaderContentEncoding, enc)
		if enc == "gzip" || enc == "x-gzip" {
			h.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
		}
	}
	// fasthttp copies the stream to the client in small chunks and closes
	// it (and so the upstream response) when done or when the client goes.
	resp.SetBodyStream(body, size)
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// rewriteLocation keeps a redirect inside the participant's prefix: an
// absolute path, or a URL on the upstream's host, is put under the prefix
// the request came in with (the request path less the upstream path).
func rewriteLocation(loc, reqPath, upPath, upOrigin string) string {
	prefix := strings.TrimSuffix(reqPath, upPath)
	if upPath == "/" {
		prefix = strings.TrimSuffix(reqPath, "/")
	}
	if upOrigin != "" {
		if rest, ok := strings.CutPrefix(loc, upOrigin); ok && (rest == "" || rest[0] == '/') {
			loc = "/" + strings.TrimPrefix(rest, "/")
		}
	}
	if strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
		return prefix + loc
	}
	return loc
}

// rawPath is the request's path as sent (escaped), like the path given to
// Serve.
func rawPath(c *fiber.Ctx) string {
	p, _, _ := strings.Cut(c.OriginalURL(), "?")
	return p
}

// upstreamOrigin is scheme://host of the request that got resp.
func upstreamOrigin(resp *http.Response) string {
	if resp.Request == nil || resp.Request.URL == nil {
		return ""
	}
	return resp.Request.URL.Scheme + "://" + resp.Request.URL.Host
}
