package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// view is GET /view: the participant's outputs (subfolder = job id, as
// history and the relayed events name them) and their own uploads.
func (p *Proxy) view(c *fiber.Ctx) error {
	r, status, msg := p.resolve(userOf(c), c.Query("filename"), c.Query("subfolder"), c.Query("type", "output"))
	if status != 0 {
		return c.Status(status).SendString(msg)
	}
	if r.running {
		// The UI asks for an image as soon as the node reports it, a
		// moment before the server has brought it home: wait for that.
		p.waitFinished(c.UserContext(), r.group, 2*time.Minute)
	}
	return p.sendFile(c, r.kind, userOf(c), r.group, r.name)
}

// storedRef is where a file a participant names is in the store.
type storedRef struct {
	kind, group, name string
	running           bool // an output of a job still running
}

// resolve finds the file a participant names as ComfyUI does (filename,
// maybe "name [type]", subfolder, type) in their part of the store: their
// uploads, or their jobs' outputs (subfolder = job id). On failure it
// returns the HTTP status and message to answer with.
func (p *Proxy) resolve(user, name, sub, typ string) (storedRef, int, string) {
	for _, t := range []string{"output", "input", "temp"} {
		if strings.HasSuffix(name, " ["+t+"]") {
			name, typ = strings.TrimSuffix(name, " ["+t+"]"), t
		}
	}
	if name == "" {
		return storedRef{}, 400, "filename is required"
	}
	if !store.SafeName(name) || strings.Contains(sub, "..") || strings.HasPrefix(sub, "/") || strings.Contains(sub, "\\") {
		return storedRef{}, 403, "invalid filename"
	}
	switch typ {
	case "input":
		group := store.InputRoot
		if sub != "" {
			if !store.SafeName(sub) {
				return storedRef{}, 403, "invalid subfolder"
			}
			group = sub
		}
		return storedRef{kind: store.Inputs, group: group, name: name}, 0, ""
	case "output", "temp":
		job, err := p.cfg.Queue.Get(sub)
		if err != nil || job.UserID != user {
			return storedRef{}, 404, "not found"
		}
		return storedRef{kind: store.Outputs, group: job.ID, name: name, running: job.Status == workshop.StatusRunning}, 0, ""
	}
	return storedRef{}, 400, "invalid type"
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
	// Inline only media whose bytes match their name; anything else is a
	// sandboxed download, so no upload or output runs on this origin.
	for k, v := range store.DeliveryOfFile(f, name).Headers(name) {
		c.Set(k, v)
	}
	c.Set(fiber.HeaderCacheControl, "private, max-age=3600")
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
		f, err := fh.Open()
		if err != nil {
			return err
		}
		defer f.Close()
		var src io.ReadSeeker = f
		if mask {
			// Store what ComfyUI would: the original with the mask's alpha.
			composite, status, msg := p.compositeMask(user, c.FormValue("original_ref"), f)
			if status != 0 {
				return c.Status(status).SendString(msg)
			}
			src = bytes.NewReader(composite)
		}
		if err := p.checkQuota(user, src); err != nil {
			return c.Status(413).SendString(err.Error())
		}
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
		return c.JSON(fiber.Map{"name": name, "subfolder": sub, "type": "input"})
	}
}

// compositeMask is /upload/mask's file: the participant's original_ref
// image with the uploaded mask's alpha. Unlike ComfyUI, which then stores
// nothing, a missing original is an error the participant sees.
func (p *Proxy) compositeMask(user, originalRef string, mask io.Reader) ([]byte, int, string) {
	var ref struct {
		Filename  string `json:"filename"`
		Subfolder string `json:"subfolder"`
		Type      string `json:"type"`
	}
	if err := json.Unmarshal([]byte(originalRef), &ref); err != nil {
		return nil, 400, "original_ref must be JSON: {filename, subfolder, type}"
	}
	if ref.Type == "" {
		ref.Type = "output"
	}
	r, status, msg := p.resolve(user, ref.Filename, ref.Subfolder, ref.Type)
	if status != 0 {
		return nil, status, "original_ref: " + msg
	}
	f, _, err := p.cfg.Files.Open(r.kind, user, r.group, r.name)
	if err != nil {
		return nil, 404, "original_ref: not found"
	}
	defer f.Close()
	orig, err := io.ReadAll(io.LimitReader(f, p.cfg.MaxUpload+1))
	if err != nil {
		return nil, 500, "reading the original failed"
	}
	m, err := io.ReadAll(mask)
	if err != nil {
		return nil, 500, "reading the mask failed"
	}
	out, err := comfy.CompositeMask(orig, m)
	if err != nil {
		return nil, 400, err.Error()
	}
	if int64(len(out)) > p.cfg.MaxUpload {
		return nil, 413, "the file is too large"
	}
	return out, 0, ""
}

// checkQuota refuses an upload that would take the seat's uploads past
// UploadQuota.
func (p *Proxy) checkQuota(user string, upload io.Seeker) error {
	if p.cfg.UploadQuota <= 0 {
		return nil
	}
	size, err := upload.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if _, err := upload.Seek(0, io.SeekStart); err != nil {
		return err
	}
	used, err := p.cfg.Files.Usage(store.Inputs, user)
	if err != nil {
		return err
	}
	if used+size > p.cfg.UploadQuota {
		return fmt.Errorf("your uploads would pass this seat's quota of %d MB: ask the instructor", p.cfg.UploadQuota>>20)
	}
	return nil
}

// BodyLimit is the body cap of a participant's route that takes files
// (uploads, saved workflows), for the server's per-request limits; 0 for
// the others. path is canonical.
func (p *Proxy) BodyLimit(path string) int {
	rest, ok := strings.CutPrefix(path, "/user/")
	if !ok {
		return 0
	}
	_, rest, _ = strings.Cut(rest, "/")
	rest = strings.TrimPrefix(rest, "api/")
	if strings.HasPrefix(rest, "upload/") || strings.HasPrefix(rest, "userdata/") {
		return int(p.cfg.MaxUpload) + 1<<20 // the multipart framing
	}
	return 0
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
