package userfiles

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// The file routes follow app/user_manager.py: getuserdata, post_userdata,
// delete_userdata and move_userdata.

// userdata routes /userdata/{file} and /userdata/{file}/move/{dest}, with
// {file} and {dest} single raw segments.
func (h *handler) userdata(c *fiber.Ctx, user string) error {
	segs := strings.Split(c.Params("*"), "/")
	if len(segs) == 3 && segs[1] == "move" && segs[0] != "" && segs[2] != "" {
		if c.Method() != fiber.MethodPost {
			c.Set(fiber.HeaderAllow, fiber.MethodPost)
			return sendText(c, fiber.StatusMethodNotAllowed, "405: Method Not Allowed")
		}
		return h.move(c, user, segs[0], segs[2])
	}
	if len(segs) != 1 || segs[0] == "" {
		return sendText(c, fiber.StatusNotFound, "404: Not Found")
	}
	switch c.Method() {
	case fiber.MethodPost:
		return h.postFile(c, user, segs[0])
	case fiber.MethodDelete:
		return h.deleteFile(c, user, segs[0])
	default:
		return h.getFile(c, user, segs[0])
	}
}

// filePath decodes and checks {file}; ok=false means the answer (403 with
// no body, ComfyUI's answer for a path outside the user folder) was sent.
func filePath(c *fiber.Ctx, raw string) (string, bool) {
	rel, err := cleanRel(decodeSegment(raw))
	if err != nil || rel == "" {
		_ = sendEmpty(c, fiber.StatusForbidden)
		return "", false
	}
	return rel, true
}

// lookupErr answers a failed resolve of an existing path: 404 when it is
// missing, 403 through a link.
func (h *handler) lookupErr(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errNotDir):
		return sendEmpty(c, fiber.StatusNotFound)
	case errors.Is(err, errSymlink):
		return sendEmpty(c, fiber.StatusForbidden)
	}
	return h.internal(c, "look up", err)
}

func (h *handler) getFile(c *fiber.Ctx, user, raw string) error {
	rel, ok := filePath(c, raw)
	if !ok {
		return nil
	}
	if w, ok := h.s.workshopFile(rel); ok {
		f, err := os.Open(w.src)
		if err != nil {
			return h.lookupErr(c, err)
		}
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			f.Close()
			return sendEmpty(c, fiber.StatusNotFound)
		}
		return sendFile(c, f, st.Size(), rel)
	}
	root, ok, err := h.existingRoot(c, user)
	if !ok {
		return err
	}
	defer root.Close()
	f, st, err := openRegular(root, rel)
	switch {
	case errors.Is(err, errNotFile):
		return sendEmpty(c, fiber.StatusForbidden) // a folder (aiohttp's FileResponse refuses it)
	case err != nil:
		return h.lookupErr(c, err)
	}
	return sendFile(c, f, st.Size(), rel)
}

var errNotFile = errors.New("not a regular file")

// openRegular opens the regular file rel for reading. The file opened must
// be the one resolve checked (no link on the way); a save that renames a
// new file over rel meanwhile makes it look again.
func openRegular(root *os.Root, rel string) (*os.File, fs.FileInfo, error) {
	for attempt := 1; ; attempt++ {
		fi, err := resolve(root, rel, false)
		if err != nil {
			return nil, nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, nil, errNotFile
		}
		f, err := root.Open(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && attempt < 5 {
				continue
			}
			return nil, nil, err
		}
		st, err := f.Stat()
		if err == nil && os.SameFile(fi, st) {
			return f, st, nil
		}
		f.Close()
		if attempt >= 5 {
			return nil, nil, errSymlink // keeps changing under us
		}
	}
}

// sendFile streams f with getuserdata's headers: a download, never
// rendered inline (stored XSS), except user.css at the top of the folder.
func sendFile(c *fiber.Ctx, f *os.File, size int64, rel string) error {
	ct := mime.TypeByExtension(path.Ext(rel))
	if ct == "" {
		ct = "application/octet-stream"
	}
	disposition := "attachment"
	if rel == userCSS {
		ct, disposition = "text/css", "inline"
	} else if dangerousType(ct) {
		ct = "application/octet-stream"
	}
	c.Set(fiber.HeaderContentType, ct)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderContentDisposition, disposition)
	if disposition == "attachment" {
		c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; sandbox")
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Status(fiber.StatusOK)
	return c.SendStream(f, int(size)) // fasthttp closes f when sent
}

// dangerousType reports content types a browser would run or render.
func dangerousType(ct string) bool {
	base := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	switch base {
	case "text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript",
		"application/javascript", "application/x-javascript", "application/ecmascript",
		"text/ecmascript", "text/css", "image/svg+xml", "text/xml", "application/xml", "message/rfc822":
		return true
	}
	return strings.HasSuffix(base, "+xml")
}

// writeFlags are post_userdata's and move_userdata's query flags.
func writeFlags(c *fiber.Ctx) (overwrite, fullInfo bool) {
	return c.Query("overwrite", "true") != "false", strings.ToLower(c.Query("full_info", "false")) == "true"
}

func (h *handler) postFile(c *fiber.Ctx, user, raw string) error {
	rel, ok := filePath(c, raw)
	if !ok {
		return nil
	}
	overwrite, fullInfo := writeFlags(c)
	if inWorkshop(rel) {
		return h.workshopRefusal(c, rel, overwrite)
	}
	if ce := c.Get(fiber.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		return fail(c, fiber.StatusUnsupportedMediaType, "invalid", "Send the file without Content-Encoding.")
	}
	body := c.Request().Body() // as sent, never decompressed
	if int64(len(body)) > h.s.cfg.MaxFileSize {
		return fail(c, fiber.StatusRequestEntityTooLarge, "too_large",
			"The file is larger than "+humanSize(h.s.cfg.MaxFileSize)+".")
	}
	defer h.s.lock(user)()
	root, err := h.s.openUser(user, true)
	if err != nil {
		return h.openFail(c, err)
	}
	defer root.Close()
	fi, exists, ok, resp := h.lookupForWrite(c, root, rel)
	if !ok {
		return resp
	}
	if exists && !overwrite {
		return sendText(c, fiber.StatusConflict, "File already exists")
	}
	var old int64
	if exists {
		if !fi.Mode().IsRegular() {
			return invalidFilename(c) // a folder is in the way
		}
		old = fi.Size()
	}
	if over, err := h.overQuota(c, root, old, int64(len(body)), newEntries(rel, exists)); over {
		return err
	}
	if ok, err := h.makeParents(c, root, rel); !ok {
		return err
	}
	if err := writeAtomic(root, rel, body); err != nil {
		if isNameErr(err) {
			return invalidFilename(c)
		}
		return h.internal(c, "write", err)
	}
	return h.fileResult(c, root, rel, fullInfo)
}

// fileResult is post_userdata's and move_userdata's answer: the path
// relative to the user folder, or with full_info its get_file_info.
func (h *handler) fileResult(c *fiber.Ctx, root *os.Root, rel string, fullInfo bool) error {
	if !fullInfo {
		return sendJSON(c, fiber.StatusOK, rel)
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return h.internal(c, "stat", err)
	}
	return sendJSON(c, fiber.StatusOK, fileInfo{Path: rel, Size: fi.Size(), Modified: fi.ModTime().UnixMilli(), Created: ctimeOf(fi).UnixMilli()})
}

func (h *handler) deleteFile(c *fiber.Ctx, user, raw string) error {
	rel, ok := filePath(c, raw)
	if !ok {
		return nil
	}
	if inWorkshop(rel) {
		return fail(c, fiber.StatusForbidden, "forbidden", "Workshop workflows are read-only and cannot be deleted.")
	}
	defer h.s.lock(user)()
	root, ok, err := h.existingRoot(c, user)
	if !ok {
		return err
	}
	defer root.Close()
	fi, err := resolve(root, rel, false)
	if err != nil {
		return h.lookupErr(c, err)
	}
	if fi.IsDir() {
		return sendText(c, fiber.StatusBadRequest, "Cannot delete a folder")
	}
	if err := root.Remove(rel); err != nil {
		return h.internal(c, "delete", err)
	}
	if err := syncDir(root, path.Dir(rel)); err != nil {
		h.s.log.Warn("userfiles: fsync after delete", "err", err)
	}
	return sendEmpty(c, fiber.StatusNoContent)
}

func (h *handler) move(c *fiber.Ctx, user, rawSrc, rawDst string) error {
	src, ok := filePath(c, rawSrc)
	if !ok {
		return nil
	}
	if inWorkshop(src) {
		return fail(c, fiber.StatusForbidden, "forbidden", "Workshop workflows are read-only and cannot be moved or renamed.")
	}
	defer h.s.lock(user)()
	root, ok, err := h.existingRoot(c, user)
	if !ok {
		return err
	}
	defer root.Close()
	srcFi, err := resolve(root, src, false)
	if err != nil {
		return h.lookupErr(c, err)
	}
	dst, ok := filePath(c, rawDst)
	if !ok {
		return nil
	}
	overwrite, fullInfo := writeFlags(c)
	if inWorkshop(dst) {
		return h.workshopRefusal(c, dst, overwrite)
	}
	if srcFi.IsDir() && strings.HasPrefix(dst, src+"/") {
		return invalidFilename(c) // a folder into itself
	}
	dstFi, exists, ok, resp := h.lookupForWrite(c, root, dst)
	if !ok {
		return resp
	}
	if !exists {
		// ComfyUI creates the destination's folders before its 409 check;
		// they are created here only when they will be used.
		if over, err := h.overQuota(c, root, 0, 0, newEntries(dst, false)-1); over {
			return err
		}
		if ok, err := h.makeParents(c, root, dst); !ok {
			return err
		}
	}
	if exists && !overwrite {
		return sendText(c, fiber.StatusConflict, "File already exists")
	}
	if src == dst {
		return h.fileResult(c, root, dst, fullInfo)
	}
	if exists && (dstFi.IsDir() || srcFi.IsDir()) {
		return sendText(c, fiber.StatusConflict, "File already exists")
	}
	if err := root.Rename(src, dst); err != nil {
		if isNameErr(err) {
			return invalidFilename(c)
		}
		return h.internal(c, "move", err)
	}
	for _, d := range []string{path.Dir(src), path.Dir(dst)} {
		if err := syncDir(root, d); err != nil {
			h.s.log.Warn("userfiles: fsync after move", "err", err)
		}
	}
	h.s.log.Debug("userfiles: moved", "user", user, "from", src, "to", dst)
	return h.fileResult(c, root, dst, fullInfo)
}

// overQuota answers 413 and reports true when replacing a file of size
// old by one of size size would take the participant over their byte
// quota (only growth is refused), or newEntries more files and folders
// over the entry cap.
func (h *handler) overQuota(c *fiber.Ctx, root *os.Root, old, size int64, newEntries int) (bool, error) {
	used, entries, err := h.s.usage(root)
	if err != nil {
		return true, h.internal(c, "measure folder", err)
	}
	if size > old && used-old+size > h.s.cfg.MaxUserBytes {
		return true, fail(c, fiber.StatusRequestEntityTooLarge, "too_large",
			"Your storage is full ("+humanSize(h.s.cfg.MaxUserBytes)+"). Delete some files first.")
	}
	if newEntries > 0 && entries+newEntries > MaxUserEntries {
		return true, fail(c, fiber.StatusRequestEntityTooLarge, "too_large", "You have too many files. Delete some first.")
	}
	return false, nil
}

// newEntries is how many files and folders writing rel may add: the file
// and each parent folder that is not there yet (an upper bound).
func newEntries(rel string, exists bool) int {
	if exists {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// lookupForWrite resolves a write's target without creating anything.
// ok=false means the answer was sent: 403 through a link, 400 (ComfyUI's
// invalid-filename answer) when a file is in the way of a parent folder.
func (h *handler) lookupForWrite(c *fiber.Ctx, root *os.Root, rel string) (fi fs.FileInfo, exists, ok bool, resp error) {
	fi, err := resolve(root, rel, false)
	switch {
	case err == nil:
		return fi, true, true, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, true, nil
	case errors.Is(err, errSymlink):
		return nil, false, false, sendEmpty(c, fiber.StatusForbidden)
	case isNameErr(err):
		return nil, false, false, invalidFilename(c)
	}
	return nil, false, false, h.internal(c, "look up", err)
}

// makeParents creates rel's missing parent folders (ComfyUI creates them
// before writing), checking again that none is a link.
func (h *handler) makeParents(c *fiber.Ctx, root *os.Root, rel string) (bool, error) {
	_, err := resolve(root, rel, true)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return true, nil
	case errors.Is(err, errSymlink):
		return false, sendEmpty(c, fiber.StatusForbidden)
	case isNameErr(err):
		return false, invalidFilename(c)
	}
	return false, h.internal(c, "create folders", err)
}

// humanSize writes a byte count for messages: "20 MiB", "512 KiB".
func humanSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
