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

	"github.com/comfy-workshop/workshop/store"
)

// The workshop workflows are offered as a template pack in the frontend's
// Templates dialog, the way ComfyUI offers custom nodes' example
// workflows: GET /workflow_templates lists {pack: [name...]} and
// /workflow_templates/{pack}/{name}.json serves one, with a thumbnail at
// {name}.jpg. So a participant's first-run dialog shows the day's
// workflows.

// TemplatePack is the pack name the workshop workflows appear under.
const TemplatePack = "Workshop"

// WorkshopFiles reads the workshop workflows (package userfiles).
type WorkshopFiles interface {
	// WorkshopWorkflows lists the workflows' file names ("a.json").
	WorkshopWorkflows() []string
	// OpenWorkshopFile opens a workflow or a file beside it by name.
	OpenWorkshopFile(name string) (*os.File, error)
}

// templates is GET /workflow_templates: the workshop's pack first, then
// the GPU host's custom-node packs.
func (p *Proxy) templates(c *fiber.Ctx) error {
	var b bytes.Buffer
	b.WriteByte('{')
	if p.cfg.Workflows != nil {
		names := []string{}
		for _, n := range p.cfg.Workflows.WorkshopWorkflows() {
			names = append(names, strings.TrimSuffix(n, path.Ext(n)))
		}
		if len(names) > 0 {
			k, _ := json.Marshal(TemplatePack)
			v, _ := json.Marshal(names)
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
		}
	}
	if p.cfg.Mirror != nil {
		if raw, err := p.cfg.Mirror.Get(c.UserContext(), "/api/workflow_templates"); err == nil {
			// Splice the host's object in as it is (its key order kept).
			if inner := bytes.TrimSpace(raw); len(inner) > 2 && inner[0] == '{' && json.Valid(inner) {
				var packs map[string]json.RawMessage
				if json.Unmarshal(inner, &packs) == nil && len(packs) > 0 && packs[TemplatePack] == nil {
					if b.Len() > 1 {
						b.WriteByte(',')
					}
					b.Write(bytes.TrimSpace(inner[1 : len(inner)-1]))
				}
			}
		}
	}
	b.WriteByte('}')
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Type("json").Send(b.Bytes())
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
