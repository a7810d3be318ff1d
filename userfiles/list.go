package userfiles

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// workflowsDir is the folder of the participant's tree where the frontend
// keeps saved workflows; the workshop workflows appear in its folder
// workshop/, which the workflows sidebar shows as a folder of its own and
// which participants cannot write to.
const (
	workflowsDir = "workflows"
	workshopDir  = workflowsDir + "/workshop"
)

// inWorkshop says whether rel is the workshop folder or under it.
func inWorkshop(rel string) bool {
	return rel == workshopDir || strings.HasPrefix(rel, workshopDir+"/")
}

// node is one entry of a participant's tree: a real file or folder in
// their folder, or a workshop workflow shown under workflows/workshop/.
type node struct {
	name  string
	rel   string // relative to the participant's folder
	dir   bool
	size  int64
	mod   time.Time
	ctime time.Time
	src   string // the workshop workflow's file; "" for the participant's own
}

// workshopName reports whether a file in a workshop folder is listed: a
// visible *.json file whose name is also a valid user path component.
func workshopName(name string) bool {
	if !strings.EqualFold(path.Ext(name), ".json") || strings.HasPrefix(name, ".") {
		return false
	}
	if len(name) > maxName || !utf8.ValidString(name) || strings.ContainsAny(name, "/\\") {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// workshop reads the workshop folders now (they are small), so files added
// while the server runs appear at once. The first folder wins a name.
func (s *Store) workshop() []node {
	var out []node
	seen := map[string]bool{}
	for _, d := range s.cfg.WorkflowDirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			s.log.Debug("userfiles: cannot read workshop workflows", "dir", d, "err", err)
			continue
		}
		for _, e := range ents {
			name := e.Name()
			if seen[name] || !workshopName(name) {
				continue
			}
			n, ok := workshopNode(filepath.Join(d, name))
			if !ok {
				continue
			}
			seen[name] = true
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// workshopFile returns the workshop workflow that rel names, if any.
func (s *Store) workshopFile(rel string) (node, bool) {
	name, ok := strings.CutPrefix(rel, workshopDir+"/")
	if !ok || !workshopName(name) {
		return node{}, false
	}
	for _, d := range s.cfg.WorkflowDirs {
		if n, ok := workshopNode(filepath.Join(d, name)); ok {
			return n, true
		}
	}
	return node{}, false
}

// workshopNode stats a workshop workflow. The workshop folders are the
// instructor's, so links in them are followed; the target must be a file.
func workshopNode(p string) (node, bool) {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return node{}, false
	}
	name := filepath.Base(p)
	return node{name: name, rel: workshopDir + "/" + name, size: fi.Size(), mod: fi.ModTime(), ctime: ctimeOf(fi), src: p}, true
}

// view is a participant's tree as the listing routes see it: their folder
// (root, nil when it does not exist yet) with the workshop workflows (ws)
// in workflows/workshop/. That folder is the workshop's alone: an entry of
// the participant's with its name (saved before it existed) is hidden.
type view struct {
	root *os.Root
	ws   []node
}

// kind of a path in a view.
const (
	missing = iota
	isDir
	isFile
)

// stat says what rel is in the view. Links in the participant's folder
// answer errSymlink.
func (v *view) stat(rel string) (int, error) {
	if rel == "" || (len(v.ws) > 0 && (rel == workflowsDir || rel == workshopDir)) {
		if rel == "" && v.root == nil && len(v.ws) == 0 {
			return missing, nil
		}
		return isDir, nil
	}
	if inWorkshop(rel) {
		for _, n := range v.ws {
			if n.rel == rel {
				return isFile, nil
			}
		}
		return missing, nil
	}
	if v.root == nil {
		return missing, nil
	}
	fi, err := resolve(v.root, rel, false)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, errNotDir):
		return missing, nil
	case err != nil:
		return missing, err
	case fi.IsDir():
		return isDir, nil
	case fi.Mode().IsRegular():
		return isFile, nil
	}
	return missing, nil // a device, socket or pipe is not shown
}

// children lists the folder rel (which stat found to be a folder), sorted
// by name. Links, special files and temporary files are left out.
func (v *view) children(rel string) ([]node, error) {
	if inWorkshop(rel) {
		if rel != workshopDir {
			return nil, nil
		}
		return append([]node(nil), v.ws...), nil
	}
	var out []node
	if v.root != nil {
		phys, err := v.physical(rel)
		if err != nil {
			return nil, err
		}
		out = phys
	}
	if len(v.ws) > 0 {
		switch rel {
		case "":
			out = slices.DeleteFunc(out, func(n node) bool { return n.name == workflowsDir && !n.dir })
			if !containsName(out, workflowsDir) {
				out = append(out, node{name: workflowsDir, rel: workflowsDir, dir: true})
			}
		case workflowsDir:
			out = slices.DeleteFunc(out, func(n node) bool { return n.rel == workshopDir })
			out = append(out, node{name: path.Base(workshopDir), rel: workshopDir, dir: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// physical lists the participant's own entries of folder rel.
func (v *view) physical(rel string) ([]node, error) {
	if rel != "" {
		fi, err := resolve(v.root, rel, false)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return nil, nil // only virtual
		}
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, nil
		}
	}
	d, err := v.root.Open(fsName(rel))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := make([]node, 0, len(ents))
	for _, e := range ents {
		t := e.Type()
		if t&fs.ModeSymlink != 0 || (!t.IsDir() && !t.IsRegular()) || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		fi, err := e.Info() // lstat
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, node{
			name:  e.Name(),
			rel:   path.Join(rel, e.Name()),
			dir:   fi.IsDir(),
			size:  fi.Size(),
			mod:   fi.ModTime(),
			ctime: ctimeOf(fi),
		})
	}
	return out, nil
}

// maxDepth bounds listing recursion; paths are at most maxParts deep.
const maxDepth = maxParts + 1

// globFiles lists the files under rel as Python's glob does for
// ComfyUI's GET /userdata: pattern rel/* or, with recurse, rel/**/*
// (pre-order, a folder's files before its subfolders'); names starting
// with "." are skipped, as glob skips them, and so are folders.
func (v *view) globFiles(rel string, recurse bool, depth int, fn func(node)) error {
	kids, err := v.children(rel)
	if err != nil {
		if depth > 0 {
			return nil // like glob and os.walk, skip a subfolder that cannot be read
		}
		return err
	}
	for _, k := range kids {
		if !k.dir && !strings.HasPrefix(k.name, ".") {
			fn(k)
		}
	}
	if !recurse || depth >= maxDepth {
		return nil
	}
	for _, k := range kids {
		if k.dir && !strings.HasPrefix(k.name, ".") {
			if err := v.globFiles(k.rel, true, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// walk visits rel's tree as os.walk(topdown=True) does for GET
// /v2/userdata: each folder's subfolders, then its files, then each
// subfolder's tree. Hidden names are included, as os.walk includes them.
func (v *view) walk(rel string, depth int, fn func(node)) error {
	kids, err := v.children(rel)
	if err != nil {
		if depth > 0 {
			return nil // like glob and os.walk, skip a subfolder that cannot be read
		}
		return err
	}
	for _, k := range kids {
		if k.dir {
			fn(k)
		}
	}
	for _, k := range kids {
		if !k.dir {
			fn(k)
		}
	}
	if depth >= maxDepth {
		return nil
	}
	for _, k := range kids {
		if k.dir {
			if err := v.walk(k.rel, depth+1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func containsName(ns []node, name string) bool {
	for _, n := range ns {
		if n.name == name {
			return true
		}
	}
	return false
}

// The listing routes follow app/user_manager.py: listuserdata (GET
// /userdata) and list_userdata_v2 (GET /v2/userdata).

// fileInfo is ComfyUI's get_file_info: times in integer milliseconds.
type fileInfo struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Modified int64  `json:"modified"`
	Created  int64  `json:"created"`
}

func queryTrue(c *fiber.Ctx, key string) bool { return strings.ToLower(c.Query(key)) == "true" }

// list is GET /userdata?dir=&recurse=&full_info=&split=.
func (h *handler) list(c *fiber.Ctx, user string) error {
	dir := c.Query("dir")
	if dir == "" {
		return sendText(c, fiber.StatusBadRequest, "Directory not provided")
	}
	rel, err := cleanRel(unquoteAgain(dir))
	if err != nil {
		return sendText(c, fiber.StatusForbidden, "Invalid directory")
	}
	recurse, fullInfo, split := queryTrue(c, "recurse"), queryTrue(c, "full_info"), queryTrue(c, "split")
	root, err := h.s.openUser(user, true)
	if err != nil {
		return h.openFail(c, err)
	}
	defer root.Close()
	v := &view{root: root, ws: h.s.workshop()}
	kind, err := v.stat(rel)
	if errors.Is(err, errSymlink) {
		return sendText(c, fiber.StatusForbidden, "Invalid directory")
	} else if err != nil {
		return h.internal(c, "list", err)
	}
	if kind == missing {
		return sendText(c, fiber.StatusNotFound, "Directory not found")
	}
	results := []any{}
	if kind == isDir {
		err = v.globFiles(rel, recurse, 0, func(n node) {
			r := relTo(n.rel, rel)
			switch {
			case fullInfo:
				results = append(results, fileInfo{Path: r, Size: n.size, Modified: n.mod.UnixMilli(), Created: n.ctime.UnixMilli()})
			case split:
				results = append(results, append([]string{r}, strings.Split(r, "/")...))
			default:
				results = append(results, r)
			}
		})
		if errors.Is(err, errSymlink) {
			return sendText(c, fiber.StatusForbidden, "Invalid directory")
		} else if err != nil {
			return h.internal(c, "list", err)
		}
	}
	return sendJSON(c, fiber.StatusOK, results)
}

func relTo(rel, base string) string {
	if base == "" {
		return rel
	}
	return strings.TrimPrefix(rel, base+"/")
}

// v2Entry is one item of GET /v2/userdata; size and modified (float
// seconds, os.stat's st_mtime) only for files.
type v2Entry struct {
	Name     string   `json:"name"`
	Path     string   `json:"path"`
	Type     string   `json:"type"`
	Size     *int64   `json:"size,omitempty"`
	Modified *float64 `json:"modified,omitempty"`
}

// listV2 is GET /v2/userdata?path=: the whole tree under path, folders
// first, then by lower-cased name.
func (h *handler) listV2(c *fiber.Ctx, user string) error {
	rel := ""
	if p := unquote(c.Query("path")); p != "" {
		var err error
		if rel, err = cleanRel(unquoteAgain(p)); err != nil {
			return sendText(c, fiber.StatusBadRequest, "Invalid path requested")
		}
	}
	root, err := h.s.openUser(user, false)
	if err != nil {
		return h.openFail(c, err)
	}
	if root != nil {
		defer root.Close()
	}
	v := &view{root: root, ws: h.s.workshop()}
	kind, err := v.stat(rel)
	if errors.Is(err, errSymlink) {
		return sendText(c, fiber.StatusBadRequest, "Invalid path requested")
	} else if err != nil {
		return h.internal(c, "list", err)
	}
	switch kind {
	case missing:
		if rel == "" {
			return sendJSON(c, fiber.StatusOK, []v2Entry{})
		}
		return sendText(c, fiber.StatusNotFound, "Requested path not found")
	case isFile:
		return sendText(c, fiber.StatusBadRequest, "Requested path is not a directory")
	}
	results := []v2Entry{}
	err = v.walk(rel, 0, func(n node) {
		e := v2Entry{Name: n.name, Path: n.rel, Type: "directory"}
		if !n.dir {
			size, mod := n.size, float64(n.mod.UnixNano())/1e9
			e.Type, e.Size, e.Modified = "file", &size, &mod
		}
		results = append(results, e)
	})
	if errors.Is(err, errSymlink) {
		return sendText(c, fiber.StatusBadRequest, "Invalid path requested")
	} else if err != nil {
		return sendText(c, fiber.StatusInternalServerError, "Error reading directory contents")
	}
	sort.SliceStable(results, func(i, j int) bool {
		di, dj := results[i].Type == "directory", results[j].Type == "directory"
		if di != dj {
			return di
		}
		return strings.ToLower(results[i].Name) < strings.ToLower(results[j].Name)
	})
	return sendJSON(c, fiber.StatusOK, results)
}

// WorkshopWorkflows lists the workshop workflows' file names, sorted, as
// every participant sees them in workflows/workshop/.
func (s *Store) WorkshopWorkflows() []string {
	var names []string
	for _, n := range s.workshop() {
		names = append(names, n.name)
	}
	return names
}

// HasWorkshopWorkflow reports whether name ("a.json") is a workshop
// workflow, as WorkshopWorkflows would list it, from that one file: a
// participant's every page load asks it of the default workflow.
func (s *Store) HasWorkshopWorkflow(name string) bool {
	_, ok := s.workshopFile(workshopDir + "/" + name)
	return ok
}

// OpenWorkshopFile opens a file of the workshop folders by its name: a
// workflow, or an image beside it (a template thumbnail). The first
// folder that has the name wins, as in the listings.
func (s *Store) OpenWorkshopFile(name string) (*os.File, error) {
	if !workshopName(strings.TrimSuffix(name, path.Ext(name))+".json") || name == "" || path.Ext(name) == "" {
		return nil, fs.ErrNotExist
	}
	for _, d := range s.cfg.WorkflowDirs {
		f, err := os.Open(filepath.Join(d, name))
		if err != nil {
			continue
		}
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return f, nil
		}
		f.Close()
	}
	return nil, fs.ErrNotExist
}
