package userfiles

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// object is the settings: a JSON object that keeps its keys in order and
// its values as written, as a Python dict loaded with json.load does
// (ComfyUI merges settings with {**old, **new}: old keys keep their place,
// new ones follow).
type object = jsonobj.Object

func newObject() *object { return &object{} }

// parseObject decodes b, which must hold exactly one JSON object. A key
// given twice keeps its first place and its last value, as in Python.
func parseObject(b []byte) (*object, error) {
	o, err := jsonobj.Parse(b)
	return &o, err
}

// merge adds every key of n to o, as {**o, **n}.
func merge(o, n *object) {
	for _, m := range *n {
		o.Set(m.Key, m.Value)
	}
}

// indented is the file form: ComfyUI writes json.dumps(settings, indent=4).
func indented(o *object) ([]byte, error) {
	c, err := o.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, c, "", "    "); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// The settings routes follow app/app_settings.py.

// loadSettings reads comfy.settings.json; a missing, linked or corrupt
// file reads as {} (ComfyUI logs a corrupt file and answers {}).
func (s *Store) loadSettings(root *os.Root) *object {
	if root == nil {
		return newObject()
	}
	fi, err := root.Lstat(settingsFile)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > s.cfg.MaxFileSize {
		if err == nil {
			s.log.Warn("userfiles: the settings file is not a plain file; ignoring it", "dir", root.Name())
		}
		return newObject()
	}
	b, err := root.ReadFile(settingsFile)
	if err != nil {
		s.log.Error("userfiles: cannot read settings", "dir", root.Name(), "err", err)
		return newObject()
	}
	o, err := parseObject(b)
	if err != nil {
		s.log.Error("userfiles: the user settings file is corrupted", "dir", root.Name(), "err", err)
		return newObject()
	}
	return o
}

func (h *handler) getSettings(c *fiber.Ctx, user string) error {
	root, err := h.s.openUser(user, true) // ComfyUI creates the user folder here too
	if err != nil {
		return h.openFail(c, err)
	}
	defer root.Close()
	return sendJSON(c, fiber.StatusOK, h.s.loadSettings(root))
}

// getSetting answers the value, or null when unset.
func (h *handler) getSetting(c *fiber.Ctx, user string) error {
	id := unquote(c.Params("id"))
	root, err := h.s.openUser(user, true)
	if err != nil {
		return h.openFail(c, err)
	}
	defer root.Close()
	v, ok := h.s.loadSettings(root).Get(id)
	if !ok {
		v = json.RawMessage("null")
	}
	return sendJSON(c, fiber.StatusOK, v)
}

// postSettings merges the posted object into the settings ({**old, **new}).
func (h *handler) postSettings(c *fiber.Ctx, user string) error {
	n, err := parseObject(c.Request().Body())
	if err != nil {
		return sendText(c, fiber.StatusBadRequest, "Settings must be a JSON object")
	}
	return h.updateSettings(c, user, func(o *object) { merge(o, n) })
}

// postSetting sets one setting to the posted JSON value.
func (h *handler) postSetting(c *fiber.Ctx, user string) error {
	id := unquote(c.Params("id"))
	if id == "" {
		return sendEmpty(c, fiber.StatusBadRequest)
	}
	body := c.Request().Body()
	if !json.Valid(body) {
		return sendText(c, fiber.StatusBadRequest, "The setting value must be JSON")
	}
	v := append(json.RawMessage(nil), body...)
	return h.updateSettings(c, user, func(o *object) { o.Set(id, v) })
}

func (h *handler) updateSettings(c *fiber.Ctx, user string, change func(*object)) error {
	if len(c.Request().Body()) > int(h.s.cfg.MaxFileSize) {
		return fail(c, fiber.StatusRequestEntityTooLarge, "too_large", "The settings are too large.")
	}
	defer h.s.lock(user)()
	root, err := h.s.openUser(user, true)
	if err != nil {
		return h.openFail(c, err)
	}
	defer root.Close()
	o := h.s.loadSettings(root)
	change(o)
	b, err := indented(o)
	if err != nil {
		return h.internal(c, "encode settings", err)
	}
	if int64(len(b)) > h.s.cfg.MaxFileSize {
		return fail(c, fiber.StatusRequestEntityTooLarge, "too_large", "The settings are too large.")
	}
	var old int64
	fi, err := root.Lstat(settingsFile)
	if err == nil {
		if !fi.Mode().IsRegular() && fi.Mode()&fs.ModeSymlink == 0 {
			return sendText(c, fiber.StatusConflict, settingsFile+" is a folder, not a file")
		}
		old = fi.Size()
	}
	if over, err := h.overQuota(c, root, old, int64(len(b)), newEntries(settingsFile, err == nil)); over {
		return err
	}
	if err := writeAtomic(root, settingsFile, b); err != nil {
		return h.internal(c, "write settings", err)
	}
	return sendEmpty(c, fiber.StatusOK)
}
