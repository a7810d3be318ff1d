package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	workshop "github.com/comfy-workshop/workshop"
)

// paceWrites turns on the paced writeback of saved files (a var for the
// benchmark that shows why).
var paceWrites = true

// Files keeps job outputs and participants' inputs on disk beside the bbolt
// file: DIR/<kind>/<user>/<group>/<name>. Every path part is checked, so no
// name from outside can leave its folder.
type Files struct {
	root string
}

// File kinds.
const (
	Outputs = "outputs"
	Inputs  = "inputs"
)

// NewFiles returns the file store under dir.
func NewFiles(dir string) (*Files, error) {
	for _, k := range []string{Outputs, Inputs} {
		if err := os.MkdirAll(filepath.Join(dir, k), 0o750); err != nil {
			return nil, err
		}
	}
	return &Files{root: dir}, nil
}

// SafeName reports whether name can be one path part: no separators, no
// dot-dot, no control or bidi characters, not hidden, at most 200 bytes.
func SafeName(name string) bool {
	if name == "" || len(name) > 200 || name == "." || name == ".." || strings.HasPrefix(name, ".") || !workshop.SafeText(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || r == ':' {
			return false
		}
	}
	return true
}

func (f *Files) path(kind, user, group, name string) (string, error) {
	if kind != Outputs && kind != Inputs {
		return "", workshop.Errorf(workshop.EINVALID, "unknown file kind %q", kind)
	}
	for _, p := range []string{user, group, name} {
		if !SafeName(p) {
			return "", workshop.Errorf(workshop.EINVALID, "file name %q is not allowed", p)
		}
	}
	return filepath.Join(f.root, kind, user, group, name), nil
}

// Saved describes a file written by Save.
type Saved struct {
	Size   int64
	SHA256 string
}

// Save writes r to kind/user/group/name through a temporary file that is
// fsynced and renamed into place, so a crash leaves the old file or the new
// one, never half of one. limit caps the size (0: none).
func (f *Files) Save(kind, user, group, name string, r io.Reader, limit int64) (Saved, error) {
	dst, err := f.path(kind, user, group, name)
	if err != nil {
		return Saved{}, err
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Saved{}, err
	}
	tmp, err := os.CreateTemp(dir, ".part-*")
	if err != nil {
		return Saved{}, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	src := r
	if limit > 0 {
		src = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(io.MultiWriter(newPacedWriter(tmp), h), src)
	if err == nil && limit > 0 && n > limit {
		err = workshop.Errorf(workshop.ETOOLARGE, "%s is larger than %d bytes", name, limit)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Saved{}, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return Saved{}, err
	}
	if err := syncDir(dir); err != nil {
		return Saved{}, err
	}
	return Saved{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open opens a stored file for reading. A symlink is refused: nothing in the
// store is a link unless someone put it there.
func (f *Files) Open(kind, user, group, name string) (*os.File, fs.FileInfo, error) {
	p, err := f.path(kind, user, group, name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, workshop.Errorf(workshop.ENOTFOUND, "file %s not found", name)
	}
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, workshop.Errorf(workshop.ENOTFOUND, "file %s not found", name)
	}
	file, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	return file, fi, nil
}

// RemoveGroup deletes one group folder (a job's outputs) and all in it.
func (f *Files) RemoveGroup(kind, user, group string) error {
	p, err := f.path(kind, user, group, "x")
	if err != nil {
		return err
	}
	return os.RemoveAll(filepath.Dir(p))
}

// InputRoot is the group of inputs uploaded without a subfolder.
const InputRoot = "_"

// InputGroup splits an input reference "sub/name" or "name" into the group
// and file name it is stored under.
func InputGroup(ref string) (group, name string) {
	if i := strings.LastIndex(ref, "/"); i > 0 {
		return ref[:i], ref[i+1:]
	}
	return InputRoot, ref
}

// List returns a participant's files of a kind as "group/name" references
// ("name" for InputRoot), sorted by group then name.
func (f *Files) List(kind, user string) ([]string, error) {
	if !SafeName(user) {
		return nil, workshop.Errorf(workshop.EINVALID, "bad user %q", user)
	}
	root := filepath.Join(f.root, kind, user)
	groups, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range groups {
		if !g.IsDir() || !SafeName(g.Name()) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, g.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range files {
			if !e.Type().IsRegular() || !SafeName(e.Name()) {
				continue
			}
			if g.Name() == InputRoot {
				out = append(out, e.Name())
			} else {
				out = append(out, g.Name()+"/"+e.Name())
			}
		}
	}
	return out, nil
}

// Usage is the bytes a participant's files of a kind take.
func (f *Files) Usage(kind, user string) (int64, error) {
	if !SafeName(user) {
		return 0, workshop.Errorf(workshop.EINVALID, "bad user %q", user)
	}
	var total int64
	err := filepath.WalkDir(filepath.Join(f.root, kind, user), func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if fi, err := d.Info(); err == nil {
			total += fi.Size()
		}
		return nil
	})
	return total, err
}

// PruneKind deletes files of a kind last changed before cutoff, and the
// folders left empty; it returns how many files went.
func (f *Files) PruneKind(kind string, cutoff time.Time) (int, error) {
	n := 0
	err := f.eachOlder(kind, cutoff, func(p string) {
		if os.Remove(p) == nil {
			n++
			os.Remove(filepath.Dir(p)) // fails unless empty
		}
	})
	return n, err
}

// CountOlder is how many files PruneKind would delete.
func (f *Files) CountOlder(kind string, cutoff time.Time) (int, error) {
	n := 0
	err := f.eachOlder(kind, cutoff, func(string) { n++ })
	return n, err
}

// eachOlder calls fn with every file of kind last changed before cutoff.
func (f *Files) eachOlder(kind string, cutoff time.Time, fn func(path string)) error {
	root := filepath.Join(f.root, kind)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			fn(p)
		}
		return nil
	})
}
