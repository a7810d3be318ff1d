package telemetry_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/telemetry"
)

const token = "test-admin-token-0123456789"

// Answers are counted by the status sent: a 404 or 401 is a 4xx, also
// when the API's error handler writes it, and a 401 in the /api group's
// middleware is counted under that group.
func TestHTTPStatusClasses(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(t.TempDir(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sched.Open(db, sched.Config{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	prom := telemetry.New(q, nil)
	srv := api.New(api.Config{
		Queue: q, DB: db, AdminTokenHash: auth.HashToken(token), Log: quiet,
		Mount:   []func(*fiber.App){func(app *fiber.App) { app.Use(prom.Middleware) }},
		Metrics: prom.Handler(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown(5 * time.Second)
		db.Close()
	})
	base := "http://" + ln.Addr().String()
	call := func(method, path, tok, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path, tok, body string
		want                    int
	}{
		{"GET", "/api/jobs/nope", token, "", 404},
		{"GET", "/api/jobs", "", "", 401},
		{"POST", "/admin/login", "", `{"secret":"wrong"}`, 401},
		{"GET", "/no/such/page", "", "", 404},
		{"GET", "/health", "", "", 200},
	} {
		if st, body := call(c.method, c.path, c.tok, c.body); st != c.want {
			t.Errorf("%s %s: %d, want %d (%s)", c.method, c.path, st, c.want, body)
		}
	}
	_, metrics := call("GET", "/metrics", token, "")
	for _, want := range []string{
		`workshop_http_request_duration_seconds_count{code="4xx",method="GET",route="/api/jobs/:id"} 1`,
		`workshop_http_request_duration_seconds_count{code="4xx",method="GET",route="/api/*"} 1`,
		`workshop_http_request_duration_seconds_count{code="4xx",method="POST",route="/admin/login"} 1`,
		`workshop_http_request_duration_seconds_count{code="4xx",method="GET",route="unmatched"} 1`,
		`workshop_http_request_duration_seconds_count{code="2xx",method="GET",route="/health"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, `code="5xx"`) {
		t.Errorf("a 5xx was counted:\n%s", grep(metrics, "5xx"))
	}
}

func grep(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
