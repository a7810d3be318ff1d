package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// view is GET /view: the participant's outputs (subfolder = job id, as
// history and the relayed events name them) and their own uploads.
func (p *Proxy) view(c *fiber.Ctx) error {
	user := userOf(c)
	name := c.Query("filename")
	typ := c.Query("type", "output")
	sub := c.Query("subfolder")
	// "name [output]" names its type, as in ComfyUI.
	for _, t := range []string{"output", "input", "temp"} {
		if strings.HasSuffix(name, " ["+t+"]") {
			name, typ = strings.TrimSuffix(name, " ["+t+"]"), t
		}
	}
	if name == "" {
		return c.Status(400).SendString("filename is required")
	}
	if !store.SafeName(name) || strings.Contains(sub, "..") || strings.HasPrefix(sub, "/") || strings.Contains(sub, "\\") {
		return c.Status(403).SendString("invalid filename")
	}
	switch typ {
	case "input":
		group := store.InputRoot
		if sub != "" {
			if !store.SafeName(sub) {
				return c.Status(403).SendString("invalid subfolder")
			}
			group = sub
		}
		return p.sendFile(c, store.Inputs, user, group, name)
	case "output", "temp":
		job, err := p.cfg.Queue.Get(sub)
		if err != nil || job.UserID != user {
			return c.Status(404).SendString("not found")
		}
		if job.Status == workshop.StatusRunning {
			// The UI asks for an image as soon as the node reports it, a
			// moment before the server has brought it home: wait for that.
			p.waitFinished(c.UserContext(), job.ID, 2*time.Minute)
		}
		return p.sendFile(c, store.Outputs, user, job.ID, name)
	}
	return c.Status(400).SendString("invalid type")
}

// waitFinished waits until a job is no longer running, or timeout.
func (p *Proxy) waitFinished(ctx context.Context, id string, timeout time.Duration) {
	sub := p.cfg.Queue.Events().Subscribe(64, func(e sched.Event) bool {
		return e.Type == sched.EventJobUpdated && e.Job != nil && e.Job.ID == id
	})
	defer sub.Close()
	if j, err := p.cfg.Queue.Get(id); err != nil || j.Status != workshop.StatusRunning {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case e, ok := <-sub.C:
			if !ok || e.Job.Status != workshop.StatusRunning {
				return
			}
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *Proxy) sendFile(c *fiber.Ctx, kind, user, group, name string) error {
	f, fi, err := p.cfg.Files.Open(kind, user, group, name)
	if err != nil {
		if workshop.ErrorCode(err) == workshop.EINVALID {
			return c.Status(403).SendString("invalid filename")
		}
		return c.Status(404).SendString("not found")
	}
	c.Set(fiber.HeaderContentType, store.ContentType(name))
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set(fiber.HeaderCacheControl, "private, max-age=3600")
	if store.ContentType(name) == "application/octet-stream" {
		c.Set(fiber.HeaderContentDisposition, fmt.Sprintf("attachment; filename=%q", name))
	} else {
		c.Set(fiber.HeaderContentDisposition, fmt.Sprintf("filename=%q", name))
	}
	return c.SendStream(f, int(fi.Size()))
}

// upload is POST /upload/image and /upload/mask: into the participant's
// input store, with ComfyUI's naming (same content keeps the name, a clash
// becomes "name (1).ext").
func (p *Proxy) upload(mask bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		user := userOf(c)
		fh, err := c.FormFile("image")
		if err != nil {
			return c.Status(400).SendString("no image in the upload")
		}
		if fh.Size > p.cfg.MaxUpload {
			return c.Status(413).SendString("the file is too large")
		}
		typ := c.FormValue("type", "input")
		if typ != "input" {
			// Uploads go to the participant's input store only.
			return c.Status(400).SendString("uploads go to the input folder only")
		}
		sub := strings.Trim(c.FormValue("subfolder"), "/")
		group := store.InputRoot
		if sub != "" {
			if !store.SafeName(sub) {
				return c.Status(400).SendString("invalid subfolder")
			}
			group = sub
		}
		name := path.Base(strings.ReplaceAll(fh.Filename, "\\", "/"))
		if !store.SafeName(name) {
			return c.Status(400).SendString("invalid filename")
		}
		overwrite := c.FormValue("overwrite") == "true" || c.FormValue("overwrite") == "1"
		src, err := fh.Open()
		if err != nil {
			return err
		}
		defer src.Close()
		sum, err := hashOf(src)
		if err != nil {
			return err
		}
		if !overwrite {
			name = p.freeName(user, group, name, sum)
		}
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := p.cfg.Files.Save(store.Inputs, user, group, name, src, p.cfg.MaxUpload); err != nil {
			return err
		}
		if mask {
			// The mask editor sends the painted image with its mask in the
			// alpha channel already; keep it as uploaded.
			p.log.Debug("mask upload", "user", user, "name", name)
		}
		return c.JSON(fiber.Map{"name": name, "subfolder": sub, "type": "input"})
	}
}

func hashOf(r io.Reader) ([32]byte, error) {
	h := sha256.New()
	_, err := io.Copy(h, r)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, err
}

// freeName keeps name if the participant has no such file or has the same
// bytes under it; otherwise finds "name (n).ext".
func (p *Proxy) freeName(user, group, name string, sum [32]byte) string {
	ext := path.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := 0; i < 1000; i++ {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", base, i, ext)
		}
		f, _, err := p.cfg.Files.Open(store.Inputs, user, group, cand)
		if err != nil {
			return cand
		}
		h, herr := hashOf(f)
		f.Close()
		if herr == nil && h == sum {
			return cand
		}
	}
	return fmt.Sprintf("%s (%d)%s", base, time.Now().UnixNano(), ext)
}
