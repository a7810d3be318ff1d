package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/telemetry"
)

// /metrics counts answers by the status sent: a 404 or 401 is a 4xx, also
// when the API's error handler writes it, and a 401 in the /api group's
// middleware is counted under that group.
func TestMetricsCountStatusClasses(t *testing.T) {
	e := startWith(t, sched.Config{}, func(c *api.Config, _ *store.DB, _ string) {
		prom := telemetry.New(c.Queue, nil)
		c.Mount = []func(*fiber.App){func(app *fiber.App) { app.Use(prom.Middleware) }}
		c.Metrics = prom.Handler()
	})
	e.expectError("GET", "/api/jobs/nope", "", 404)
	e.expectError("GET", "/api/jobs", "", 401, "-")
	e.expectError("POST", "/admin/login", `{"secret":"wrong"}`, 401, "-")
	e.expectError("GET", "/no/such/page", "", 404, "-")
	if st := e.call("GET", "/health", "", nil, "-"); st != 200 {
		t.Errorf("health: %d", st)
	}
	resp, err := http.DefaultClient.Do(e.authed("GET", "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(raw)
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
	for _, l := range strings.Split(metrics, "\n") {
		if strings.Contains(l, `code="5xx"`) {
			t.Errorf("a 5xx was counted: %s", l)
		}
	}
}
