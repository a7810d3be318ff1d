package sim

import (
	"embed"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// objectInfoFor renders the classes a prompt uses (all that validating it
// needs) with today's model and input files.
func (s *Server) objectInfoFor(p comfy.Prompt) comfy.ObjectInfo {
	info := comfy.ObjectInfo{}
	for _, n := range p {
		if d, ok := s.byName[n.ClassType]; ok {
			if _, done := info[d.name]; !done {
				info[d.name] = d.nodeInfo(s.options, s.cfg.Legacy)
			}
		}
	}
	return info
}

// objectInfoJSON is /object_info as ComfyUI writes it: classes in
// registration order, every definition in its key order.
func (s *Server) objectInfoJSON(only string) []byte {
	o := jsonobj.Object{}
	for i := range s.catalog {
		d := &s.catalog[i]
		if only == "" || d.name == only {
			o = append(o, jsonobj.Member{Key: d.name, Value: d.encode(s.options, s.cfg.Legacy)})
		}
	}
	b, _ := o.MarshalJSON()
	return b
}

// options are a dynamic combo's choices: files of the input folder or of
// model folders.
func (s *Server) options(in inputDef) []string {
	if in.inputs {
		return s.inputImages()
	}
	var out []string
	for _, f := range in.folder {
		if strings.HasPrefix(f, "+") { // a fixed extra option (VAELoader's pixel_space)
			out = append(out, f[1:])
			continue
		}
		out = append(out, s.modelNames(f)...)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true, ".gif": true, ".bmp": true, ".tif": true, ".tiff": true, ".jfif": true}

// inputImages is LoadImage's list: image files directly in the input folder.
func (s *Server) inputImages() []string {
	entries, _ := os.ReadDir(s.cfg.InputDir)
	out := []string{}
	for _, e := range entries {
		if e.Type().IsRegular() && imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func (s *Server) handleObjectInfo(w http.ResponseWriter, r *http.Request) {
	writeRawJSON(w, http.StatusOK, s.objectInfoJSON(""))
}

func (s *Server) handleObjectInfoNode(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node_class")
	if _, ok := s.byName[name]; !ok {
		writeRawJSON(w, http.StatusOK, []byte("{}"))
		return
	}
	writeRawJSON(w, http.StatusOK, s.objectInfoJSON(name))
}

func (s *Server) handleFeatures(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.features())
}

func (s *Server) handleSystemStats(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	const vram = int64(85045559296)
	used := int64(0)
	if s.queue.runningID() != "" {
		used = 24 << 30
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"system": map[string]any{
			"os": runtime.GOOS, "ram_total": int64(128 << 30), "ram_free": int64(100<<30) - int64(ms.Sys),
			"comfyui_version": s.cfg.Version, "required_frontend_version": "1.34.9",
			"installed_templates_version": "0.7.51", "required_templates_version": "0.7.51",
			"python_version": "3.12.9 (main, Feb 12 2025, 14:50:50) [Clang 19.1.6 ]", "pytorch_version": "2.9.1+cu128",
			"embedded_python": false, "argv": []string{"main.py", "--listen", "127.0.0.1"},
		},
		"devices": []map[string]any{{
			"name": "cuda:0 NVIDIA H100 80GB HBM3 (comfysim) : cudaMallocAsync", "type": "cuda", "index": 0,
			"vram_total": vram, "vram_free": vram - used, "torch_vram_total": used, "torch_vram_free": 0,
		}},
	})
}

// handleExtensions lists the frontend's extension scripts as ComfyUI does:
// every .js under <web root>/extensions, as "/extensions/...".
func (s *Server) handleExtensions(w http.ResponseWriter, r *http.Request) {
	out := []string{}
	if s.cfg.FrontEndRoot != "" {
		root := filepath.Join(s.cfg.FrontEndRoot, "extensions")
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".js") {
				rel, _ := filepath.Rel(s.cfg.FrontEndRoot, p)
				out = append(out, "/"+filepath.ToSlash(rel))
			}
			return nil
		})
	}
	writeJSON(w, http.StatusOK, out)
}

//go:embed ui
var uiFS embed.FS

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store, must-revalidate")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Expires", "0")
	if s.cfg.FrontEndRoot == "" {
		b, _ := uiFS.ReadFile("ui/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
		return
	}
	s.serveFile(w, r, filepath.Join(s.cfg.FrontEndRoot, "index.html"))
}

// handleStatic serves the web root like aiohttp's web.static: files only,
// no listings, 404 otherwise.
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) {
	if s.cfg.FrontEndRoot == "" {
		plain(w, http.StatusNotFound, "")
		return
	}
	rel := path.Clean("/" + r.URL.Path)
	full := filepath.Join(s.cfg.FrontEndRoot, filepath.FromSlash(rel))
	if !within(s.cfg.FrontEndRoot, full) {
		plain(w, http.StatusForbidden, "")
		return
	}
	s.serveFile(w, r, full)
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, full string) {
	f, err := os.Open(full)
	if err != nil {
		plain(w, http.StatusNotFound, "")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		plain(w, http.StatusNotFound, "")
		return
	}
	ct := mime.TypeByExtension(filepath.Ext(full))
	if strings.HasSuffix(full, ".js") || strings.HasSuffix(full, ".mjs") {
		ct = "application/javascript; charset=utf-8"
	}
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	http.ServeContent(w, r, filepath.Base(full), st.ModTime(), f)
}

func (s *Server) handleViewMetadata(w http.ResponseWriter, r *http.Request) {
	// No real safetensors here, so no metadata, as for a file without it.
	plain(w, http.StatusNotFound, "")
}

// handleJobs is GET /api/jobs, the newer job list (pending, in_progress,
// completed, failed, cancelled), newest first by default.
func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var filter map[string]bool
	if st := q.Get("status"); st != "" {
		filter = map[string]bool{}
		for _, p := range strings.Split(st, ",") {
			p = strings.TrimSpace(strings.ToLower(p))
			switch p {
			case "pending", "in_progress", "completed", "failed", "cancelled":
				filter[p] = true
			case "":
			default:
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Invalid status value(s): " + p + ". Valid values: pending, in_progress, completed, failed, cancelled"})
				return
			}
		}
	}
	order := strings.ToLower(q.Get("sort_order"))
	if order == "" {
		order = "desc"
	}
	if order != "asc" && order != "desc" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "sort_order must be 'asc' or 'desc'"})
		return
	}
	limit, offset := -1, 0
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "limit must be an integer"})
			return
		}
		if n <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "limit must be a positive integer"})
			return
		}
		limit = n
	}
	if q.Has("offset") {
		n, err := strconv.Atoi(q.Get("offset"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "offset must be an integer"})
			return
		}
		offset = max(n, 0)
	}
	jobs := s.allJobs()
	var kept []map[string]any
	for _, j := range jobs {
		if filter == nil || filter[j["status"].(string)] {
			kept = append(kept, j)
		}
	}
	sort.SliceStable(kept, func(a, b int) bool {
		ta, _ := kept[a]["create_time"].(int64)
		tb, _ := kept[b]["create_time"].(int64)
		if order == "asc" {
			return ta < tb
		}
		return ta > tb
	})
	total := len(kept)
	page := []map[string]any{}
	for i := offset; i < total && (limit < 0 || len(page) < limit); i++ {
		page = append(page, kept[i])
	}
	var lim any
	if limit > 0 {
		lim = limit
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": page, "pagination": map[string]any{
		"offset": offset, "limit": lim, "total": total, "has_more": offset+len(page) < total,
	}})
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("job_id")
	for _, j := range s.allJobs() {
		if j["id"] == id {
			writeJSON(w, http.StatusOK, j)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": "Job not found"})
}

func (s *Server) allJobs() []map[string]any {
	running, pending := s.queue.snapshot()
	var out []map[string]any
	add := func(it comfy.QueueItem, status string) {
		var extra map[string]any
		dec := json.NewDecoder(strings.NewReader(string(it.ExtraData)))
		dec.UseNumber()
		_ = dec.Decode(&extra)
		job := map[string]any{"id": it.PromptID, "status": status, "priority": it.Number, "outputs_count": 0}
		if ct, ok := extra["create_time"].(json.Number); ok {
			n, _ := ct.Int64()
			job["create_time"] = n
		}
		out = append(out, job)
	}
	for _, it := range running {
		add(it, "in_progress")
	}
	for _, it := range pending {
		add(it, "pending")
	}
	ids, entries := s.queue.historyPage(-1, -1)
	for i, id := range ids {
		e := entries[i]
		status := "completed"
		if e.status.StatusStr == "error" {
			status = "failed"
			if e.status.Interrupted() {
				status = "cancelled"
			}
		}
		var extra map[string]any
		dec := json.NewDecoder(strings.NewReader(string(e.item.ExtraData)))
		dec.UseNumber()
		_ = dec.Decode(&extra)
		files := comfy.OutputFiles(e.outputs)
		job := map[string]any{"id": id, "status": status, "priority": e.item.Number, "outputs_count": len(files)}
		if ct, ok := extra["create_time"].(json.Number); ok {
			n, _ := ct.Int64()
			job["create_time"] = n
		}
		for _, m := range e.status.Messages {
			var d map[string]any
			dec := json.NewDecoder(strings.NewReader(string(m.Data)))
			dec.UseNumber()
			_ = dec.Decode(&d)
			switch m.Event {
			case comfy.EventExecutionStart:
				job["execution_start_time"] = d["timestamp"]
			case comfy.EventExecutionSuccess, comfy.EventExecutionInterrupted:
				job["execution_end_time"] = d["timestamp"]
			case comfy.EventExecutionError:
				job["execution_end_time"] = d["timestamp"]
				job["execution_error"] = d
			}
		}
		if len(files) > 0 {
			f := files[0]
			job["preview_output"] = map[string]any{"filename": f.Filename, "subfolder": f.Subfolder, "type": f.Type, "nodeId": f.NodeID, "mediaType": f.Key}
		}
		out = append(out, job)
	}
	return out
}
