package sim

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// One user, "default", as ComfyUI without --multi-user.
const defaultUser = "default"

var usersMu sync.Mutex

func (s *Server) userRoot() string { return filepath.Join(s.cfg.UserDir, defaultUser) }

// userPath is get_request_user_filepath: "" when the name leaves the
// user's folder. Names arrive decoded by the router; ComfyUI decodes once
// more when a "%" is left, and so do we.
func (s *Server) userPath(file string, createDir bool) string {
	root := s.userRoot()
	p := root
	if file != "" {
		if strings.Contains(file, "%") {
			if u, err := url.PathUnescape(file); err == nil {
				file = u
			}
		}
		p = filepath.Join(root, filepath.FromSlash(file))
		if filepath.IsAbs(file) {
			p = filepath.Clean(file)
		}
		if !within(root, p) {
			return ""
		}
	}
	if createDir {
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
	}
	return p
}

func (s *Server) handleGetUsers(w http.ResponseWriter, r *http.Request) {
	_, err := os.Stat(s.userRoot())
	writeJSON(w, http.StatusOK, map[string]any{"storage": "server", "migrated": err == nil})
}

var userIDChars = regexp.MustCompile(`[^a-zA-Z0-9-_]+`)

func (s *Server) handlePostUsers(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		internalError(w)
		return
	}
	name, _ := body["username"].(string)
	name = strings.TrimSpace(name)
	if name == "" {
		internalError(w) // ValueError("username not provided")
		return
	}
	usersMu.Lock()
	defer usersMu.Unlock()
	file := filepath.Join(s.cfg.UserDir, "users.json")
	users := map[string]string{defaultUser: defaultUser}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &users)
	}
	for _, v := range users {
		if v == name {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Duplicate username."})
			return
		}
	}
	id := userIDChars.ReplaceAllString(name, "-") + "_" + uuid.NewString()
	users[id] = name
	b, _ := json.Marshal(users)
	_ = os.WriteFile(file, b, 0o644)
	writeJSON(w, http.StatusOK, id)
}

func (s *Server) settingsFile() string { return s.userPath("comfy.settings.json", true) }

func (s *Server) loadSettings() map[string]any {
	out := map[string]any{}
	b, err := os.ReadFile(s.settingsFile())
	if err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

func (s *Server) saveSettings(m map[string]any) error {
	b, err := json.MarshalIndent(m, "", "    ")
	if err != nil {
		return err
	}
	return os.WriteFile(s.settingsFile(), b, 0o644)
}

func (s *Server) handleGetSettings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.loadSettings())
}

func (s *Server) handleGetSetting(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.loadSettings()[r.PathValue("id")])
}

func (s *Server) handlePostSettings(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		internalError(w)
		return
	}
	usersMu.Lock()
	defer usersMu.Unlock()
	m := s.loadSettings()
	for k, v := range body {
		m[k] = v
	}
	if s.saveSettings(m) != nil {
		internalError(w)
		return
	}
	empty(w, http.StatusOK)
}

func (s *Server) handlePostSetting(w http.ResponseWriter, r *http.Request) {
	var v any
	if err := readJSON(r, &v); err != nil {
		internalError(w)
		return
	}
	usersMu.Lock()
	defer usersMu.Unlock()
	m := s.loadSettings()
	m[r.PathValue("id")] = v
	if s.saveSettings(m) != nil {
		internalError(w)
		return
	}
	empty(w, http.StatusOK)
}

type fileInfo struct {
	Path     string  `json:"path"`
	Size     int64   `json:"size"`
	Modified float64 `json:"modified"`
	Created  float64 `json:"created"`
}

func infoOf(p, rel string) fileInfo {
	st, err := os.Stat(p)
	if err != nil {
		return fileInfo{Path: rel}
	}
	mt := float64(st.ModTime().UnixNano()) / float64(time.Second)
	return fileInfo{Path: rel, Size: st.Size(), Modified: mt, Created: mt}
}

// handleListUserdata is GET /userdata?dir=&recurse=&full_info=&split=.
func (s *Server) handleListUserdata(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir == "" {
		plain(w, http.StatusBadRequest, "Directory not provided")
		return
	}
	p := s.userPath(dir, true)
	if p == "" {
		plain(w, http.StatusForbidden, "Invalid directory")
		return
	}
	if _, err := os.Stat(p); err != nil {
		plain(w, http.StatusNotFound, "Directory not found")
		return
	}
	recurse := strings.EqualFold(q.Get("recurse"), "true")
	fullInfo := strings.EqualFold(q.Get("full_info"), "true")
	split := strings.EqualFold(q.Get("split"), "true")
	var rels []string
	_ = filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if fp != p && !recurse {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") { // glob skips dot files
			return nil
		}
		rel, _ := filepath.Rel(p, fp)
		rels = append(rels, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(rels)
	out := []any{}
	for _, rel := range rels {
		switch {
		case fullInfo:
			out = append(out, infoOf(filepath.Join(p, filepath.FromSlash(rel)), rel))
		case split:
			out = append(out, append([]string{rel}, strings.Split(rel, "/")...))
		default:
			out = append(out, rel)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// handleListUserdataV2 is GET /v2/userdata?path=: folders then files.
func (s *Server) handleListUserdataV2(w http.ResponseWriter, r *http.Request) {
	rel, err := url.PathUnescape(r.URL.Query().Get("path"))
	if err != nil {
		plain(w, http.StatusBadRequest, "Invalid characters in path parameter")
		return
	}
	base := s.userPath("", false)
	target := base
	if rel != "" {
		target = s.userPath(rel, false)
	}
	if target == "" {
		plain(w, http.StatusBadRequest, "Invalid path requested")
		return
	}
	st, err := os.Stat(target)
	if err != nil {
		if target == base {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		plain(w, http.StatusNotFound, "Requested path not found")
		return
	}
	if !st.IsDir() {
		plain(w, http.StatusBadRequest, "Requested path is not a directory")
		return
	}
	type entry struct {
		Name     string   `json:"name"`
		Path     string   `json:"path"`
		Type     string   `json:"type"`
		Size     *int64   `json:"size,omitempty"`
		Modified *float64 `json:"modified,omitempty"`
	}
	out := []entry{}
	_ = filepath.WalkDir(target, func(fp string, d fs.DirEntry, err error) error {
		if err != nil || fp == target {
			return nil
		}
		r, _ := filepath.Rel(base, fp)
		e := entry{Name: d.Name(), Path: filepath.ToSlash(r), Type: "file"}
		if d.IsDir() {
			e.Type = "directory"
		} else if info, err := d.Info(); err == nil {
			size, mt := info.Size(), float64(info.ModTime().UnixNano())/float64(time.Second)
			e.Size, e.Modified = &size, &mt
		}
		out = append(out, e)
		return nil
	})
	sort.SliceStable(out, func(a, b int) bool {
		if (out[a].Type == "directory") != (out[b].Type == "directory") {
			return out[a].Type == "directory"
		}
		return strings.ToLower(out[a].Name) < strings.ToLower(out[b].Name)
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) userDataPath(w http.ResponseWriter, r *http.Request, param string, mustExist bool) (string, bool) {
	file := r.PathValue(param)
	if file == "" {
		empty(w, http.StatusBadRequest)
		return "", false
	}
	p := s.userPath(file, true)
	if p == "" {
		empty(w, http.StatusForbidden)
		return "", false
	}
	if mustExist {
		if _, err := os.Stat(p); err != nil {
			plain(w, http.StatusNotFound, "")
			return "", false
		}
	}
	return p, true
}

func (s *Server) handleGetUserdata(w http.ResponseWriter, r *http.Request) {
	p, ok := s.userDataPath(w, r, "file", true)
	if !ok {
		return
	}
	s.serveFile(w, r, p)
}

func (s *Server) userdataReply(w http.ResponseWriter, r *http.Request, p string) {
	rel, _ := filepath.Rel(s.userRoot(), p)
	rel = filepath.ToSlash(rel)
	if strings.EqualFold(r.URL.Query().Get("full_info"), "true") {
		writeJSON(w, http.StatusOK, infoOf(p, rel))
		return
	}
	writeJSON(w, http.StatusOK, rel)
}

// handlePostUserdata saves the raw body; overwrite=false refuses (409) to
// replace an existing file.
func (s *Server) handlePostUserdata(w http.ResponseWriter, r *http.Request) {
	p, ok := s.userDataPath(w, r, "file", false)
	if !ok {
		return
	}
	if r.URL.Query().Get("overwrite") == "false" {
		if _, err := os.Stat(p); err == nil {
			plain(w, http.StatusConflict, "File already exists")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadSize))
	if err != nil {
		plain(w, http.StatusRequestEntityTooLarge, "")
		return
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		plain(w, http.StatusBadRequest, "Invalid filename. Please avoid special characters like :\\/*?\"<>|")
		return
	}
	s.userdataReply(w, r, p)
}

func (s *Server) handleDeleteUserdata(w http.ResponseWriter, r *http.Request) {
	p, ok := s.userDataPath(w, r, "file", true)
	if !ok {
		return
	}
	if os.Remove(p) != nil {
		internalError(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMoveUserdata(w http.ResponseWriter, r *http.Request) {
	src, ok := s.userDataPath(w, r, "file", true)
	if !ok {
		return
	}
	dst, ok := s.userDataPath(w, r, "dest", false)
	if !ok {
		return
	}
	if r.URL.Query().Get("overwrite") == "false" {
		if _, err := os.Stat(dst); err == nil {
			plain(w, http.StatusConflict, "File already exists")
			return
		}
	}
	if err := moveFile(src, dst); err != nil {
		internalError(w)
		return
	}
	s.userdataReply(w, r, dst)
}
