// Package userfiles answers ComfyUI's per-user storage routes (users,
// settings, userdata, v2/userdata and the move route) for each workshop
// participant, as ComfyUI's app/user_manager.py and app/app_settings.py
// answer them in single-user mode, but confined to the participant's own
// folder DIR/<user>/. Workshop workflows from read-only folders appear in
// every participant's workflows/ folder.
//
// Status codes, bodies and query flags follow ComfyUI (plain-text or empty
// bodies where ComfyUI sends those, since the frontend only reads the
// status and its reason phrase). Refusals that ComfyUI does not have
// (workshop workflows are read-only, size limits, quota) answer the
// project's JSON error {"error":{"code","message"}} and carry the message
// as the HTTP reason phrase too, which the frontend shows in its toast.
//
// Paths are checked beyond ComfyUI: "..", absolute paths, backslashes,
// control characters and symbolic links anywhere in the participant's
// folder are refused; every file operation goes through an os.Root opened
// on that folder, so nothing can reach outside it even under a race.
package userfiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/gofiber/fiber/v2"
)

// Config configures a Store.
type Config struct {
	// Dir is the root of the participants' folders: DIR/<user>/...
	Dir string
	// WorkflowDirs are read-only folders of workshop workflows (*.json)
	// that appear in every participant's workflows/ listing.
	WorkflowDirs []string
	// MaxFileSize caps one file (and the settings file); default 20 MiB.
	MaxFileSize int64
	// MaxUserBytes caps a participant's folder in all; default 500 MiB.
	MaxUserBytes int64
	Logger       *slog.Logger
}

// Defaults for Config.
const (
	DefaultMaxFileSize  = 20 << 20
	DefaultMaxUserBytes = 500 << 20
	// MaxUserEntries caps the files and folders in one participant's folder.
	MaxUserEntries = 10000
)

const (
	settingsFile = "comfy.settings.json" // app_settings.py
	userCSS      = "user.css"            // served inline by GET /userdata
)

// Store serves the participants' folders.
type Store struct {
	cfg   Config
	base  *os.Root
	log   *slog.Logger
	locks sync.Map // user -> *sync.Mutex, held by every write of that user
}

// New opens (creating it if needed) cfg.Dir.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("userfiles: no folder given")
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	if cfg.MaxUserBytes <= 0 {
		cfg.MaxUserBytes = DefaultMaxUserBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.WorkflowDirs = append([]string(nil), cfg.WorkflowDirs...)
	if err := os.MkdirAll(cfg.Dir, dirPerm); err != nil {
		return nil, fmt.Errorf("userfiles: %w", err)
	}
	base, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("userfiles: %w", err)
	}
	for _, d := range cfg.WorkflowDirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			cfg.Logger.Warn("userfiles: workshop workflow folder is not there yet; its workflows appear once it is", "dir", d)
		}
	}
	return &Store{cfg: cfg, base: base, log: cfg.Logger}, nil
}

// Close releases the folder handle.
func (s *Store) Close() error { return s.base.Close() }

var userRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func validUser(u string) bool { return userRE.MatchString(u) && u != "." && u != ".." }

// openUser opens DIR/<user> as a Root. Without create, a missing folder
// gives (nil, nil). The folder itself must be a plain folder, not a link.
func (s *Store) openUser(user string, create bool) (*os.Root, error) {
	fi, err := s.base.Lstat(user)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, nil
		}
		if err := s.base.Mkdir(user, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		fi, err = s.base.Lstat(user)
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: participant folder %q is not a plain folder", errSymlink, user)
	}
	r, err := s.base.OpenRoot(user)
	if err != nil {
		return nil, err
	}
	if st, err := r.Stat("."); err != nil || !os.SameFile(fi, st) {
		r.Close()
		return nil, fmt.Errorf("%w: participant folder %q changed while opening", errSymlink, user)
	}
	return r, nil
}

func (s *Store) lock(user string) func() {
	v, _ := s.locks.LoadOrStore(user, new(sync.Mutex))
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// usage sums the participant's files and counts their entries. It runs
// with the user's lock held, so any temporary file it meets is left over
// from a crash and is removed.
func (s *Store) usage(root *os.Root) (bytes int64, entries int, err error) {
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			return nil
		}
		if p == "." {
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), tmpPrefix) {
			_ = root.Remove(p)
			return nil
		}
		entries++
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return bytes, entries, err
}

// Register adds the routes to r under bare paths ("/userdata"); the lead
// mounts r at /user/:seat and /user/:seat/api. userOf returns the
// authenticated participant id of the request ("user007"). The Fiber app
// must run with UnescapePath off, so that {file} arrives still escaped
// ("workflows%2Fa.json" is one path segment), and with a BodyLimit at
// least MaxFileSize, or bigger files are refused before reaching here.
// Register one Store on both mounts: its per-participant locks serialize
// writes (and let it clean temporary files left by a crash), so no two
// Stores may serve the same Dir.
func (s *Store) Register(r fiber.Router, userOf func(*fiber.Ctx) string) {
	h := &handler{s: s, userOf: userOf}
	r.Get("/users", h.wrap(h.getUsers))
	r.Post("/users", h.wrap(h.postUsers))
	r.Get("/settings", h.wrap(h.getSettings))
	r.Post("/settings", h.wrap(h.postSettings))
	r.Get("/settings/:id", h.wrap(h.getSetting))
	r.Post("/settings/:id", h.wrap(h.postSetting))
	r.Get("/userdata", h.wrap(h.list))
	r.Get("/v2/userdata", h.wrap(h.listV2))
	r.Get("/userdata/*", h.wrap(h.userdata))
	r.Post("/userdata/*", h.wrap(h.userdata))
	r.Delete("/userdata/*", h.wrap(h.userdata))
}

type handler struct {
	s      *Store
	userOf func(*fiber.Ctx) string
}

func (h *handler) wrap(fn func(*fiber.Ctx, string) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u := strings.Clone(h.userOf(c)) // kept as a lock key beyond the request
		if !validUser(u) {
			h.s.log.Error("userfiles: request without a valid participant id", "path", c.Path())
			return fail(c, fiber.StatusForbidden, "forbidden", "This request has no participant.")
		}
		return fn(c, u)
	}
}

// Responses.

func sendJSON(c *fiber.Ctx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "application/json; charset=utf-8")
	return c.Status(status).Send(b)
}

func sendText(c *fiber.Ctx, status int, text string) error {
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.Status(status).SendString(text)
}

// sendEmpty is aiohttp's web.Response(status=...): no body.
func sendEmpty(c *fiber.Ctx, status int) error {
	c.Status(status)
	c.Response().ResetBody()
	return nil
}

// invalidFilename is ComfyUI's answer when writing a file fails: 400 with
// no body and this reason phrase (post_userdata).
func invalidFilename(c *fiber.Ctx) error {
	c.Response().Header.SetStatusMessage([]byte(`Invalid filename. Please avoid special characters like :\/*?"<>|`))
	return sendEmpty(c, fiber.StatusBadRequest)
}

// fail answers a refusal ComfyUI does not have, in the project's JSON
// error shape, with the message as the reason phrase (the frontend shows
// "<status> <statusText>" when a save fails). msg must be ASCII.
func fail(c *fiber.Ctx, status int, code, msg string) error {
	c.Response().Header.SetStatusMessage([]byte(msg))
	return sendJSON(c, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (h *handler) internal(c *fiber.Ctx, op string, err error) error {
	h.s.log.Error("userfiles: "+op, "path", c.Path(), "err", err)
	return sendText(c, fiber.StatusInternalServerError, "500 Internal Server Error\n\nServer got itself in trouble")
}

// openFail answers a failed openUser: a participant folder that is a link
// (planted by someone with access to the disk) is refused, not followed.
// existingRoot opens user's folder for a request about files already in
// it. ok is false when the answer is sent: 404 while the folder does not
// exist yet, or the failure to open it.
func (h *handler) existingRoot(c *fiber.Ctx, user string) (root *os.Root, ok bool, err error) {
	root, err = h.s.openUser(user, false)
	if err != nil {
		return nil, false, h.openFail(c, err)
	}
	if root == nil {
		return nil, false, sendEmpty(c, fiber.StatusNotFound)
	}
	return root, true, nil
}

func (h *handler) openFail(c *fiber.Ctx, err error) error {
	if errors.Is(err, errSymlink) {
		h.s.log.Error("userfiles: refusing a participant folder", "path", c.Path(), "err", err)
		return fail(c, fiber.StatusForbidden, "forbidden", "Your folder cannot be used. Ask the instructor.")
	}
	return h.internal(c, "open folder", err)
}

const (
	msgReadOnly    = "Workshop workflows are read-only. Use Save As to keep your own copy."
	msgWorkshopDup = "A workshop workflow has this name. Choose another name."
	msgWorkshopDir = "The workshop folder holds the instructor's workflows. Save yours outside it."
)

// workshopRefusal answers a write or move into the workshop folder: onto
// a workshop workflow, 409 when the caller asked not to overwrite (the
// name is taken), else 403; any other name there, 403.
func (h *handler) workshopRefusal(c *fiber.Ctx, rel string, overwrite bool) error {
	if _, ok := h.s.workshopFile(rel); !ok {
		return fail(c, fiber.StatusForbidden, "forbidden", msgWorkshopDir)
	}
	if !overwrite {
		return fail(c, fiber.StatusConflict, "conflict", msgWorkshopDup)
	}
	return fail(c, fiber.StatusForbidden, "forbidden", msgReadOnly)
}

// isNameErr reports errors ComfyUI's post_userdata turns into 400 (an
// OSError from the write): bad or over-long names, folders in the way.
func isNameErr(err error) bool {
	for _, e := range []error{errNotDir, syscall.ENAMETOOLONG, syscall.EINVAL, syscall.EISDIR, syscall.ENOTDIR, syscall.EEXIST, syscall.ENOTEMPTY} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
