package userfiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// env is a real Fiber server on 127.0.0.1 with the routes mounted as the
// lead mounts them: at /user/:seat and /user/:seat/api, seat n being
// participant "user00n".
type env struct {
	t      *testing.T
	dir    string // Config.Dir
	ws     string // the first workshop folder
	addr   string
	store  *Store
	client *http.Client
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	top := t.TempDir()
	e := &env{t: t, dir: filepath.Join(top, "userdata"), ws: filepath.Join(top, "workshop")}
	if err := os.Mkdir(e.ws, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Dir:          e.dir,
		WorkflowDirs: []string{e.ws},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.store = s
	app := fiber.New(fiber.Config{DisableStartupMessage: true, UnescapePath: false, BodyLimit: 64 << 20})
	userOf := func(c *fiber.Ctx) string {
		n, err := strconv.Atoi(c.Params("seat"))
		if err != nil || n < 1 {
			return ""
		}
		return fmt.Sprintf("user%03d", n)
	}
	s.Register(app.Group("/user/:seat"), userOf)
	s.Register(app.Group("/user/:seat/api"), userOf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	go func() { _ = app.Listener(ln) }()
	e.client = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(func() {
		_ = app.ShutdownWithTimeout(2 * time.Second)
		_ = s.Close()
	})
	return e
}

type answer struct {
	status int
	reason string
	body   []byte
	header http.Header
}

func (a answer) String() string { return fmt.Sprintf("%d %q %s", a.status, a.reason, a.body) }

// json decodes the body into v.
func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("body %s: %v", a.body, err)
	}
}

// do sends method to rawURL exactly as written (path still escaped,
// query after "?"), e.g. "/user/1/api/userdata/workflows%2Fa.json?x=1".
func (e *env) do(method, rawURL string, body []byte, headers ...string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.addr+"/", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	p, q, _ := strings.Cut(rawURL, "?")
	req.URL.Opaque = p
	req.URL.RawQuery = q
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{
		status: resp.StatusCode,
		reason: strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)+" "),
		body:   b,
		header: resp.Header,
	}
}

func (e *env) get(u string) answer { e.t.Helper(); return e.do("GET", u, nil) }
func (e *env) post(u string, body []byte) answer {
	e.t.Helper()
	return e.do("POST", u, body)
}
func (e *env) del(u string) answer { e.t.Helper(); return e.do("DELETE", u, nil) }

// want fails unless a has the status (and, if body is not nil, exactly
// that body).
func want(t *testing.T, what string, a answer, status int, body ...string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: got %v, want status %d", what, a, status)
	}
	if len(body) > 0 && string(a.body) != body[0] {
		t.Fatalf("%s: body %q, want %q", what, a.body, body[0])
	}
}

// userPath is a path in participant n's folder on disk.
func (e *env) userPath(n int, rel string) string {
	return filepath.Join(e.dir, fmt.Sprintf("user%03d", n), filepath.FromSlash(rel))
}

// put writes a file into participant n's folder directly on disk.
func (e *env) put(n int, rel, content string) {
	e.t.Helper()
	p := e.userPath(n, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) read(n int, rel string) (string, bool) {
	b, err := os.ReadFile(e.userPath(n, rel))
	return string(b), err == nil
}

// jsonErr is the project's error shape used for workshop-only refusals.
type jsonErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}
