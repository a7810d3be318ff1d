package proxy

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"image"
	"image/color"
	"image/jpeg"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/store"
)

// The workshop workflows are offered in the frontend's Templates dialog
// as the first of its core categories: /templates/index.json (the
// comfyui-workflow-templates package's index, which the frontend reads
// beside /workflow_templates) gets a "Getting Started" category of the
// workshop's, the one the dialog opens on for a new user in v1.44 (newer
// frontends open on every template). Its module is the Workshop pack, so
// the frontend loads each from /workflow_templates/Workshop/{name}.json,
// with a thumbnail at {name}.jpg. The pack is not listed again in
// /workflow_templates, which the frontend merges with the index: each
// workflow would show twice.

// TemplatePack is the pack name the workshop workflows appear under.
const TemplatePack = "Workshop"

// WorkshopFiles reads the workshop workflows (package userfiles).
type WorkshopFiles interface {
	// WorkshopWorkflows lists the workflows' file names ("a.json").
	WorkshopWorkflows() []string
	// HasWorkshopWorkflow reports whether one of them is name.
	HasWorkshopWorkflow(name string) bool
	// OpenWorkshopFile opens a workflow or a file beside it by name.
	OpenWorkshopFile(name string) (*os.File, error)
}

// templates is GET /workflow_templates: the GPU host's custom-node packs,
// without one named as the workshop's (the workshop's pack is in the core
// index, coreIndex).
func (p *Proxy) templates(c *fiber.Ctx) error {
	body := []byte("{}")
	if p.cfg.Mirror != nil {
		if raw, err := p.cfg.Mirror.Get(c.UserContext(), "/api/workflow_templates"); err == nil {
			if packs, err := jsonobj.Parse(raw); err == nil {
				packs.Delete(TemplatePack)
				body, _ = packs.MarshalJSON()
			}
		}
	}
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Type("json").Send(body)
}

// coreIndex is GET /templates/index.json (and index.{locale}.json): the
// GPU host's index of core templates, if it has one, with the workshop's
// category in front. Any other file of /templates is the host's.
func (p *Proxy) coreIndex(c *fiber.Ctx) error {
	file := c.Params("file")
	if !strings.HasPrefix(file, "index.") || !strings.HasSuffix(file, ".json") {
		return p.forward(c)
	}
	mine := p.workshopCategory()
	if mine == nil {
		return p.forward(c)
	}
	index := []json.RawMessage{mine}
	if p.cfg.Mirror != nil {
		raw, err := p.cfg.Mirror.Get(c.UserContext(), "/templates/"+file)
		if err != nil && file != "index.json" {
			// No translation on the host: its English index, as the
			// frontend falls back to when the host answers 404.
			raw, err = p.cfg.Mirror.Get(c.UserContext(), "/templates/index.json")
		}
		var host []json.RawMessage
		if err == nil && json.Unmarshal(raw, &host) == nil { // not a list: none
			for _, cat := range host {
				index = append(index, yieldStart(cat))
			}
		}
	}
	body, err := json.Marshal(index)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Type("json").Send(body)
}

// startCategory is the title of the core category a new user's dialog
// opens on (v1.44: "basics-getting-started", from an essential category's
// title).
const startCategory = "Getting Started"

// workshopCategory is the workshop workflows as a core template category
// of the Workshop pack; nil when there are none.
func (p *Proxy) workshopCategory() json.RawMessage {
	if p.cfg.Workflows == nil {
		return nil
	}
	type template struct {
		Name         string `json:"name"`
		Title        string `json:"title"`
		Description  string `json:"description"`
		MediaType    string `json:"mediaType"`
		MediaSubtype string `json:"mediaSubtype"`
	}
	var list []template
	for _, n := range p.cfg.Workflows.WorkshopWorkflows() {
		name := strings.TrimSuffix(n, path.Ext(n))
		list = append(list, template{Name: name, Title: name, Description: "Today's workshop workflow", MediaType: "image", MediaSubtype: "jpg"})
	}
	if len(list) == 0 {
		return nil
	}
	b, _ := json.Marshal(struct {
		ModuleName  string     `json:"moduleName"`
		Title       string     `json:"title"`
		Type        string     `json:"type"`
		Icon        string     `json:"icon"`
		IsEssential bool       `json:"isEssential"`
		Templates   []template `json:"templates"`
	}{TemplatePack, startCategory, "image", "icon-[lucide--graduation-cap]", true, list})
	return b
}

// yieldStart makes a host's essential category of the start title an
// ordinary one of its group, so the dialog has one "Getting Started" (the
// workshop's) and still lists the host's templates; any other category is
// left byte for byte.
func yieldStart(cat json.RawMessage) json.RawMessage {
	o, err := jsonobj.Parse(cat)
	if err != nil {
		return cat
	}
	var head struct {
		Title       string `json:"title"`
		IsEssential bool   `json:"isEssential"`
		Category    string `json:"category"`
	}
	if json.Unmarshal(cat, &head) != nil || !head.IsEssential || !strings.EqualFold(head.Title, startCategory) {
		return cat
	}
	o.Set("isEssential", json.RawMessage("false"))
	if head.Category == "" {
		o.Set("category", jsonobj.Raw("ComfyUI"))
	}
	b, err := o.MarshalJSON()
	if err != nil {
		return cat
	}
	return b
}

// templateFile is GET /workflow_templates/{pack}/{file}: a workshop
// workflow or its thumbnail, or the GPU host's file of another pack.
func (p *Proxy) templateFile(c *fiber.Ctx) error {
	if c.Params("pack") != TemplatePack || p.cfg.Workflows == nil {
		return p.forward(c)
	}
	name, err := url.PathUnescape(c.Params("*"))
	if err != nil || strings.Contains(name, "/") || !store.SafeName(name) {
		return c.Status(fiber.StatusNotFound).SendString("404: Not Found")
	}
	ext := strings.ToLower(path.Ext(name))
	f, err := p.cfg.Workflows.OpenWorkshopFile(name)
	if err == nil {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		if ext == ".json" {
			c.Set(fiber.HeaderContentType, "application/json")
		} else {
			c.Set(fiber.HeaderContentType, store.ContentType(name))
		}
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.SendStream(f, int(fi.Size())) // closes f when sent
	}
	// No picture of its own beside a workflow that exists: a placeholder,
	// so the dialog shows a tile rather than a broken image.
	if ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".webp" {
		if wf, err := p.cfg.Workflows.OpenWorkshopFile(strings.TrimSuffix(name, path.Ext(name)) + ".json"); err == nil {
			wf.Close()
			c.Set(fiber.HeaderContentType, "image/jpeg")
			c.Set(fiber.HeaderCacheControl, "no-cache")
			return c.Send(placeholder(name))
		}
	}
	return c.Status(fiber.StatusNotFound).SendString("404: Not Found")
}

// placeholder is a small JPEG in a colour of its own for each name: a
// dark gradient, so tiles are told apart without any text.
func placeholder(name string) []byte {
	h := fnv.New32a()
	h.Write([]byte(name))
	sum := h.Sum32()
	base := color.RGBA{uint8(40 + sum%80), uint8(40 + (sum>>8)%80), uint8(60 + (sum>>16)%100), 255}
	const w, ht = 256, 256
	img := image.NewRGBA(image.Rect(0, 0, w, ht))
	for y := 0; y < ht; y++ {
		for x := 0; x < w; x++ {
			k := float64(x+y) / float64(w+ht)
			img.Set(x, y, color.RGBA{uint8(float64(base.R) * (1.4 - k)), uint8(float64(base.G) * (1.4 - k)), uint8(float64(base.B) * (1.4 - k)), 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 80})
	return b.Bytes()
}
