package mirror_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/mirror"
)

// file is one thing the fake ComfyUI serves.
type file struct {
	body         []byte
	contentType  string
	etag         string
	lastModified time.Time
	cacheControl string
	status       int  // 0: 200
	gzipped      bool // body is gzip, sent with Content-Encoding: gzip
	hang         bool // never answer (until the client goes)
	gate         chan struct{}
}

// fakeComfy stands in for a ComfyUI instance, counting what it is asked.
type fakeComfy struct {
	srv *httptest.Server

	mu          sync.Mutex
	files       map[string]*file
	requests    map[string]int // by request URI
	notModified map[string]int
	headers     []http.Header
	aborted     atomic.Int64 // streams the client walked away from
}

// bigSize is the size of /big and /big-chunked; bigBlock repeats to fill it.
const bigSize = 64 << 20

var bigBlock = func() []byte {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewChaCha8([32]byte{7}))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

var bigSum = func() [32]byte {
	h := sha256.New()
	for i := 0; i < bigSize/len(bigBlock); i++ {
		h.Write(bigBlock)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}()

func newFakeComfy(t testing.TB) *fakeComfy {
	u := &fakeComfy{
		files:       map[string]*file{},
		requests:    map[string]int{},
		notModified: map[string]int{},
	}
	u.srv = httptest.NewServer(u)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeComfy) set(path string, f *file) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files[path] = f
}

func (u *fakeComfy) update(path string, fn func(f *file)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn(u.files[path])
}

func (u *fakeComfy) count(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests[uri]
}

func (u *fakeComfy) count304(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.notModified[uri]
}

func (u *fakeComfy) allHeaders() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

func (u *fakeComfy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	uri := r.URL.RequestURI()
	u.mu.Lock()
	u.requests[uri]++
	u.headers = append(u.headers, r.Header.Clone())
	f := u.files[r.URL.Path]
	var cp file
	if f != nil {
		cp = *f
	}
	u.mu.Unlock()

	switch r.URL.Path {
	case "/big", "/big-chunked":
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		}
		for i := 0; i < bigSize/len(bigBlock); i++ {
			if _, err := w.Write(bigBlock); err != nil {
				u.aborted.Add(1)
				return
			}
		}
		return
	case "/redirect":
		http.Redirect(w, r, "/assets/moved-Ab12Cd34.js", http.StatusFound)
		return
	}
	if f == nil {
		http.Error(w, "404: Not Found", http.StatusNotFound)
		return
	}
	if cp.gate != nil {
		select {
		case <-cp.gate:
		case <-r.Context().Done():
			return
		}
	}
	if cp.hang {
		<-r.Context().Done()
		return
	}
	h := w.Header()
	if cp.contentType != "" {
		h.Set("Content-Type", cp.contentType)
	}
	if cp.cacheControl != "" {
		h.Set("Cache-Control", cp.cacheControl)
	}
	if cp.status != 0 && cp.status != 200 {
		w.WriteHeader(cp.status)
		_, _ = w.Write(cp.body)
		return
	}
	if cp.gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	if cp.etag != "" {
		h.Set("ETag", cp.etag)
	}
	rec := &statusRecorder{ResponseWriter: w}
	http.ServeContent(rec, r, "", cp.lastModified, bytes.NewReader(cp.body))
	if rec.status == http.StatusNotModified {
		u.mu.Lock()
		u.notModified[uri]++
		u.mu.Unlock()
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Fiber app on 127.0.0.1:0 that serves /user/1/* through a Mirror
// whose upstream is a fake ComfyUI, dialed directly.
type env struct {
	t         testing.TB
	up        *fakeComfy
	m         *mirror.Mirror
	base      string // http://127.0.0.1:port/user/1
	client    *http.Client
	clock     *clock
	connected atomic.Bool
	dials     atomic.Int64
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t testing.TB, cfg mirror.Config) *env {
	return newEnvWith(t, newFakeComfy(t), cfg)
}

func newEnvWith(t testing.TB, up *fakeComfy, cfg mirror.Config) *env {
	addr := ""
	if up != nil {
		addr = up.srv.Listener.Addr().String()
	}
	e := newEnvAddr(t, addr, cfg)
	e.up = up
	return e
}

// newEnvAddr is an env whose upstream listens on addr ("": none).
func newEnvAddr(t testing.TB, addr string, cfg mirror.Config) *env {
	e := &env{t: t, clock: &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}}
	e.connected.Store(true)
	if addr != "" {
		dialer := &net.Dialer{Timeout: 2 * time.Second}
		cfg.Upstream = func() (string, func(context.Context, string, string) (net.Conn, error), bool) {
			if !e.connected.Load() {
				return "", nil, false
			}
			// The base URL's host is a name only the tunnel knows; the
			// dial function reaches the instance whatever the address.
			return "http://gpu-1.comfy/", func(ctx context.Context, network, _ string) (net.Conn, error) {
				e.dials.Add(1)
				return dialer.DialContext(ctx, network, addr)
			}, true
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	e.m = mirror.New(cfg)
	t.Cleanup(func() { _ = e.m.Close() })

	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.All("/user/:n/*", func(c *fiber.Ctx) error {
		return e.m.Serve(c, "/"+c.Params("*"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	e.base = "http://" + ln.Addr().String() + "/user/1"
	e.client = &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 60 * time.Second,
	}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// do sends method to the mirror's path with headers given as "Key: value".
func (e *env) do(method, path string, headers ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, body
}

func (e *env) get(path string, headers ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodGet, path, headers...)
}

// expect checks status and X-Workshop-Cache.
func expect(t testing.TB, resp *http.Response, status int, label string) {
	t.Helper()
	if resp.StatusCode != status || resp.Header.Get(mirror.CacheHeader) != label {
		t.Fatalf("%s %s: got %d %s=%q, want %d %q", resp.Request.Method, resp.Request.URL.Path,
			resp.StatusCode, mirror.CacheHeader, resp.Header.Get(mirror.CacheHeader), status, label)
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{seed}))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// jsonDoc is a compressible JSON body of about n bytes.
func jsonDoc(n int, tag string) []byte {
	var b strings.Builder
	b.WriteString(`{"tag":"` + tag + `","nodes":{`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"Node` + strconv.Itoa(i) + `":{"input":{"required":{"seed":["INT",{"default":0,"min":0}]}},"output":["IMAGE"],"category":"test"}`)
	}
	b.WriteString("}}")
	return []byte(b.String())
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
