package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc reaches an instance, usually through the tunnel.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// upClient is the HTTP client for one upstream base URL. Its transport
// keeps connections (tunnel streams) open between requests and dials with
// the dial function the Upstream gave most recently for that URL, so a
// reconnected agent's new session is used at once.
type upClient struct {
	base string // scheme://host[/path], no trailing slash
	hc   *http.Client
	tr   *http.Transport
	dial atomic.Pointer[DialFunc]
	used atomic.Int64 // unix seconds of the last use
}

var defaultDialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// clients hands out one upClient per base URL.
type clients struct {
	mu      sync.Mutex
	m       map[string]*upClient
	timeout time.Duration
}

// maxClients bounds the transports kept; beyond it the least recently used
// ones are closed (instances come and go with the agents).
const maxClients = 64

func (cs *clients) get(baseURL string, dial DialFunc, now time.Time) (*upClient, error) {
	cs.mu.Lock()
	uc := cs.m[baseURL]
	if uc == nil {
		u, err := url.Parse(baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			cs.mu.Unlock()
			return nil, fmt.Errorf("mirror: bad upstream base URL %q", baseURL)
		}
		uc = &upClient{base: u.Scheme + "://" + u.Host + strings.TrimSuffix(u.EscapedPath(), "/")}
		uc.tr = &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if d := uc.dial.Load(); d != nil && *d != nil {
					return (*d)(ctx, network, addr)
				}
				return defaultDialer.DialContext(ctx, network, addr)
			},
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cs.timeout,
			TLSHandshakeTimeout:   10 * time.Second,
			DisableCompression:    true, // the mirror asks for gzip itself and keeps it
		}
		uc.hc = &http.Client{
			Transport: uc.tr,
			// Redirects go back to the browser, whose base differs.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		if len(cs.m) >= maxClients {
			cs.dropOldestLocked()
		}
		cs.m[baseURL] = uc
	}
	cs.mu.Unlock()
	uc.dial.Store(&dial)
	uc.used.Store(now.Unix())
	return uc, nil
}

func (cs *clients) dropOldestLocked() {
	var oldKey string
	var oldest *upClient
	for k, uc := range cs.m {
		if oldest == nil || uc.used.Load() < oldest.used.Load() {
			oldKey, oldest = k, uc
		}
	}
	if oldest != nil {
		delete(cs.m, oldKey)
		oldest.tr.CloseIdleConnections()
	}
}

func (cs *clients) closeIdle() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, uc := range cs.m {
		uc.tr.CloseIdleConnections()
	}
}

// fetched is one upstream answer: a 304 to a conditional request, a body
// read whole (at most MaxEntryBytes), or a response left open to stream.
type fetched struct {
	resp        *http.Response
	body        []byte
	notModified bool
	stream      *stream
}

// stream is an upstream response whose body is too big to keep: prefix
// (already read) then the rest of body.
type stream struct {
	resp   *http.Response
	prefix net.Buffers
	body   io.ReadCloser
}

func (s *stream) Read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n, _ := s.prefix.Read(p) // its io.EOF is not the body's
		return n, nil
	}
	return s.body.Read(p)
}

func (s *stream) Close() error { return s.body.Close() }

// errStatus is an upstream answer that counts as the upstream failing
// (5xx, 429) when a cached copy can be served instead.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("mirror: upstream answered %d", int(e)) }

// fetch asks the upstream for p?q. cond, when a 200 with validators, makes
// the request conditional. rangeHdr, when set, is forwarded and the body is
// always streamed. The timeout bounds the dial and the response headers,
// and then every read of the body (so a big body may take as long as it
// takes, but a stalled one fails).
func (m *Mirror) fetch(uc *upClient, p, q string, cond *entry, rangeHdr string) (fetched, error) {
	target := uc.base + p
	if q != "" {
		target += "?" + q
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		cancel()
		return fetched{}, err
	}
	// Only what the mirror chooses goes upstream: never the participant's
	// cookies, credentials or addresses.
	req.Header = http.Header{
		"Accept-Encoding": {"gzip"},
		"User-Agent":      {"comfyui-workshop-mirror"},
	}
	conditional := false
	if cond != nil && cond.status == http.StatusOK {
		if cond.etag != "" {
			req.Header.Set("If-None-Match", cond.etag)
			conditional = true
		}
		if cond.lastModified != "" {
			req.Header.Set("If-Modified-Since", cond.lastModified)
			conditional = true
		}
	}
	if rangeHdr != "" {
		req.Header.Set("Range", rangeHdr)
	}
	m.stats.upstream.Add(1)
	timer := time.AfterFunc(m.cfg.Timeout, cancel)
	resp, err := uc.hc.Do(req)
	if err != nil {
		timer.Stop()
		cancel()
		m.stats.upstreamErrors.Add(1)
		return fetched{}, err
	}
	body := &idleBody{rc: resp.Body, timer: timer, d: m.cfg.Timeout, cancel: cancel}
	body.timer.Reset(body.d)

	if resp.StatusCode == http.StatusNotModified && conditional {
		_ = body.Close()
		return fetched{resp: resp, notModified: true}, nil
	}
	limit := m.cfg.MaxEntryBytes
	if rangeHdr != "" || resp.ContentLength > limit {
		return fetched{resp: resp, stream: &stream{resp: resp, body: body}}, nil
	}
	var b []byte
	if resp.ContentLength >= 0 {
		b = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(body, b)
	} else {
		var prefix net.Buffers
		b, prefix, err = readUpTo(body, limit)
		if prefix != nil {
			return fetched{resp: resp, stream: &stream{resp: resp, prefix: prefix, body: body}}, nil
		}
	}
	_ = body.Close()
	if err != nil {
		m.stats.upstreamErrors.Add(1)
		return fetched{}, fmt.Errorf("mirror: reading the upstream body: %w", err)
	}
	return fetched{resp: resp, body: b}, nil
}

// idleBody fails the upstream request when a read waits longer than d.
type idleBody struct {
	rc     io.ReadCloser
	timer  *time.Timer
	d      time.Duration
	cancel context.CancelFunc
	closed atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	if errors.Is(err, context.Canceled) {
		err = fmt.Errorf("mirror: upstream body stalled for %s: %w", b.d, err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// readUpTo reads a body of unknown length: whole when it has at most limit
// bytes, else the first limit+1 bytes as prefix (in chunks, so that no
// buffer grows past what was read).
func readUpTo(r io.Reader, limit int64) (body []byte, prefix net.Buffers, err error) {
	var chunks net.Buffers
	var total int64
	size := int64(4 << 10)
	for {
		n := min(size, limit+1-total)
		buf := make([]byte, n)
		got, err := io.ReadFull(r, buf)
		total += int64(got)
		if got > 0 {
			chunks = append(chunks, buf[:got])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if total > limit {
			return nil, chunks, nil
		}
		size = min(size*2, 1<<20)
	}
	if len(chunks) == 1 && int64(cap(chunks[0])) <= 2*total {
		return chunks[0], nil, nil
	}
	body = make([]byte, 0, total)
	for _, c := range chunks {
		body = append(body, c...)
	}
	return body, nil, nil
}
