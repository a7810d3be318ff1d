package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
)

// within reports whether path is dir or inside it (os.path.commonpath).
func within(dir, p string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func (s *Server) dirByType(typ string) (string, bool) {
	switch typ {
	case "output":
		return s.cfg.OutputDir, true
	case "input":
		return s.cfg.InputDir, true
	case "temp":
		return s.cfg.TempDir, true
	}
	return "", false
}

// annotated is folder_paths.annotated_filepath: "name [output]" picks the
// folder by suffix.
func (s *Server) annotated(name string) (string, string) {
	for _, typ := range []string{"output", "input", "temp"} {
		suffix := "[" + typ + "]"
		if strings.HasSuffix(name, suffix) {
			dir, _ := s.dirByType(typ)
			// ComfyUI cuts one more character: the space before "[".
			return name[:max(len(name)-len(suffix)-1, 0)], dir
		}
	}
	return name, ""
}

// annotatedPath resolves a file name as LoadImage does and reports whether
// the file exists.
func (s *Server) annotatedPath(name, defType string) (string, bool) {
	name, dir := s.annotated(name)
	if dir == "" {
		dir, _ = s.dirByType(defType)
	}
	if name == "" {
		return "", false
	}
	full := filepath.Join(dir, filepath.FromSlash(name))
	if !within(dir, full) {
		return "", false
	}
	st, err := os.Stat(full)
	return full, err == nil && st.Mode().IsRegular()
}

// handleView is GET /view, with ComfyUI's checks in ComfyUI's order.
func (s *Server) handleView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("filename") {
		plain(w, http.StatusNotFound, "")
		return
	}
	filename, dir := s.annotated(q.Get("filename"))
	if filename == "" || filename[0] == '/' || strings.Contains(filename, "..") {
		empty(w, http.StatusBadRequest)
		return
	}
	if dir == "" {
		typ := "output"
		if q.Has("type") {
			typ = q.Get("type")
		}
		var ok bool
		if dir, ok = s.dirByType(typ); !ok {
			empty(w, http.StatusBadRequest)
			return
		}
	}
	if q.Has("subfolder") {
		sub := q.Get("subfolder")
		full := filepath.Join(dir, sub)
		if filepath.IsAbs(sub) {
			full = filepath.Clean(sub)
		}
		if !within(dir, full) {
			empty(w, http.StatusForbidden)
			return
		}
		dir = full
	}
	filename = filepath.Base(filename)
	file := filepath.Join(dir, filename)
	f, err := os.Open(file)
	if err != nil {
		plain(w, http.StatusNotFound, "")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		plain(w, http.StatusNotFound, "")
		return
	}
	s.stats.views.Add(1)
	faults := s.currentFaults()
	if faults.ViewDelay > 0 {
		select {
		case <-time.After(time.Duration(faults.ViewDelay)):
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
	disp := `filename="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(filename) + `"`
	if q.Has("preview") || q.Get("channel") == "rgb" || q.Get("channel") == "a" {
		s.viewConverted(w, f, filename, disp, q.Get("preview"), q.Get("channel"))
		return
	}
	ct := mime.TypeByExtension(strings.ToLower(filepath.Ext(filename)))
	if i := strings.Index(ct, ";"); i >= 0 {
		ct = ct[:i]
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	switch ct {
	case "text/html", "application/xhtml+xml", "text/javascript", "application/javascript", "text/css", "image/svg+xml", "text/xml", "application/xml":
		// Served as a download so that an uploaded page cannot run in
		// the site's origin.
		ct = "application/octet-stream"
		disp = "attachment; " + disp
		h.Set("Cache-Control", "no-store")
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", disp)
	var body io.ReadSeeker = f
	if faults.ViewBytesPerSec > 0 {
		w = &throttledWriter{ResponseWriter: w, rate: faults.ViewBytesPerSec, start: time.Now()}
	}
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, filename, st.ModTime(), body)
	s.stats.viewBytes.Add(cw.n)
}

// viewConverted answers /view's preview= and channel= forms: a re-encoded
// image. Go has no WebP encoder, so "preview=webp" comes back as JPEG.
func (s *Server) viewConverted(w http.ResponseWriter, f *os.File, filename, disp, preview, channel string) {
	img, _, err := image.Decode(f)
	if err != nil {
		internalError(w) // PIL raising on a non-image
		return
	}
	var buf bytes.Buffer
	ct := "image/png"
	switch {
	case preview != "":
		quality := 90
		parts := strings.Split(preview, ";")
		if n, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
			quality = n
		}
		ct = "image/jpeg"
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: max(1, min(quality, 100))})
	case channel == "rgb":
		rgb := image.NewNRGBA(img.Bounds())
		draw.Draw(rgb, rgb.Bounds(), img, img.Bounds().Min, draw.Src)
		for i := 3; i < len(rgb.Pix); i += 4 {
			rgb.Pix[i] = 255
		}
		err = png.Encode(&buf, rgb)
	default: // channel a
		b := img.Bounds()
		alpha := image.NewNRGBA(b)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				_, _, _, a := img.At(x, y).RGBA()
				alpha.Set(x, y, color.NRGBA{0, 0, 0, uint8(a >> 8)})
			}
		}
		err = png.Encode(&buf, alpha)
	}
	if err != nil {
		internalError(w)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", disp)
	_, _ = w.Write(buf.Bytes())
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for unthrottled downloads.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	return n, err
}

// throttledWriter paces writes to rate bytes per second.
type throttledWriter struct {
	http.ResponseWriter
	rate  int64
	start time.Time
	sent  int64
}

func (t *throttledWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), int(max(t.rate/20, 1)))]
		due := t.start.Add(time.Duration(float64(t.sent) / float64(t.rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d) // pacing is the point of this fault
		}
		n, err := t.ResponseWriter.Write(chunk)
		written += n
		t.sent += int64(n)
		if err != nil {
			return written, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[n:]
	}
	return written, nil
}

// handleUploadImage is POST /upload/image.
func (s *Server) handleUploadImage(w http.ResponseWriter, r *http.Request) {
	s.upload(w, r, nil)
}

// handleUploadMask is POST /upload/mask: the mask's alpha is painted onto
// the original_ref image and saved under the upload's name.
func (s *Server) handleUploadMask(w http.ResponseWriter, r *http.Request) {
	s.upload(w, r, func(form map[string]string, tmp string) error {
		var ref struct {
			Filename  string `json:"filename"`
			Subfolder string `json:"subfolder"`
			Type      string `json:"type"`
		}
		if err := json.Unmarshal([]byte(form["original_ref"]), &ref); err != nil {
			return errBadRequest
		}
		name, dir := s.annotated(ref.Filename)
		if name == "" || name[0] == '/' || strings.Contains(name, "..") {
			return errBadRequest
		}
		if dir == "" {
			typ := ref.Type
			if typ == "" {
				typ = "output"
			}
			var ok bool
			if dir, ok = s.dirByType(typ); !ok {
				return errBadRequest
			}
		}
		if ref.Subfolder != "" {
			full := filepath.Join(dir, ref.Subfolder)
			if !within(dir, full) {
				return errForbidden
			}
			dir = full
		}
		orig, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil // ComfyUI only composites when the original exists
		}
		mask, err := os.ReadFile(tmp)
		if err != nil {
			return err
		}
		out, err := comfy.CompositeMask(orig, mask)
		if err != nil {
			return err // PIL's error: a 500, as in ComfyUI
		}
		return os.WriteFile(tmp, out, 0o644)
	})
}

var (
	errBadRequest = errors.New("bad request")
	errForbidden  = errors.New("forbidden")
)

// uploadFailed answers a broken upload body: 413 past the size limit, as
// aiohttp does, else 400.
func uploadFailed(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		plain(w, http.StatusRequestEntityTooLarge, "")
		return
	}
	empty(w, http.StatusBadRequest)
}

// upload streams the "image" part to a temporary file in the target folder
// (hashing it on the way), then applies ComfyUI's naming: same content
// under the same name is reused, a clash becomes "name (1).ext".
func (s *Server) upload(w http.ResponseWriter, r *http.Request, transform func(form map[string]string, tmp string) error) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadSize)
	mr, err := r.MultipartReader()
	if err != nil {
		empty(w, http.StatusBadRequest)
		return
	}
	form := map[string]string{}
	var tmpPath, partName string
	var sum []byte
	defer func() {
		if tmpPath != "" {
			_ = os.Remove(tmpPath)
		}
	}()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			uploadFailed(w, err)
			return
		}
		if part.FormName() == "image" && part.FileName() != "" && tmpPath == "" {
			partName = part.FileName()
			tmp, err := os.CreateTemp(s.cfg.TempDir, ".upload-*")
			if err != nil {
				internalError(w)
				return
			}
			tmpPath = tmp.Name()
			h := sha256.New()
			_, err = io.Copy(io.MultiWriter(tmp, h), part)
			tmp.Close()
			if err != nil {
				uploadFailed(w, err)
				return
			}
			sum = h.Sum(nil)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(part, 1<<20))
		form[part.FormName()] = string(b)
	}
	if tmpPath == "" || partName == "" {
		empty(w, http.StatusBadRequest)
		return
	}
	typ := form["type"]
	if typ == "" {
		typ = "input"
	}
	uploadDir, ok := s.dirByType(typ)
	if !ok {
		internalError(w) // get_dir_by_type leaves type_dir unbound
		return
	}
	subfolder := form["subfolder"]
	folder := filepath.Join(uploadDir, filepath.Clean("/" + subfolder)[1:])
	if filepath.IsAbs(subfolder) {
		folder = filepath.Clean(subfolder)
	}
	filename := partName
	target := filepath.Join(folder, filename)
	if !within(uploadDir, target) {
		empty(w, http.StatusBadRequest)
		return
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		internalError(w)
		return
	}
	if transform != nil {
		if err := transform(form, tmpPath); err != nil {
			switch err {
			case errBadRequest:
				empty(w, http.StatusBadRequest)
			case errForbidden:
				empty(w, http.StatusForbidden)
			default:
				internalError(w)
			}
			return
		}
		sum = fileSum(tmpPath)
	}
	overwrite := form["overwrite"] == "true" || form["overwrite"] == "1"
	duplicate := false
	if !overwrite {
		ext := filepath.Ext(filename)
		stem := strings.TrimSuffix(filename, ext)
		for i := 1; ; i++ {
			if _, err := os.Stat(target); err != nil {
				break
			}
			if bytes.Equal(fileSum(target), sum) {
				duplicate = true
				break
			}
			filename = stem + " (" + strconv.Itoa(i) + ")" + ext
			target = filepath.Join(folder, filename)
		}
	}
	if !duplicate {
		if err := moveFile(tmpPath, target); err != nil {
			internalError(w)
			return
		}
		tmpPath = ""
	}
	s.stats.uploads.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{"name": filename, "subfolder": subfolder, "type": typ})
}

func fileSum(p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	h := sha256.New()
	_, _ = io.Copy(h, f)
	return h.Sum(nil)
}

// moveFile renames, or copies when the folders are on different disks.
func moveFile(from, to string) error {
	if err := os.Rename(from, to); err == nil {
		return nil
	}
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Remove(from)
}
