package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/proxy"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// hostFiles stands in for the GPU host's ComfyUI behind the mirror.
type hostFiles map[string]string

func (h hostFiles) Get(_ context.Context, path string) ([]byte, error) {
	if b, ok := h[path]; ok {
		return []byte(b), nil
	}
	return nil, errors.New("404")
}

func (h hostFiles) Serve(c *fiber.Ctx, path string) error {
	if b, ok := h[path]; ok {
		return c.SendString(b)
	}
	return c.Status(404).SendString("404: Not Found (host)")
}

// workshopDir is a workshop folder on disk.
type workshopDir string

func (d workshopDir) WorkshopWorkflows() []string {
	es, _ := os.ReadDir(string(d))
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func (d workshopDir) HasWorkshopWorkflow(name string) bool {
	_, err := os.Stat(filepath.Join(string(d), name))
	return err == nil
}

func (d workshopDir) OpenWorkshopFile(name string) (*os.File, error) {
	return os.Open(filepath.Join(string(d), name))
}

const testToken = "proxy-test-admin-token-0123456789"

// templatesApp is seat 1's surface over host and the workshop workflows
// named (none: an empty folder).
func templatesApp(t *testing.T, host hostFiles, workflows ...string) func(path string) (int, string) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(t.TempDir(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sv := seats.New(db)
	if err := sv.Ensure(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, w := range workflows {
		os.WriteFile(filepath.Join(dir, w), []byte(`{"nodes": []}`), 0o644)
	}
	app := fiber.New()
	proxy.New(proxy.Config{Seats: sv, DB: db, Mirror: host, Workflows: workshopDir(dir), AdminTokenHash: auth.HashToken(testToken), Log: quiet}).Register(app)
	return func(path string) (int, string) {
		req := httptest.NewRequest("GET", "/user/1"+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// category is what the test reads of a core template category.
type category struct {
	ModuleName  string `json:"moduleName"`
	Title       string `json:"title"`
	Category    string `json:"category"`
	IsEssential bool   `json:"isEssential"`
	Templates   []struct {
		Name         string `json:"name"`
		MediaSubtype string `json:"mediaSubtype"`
	} `json:"templates"`
}

// The frontend's core template index gets the workshop's "Getting
// Started" category in front (the one v1.44 opens on for a new user), of
// the Workshop pack, and keeps the host's own: its essential "Getting
// Started" becomes an ordinary category of its group, so the dialog has
// one; any other category is passed on byte for byte. The pack is not
// listed again among the host's packs, where the frontend would list it a
// second time.
func TestCoreTemplateIndex(t *testing.T) {
	const other = `{"moduleName":"default","title":"Video","type":"video","category":"GENERATION TYPE","templates":[{"name":"ltx","mediaSubtype":"webp"}]}`
	host := hostFiles{
		"/templates/index.json":      `[{"moduleName":"default","title":"Getting Started","type":"image","isEssential":true,"templates":[{"name":"basic","mediaSubtype":"webp"}]},` + other + `]`,
		"/templates/index_logo.json": `{"BFL":"logo/bfl.png"}`,
		"/api/workflow_templates":    `{"comfyui-kjnodes":["a","b"],"Workshop":["clash"],"comfyui-impact":["c"]}`,
	}
	get := templatesApp(t, host, "day-image.json", "day-video.json")
	st, body := get("/templates/index.json")
	var index []category
	if err := json.Unmarshal([]byte(body), &index); st != 200 || err != nil || len(index) != 3 {
		t.Fatalf("index: %d %v %s", st, err, body)
	}
	mine := index[0]
	if mine.ModuleName != proxy.TemplatePack || mine.Title != "Getting Started" || !mine.IsEssential || len(mine.Templates) != 2 ||
		mine.Templates[0].Name != "day-image" || mine.Templates[1].Name != "day-video" || mine.Templates[0].MediaSubtype != "jpg" {
		t.Errorf("the workshop's category: %+v", mine)
	}
	if h := index[1]; h.Title != "Getting Started" || h.IsEssential || h.Category != "ComfyUI" || len(h.Templates) != 1 || h.Templates[0].Name != "basic" {
		t.Errorf("the host's Getting Started: %+v", h)
	}
	if !strings.HasSuffix(body, ","+other+"]") {
		t.Errorf("the host's other category changed: %s", body)
	}
	// A translation the host lacks: its English index, as the frontend
	// would fall back to.
	if _, fr := get("/templates/index.fr.json"); fr != body {
		t.Errorf("index.fr.json: %s", fr)
	}
	// The host's other files of /templates pass through.
	if st, b := get("/templates/index_logo.json"); st != 200 || b != host["/templates/index_logo.json"] {
		t.Errorf("index_logo.json: %d %s", st, b)
	}
	st, body = get("/api/workflow_templates")
	if st != 200 || body != `{"comfyui-kjnodes":["a","b"],"comfyui-impact":["c"]}` {
		t.Errorf("the host's packs: %d %s", st, body)
	}

	// A host without core templates: the workshop's alone.
	get = templatesApp(t, hostFiles{}, "day-image.json")
	st, body = get("/templates/index.json")
	if err := json.Unmarshal([]byte(body), &index); st != 200 || err != nil || len(index) != 1 || index[0].Templates[0].Name != "day-image" {
		t.Errorf("index without the host's: %d %v %s", st, err, body)
	}
	// No workshop workflows: the host's answer as it is.
	get = templatesApp(t, hostFiles{})
	if st, body := get("/templates/index.json"); st != 404 || !strings.Contains(body, "(host)") {
		t.Errorf("index without workshop workflows: %d %s", st, body)
	}
	if st, body := get("/api/workflow_templates"); st != 200 || body != "{}" {
		t.Errorf("packs of nobody: %d %s", st, body)
	}
}
