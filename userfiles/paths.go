package userfiles

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"unicode/utf8"

	workshop "github.com/comfy-workshop/workshop"
)

const (
	// tmpPrefix names the temporary files of atomic writes. Names with it
	// are hidden from listings and refused as user paths.
	tmpPrefix = ".workshop-tmp-"
	maxParts  = 32   // path components in one user path
	maxPath   = 1024 // bytes in one user path
	maxName   = 255  // bytes in one component (NAME_MAX)
	dirPerm   = 0o750
	filePerm  = 0o640
)

var (
	errBadPath = errors.New("path not allowed")
	errSymlink = errors.New("path goes through a symbolic link")
	errNotDir  = errors.New("a parent of the path is not a folder")
)

// unquote decodes %XX escapes the way Python's urllib.parse.unquote does:
// malformed escapes stay as they are and invalid UTF-8 becomes U+FFFD.
func unquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// decodeSegment turns a raw, still escaped path segment into the name
// ComfyUI would use: aiohttp decodes the segment once while routing, then
// app/user_manager.py (get_request_user_filepath) unquotes it again when a
// "%" is left. So "workflows%2Fa.json" and "workflows%252Fa.json" both
// name workflows/a.json.
func decodeSegment(raw string) string {
	return unquoteAgain(unquote(raw))
}

// unquoteAgain is get_request_user_filepath's second decoding.
func unquoteAgain(s string) string {
	if strings.Contains(s, "%") {
		return unquote(s)
	}
	return s
}

// cleanRel checks a decoded user path and returns it in canonical form,
// relative to the participant's folder, with "/" separators ("" is the
// folder itself). Like ComfyUI it drops empty and "." components; unlike
// ComfyUI it refuses "..", absolute paths, backslashes, control characters
// and text-direction characters (NUL included), over-long names and the temporary-file prefix, so no
// spelling can leave the folder or name a hidden temporary file.
func cleanRel(p string) (string, error) {
	if len(p) > maxPath || !utf8.ValidString(p) {
		return "", errBadPath
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
		return "", errBadPath
	}
	if !workshop.SafeText(p) { // control and bidi characters
		return "", errBadPath
	}
	var parts []string
	for _, part := range strings.Split(p, "/") {
		switch {
		case part == "" || part == ".":
			continue
		case part == "..", len(part) > maxName, strings.HasPrefix(part, tmpPrefix):
			return "", errBadPath
		}
		parts = append(parts, part)
	}
	if len(parts) > maxParts {
		return "", errBadPath
	}
	return strings.Join(parts, "/"), nil
}

// fsName maps a canonical relative path to an os.Root name.
func fsName(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// resolve looks rel up inside root without following any symbolic link:
// every component is Lstat'ed, and a link anywhere answers errSymlink.
// With mkParents, missing parent folders are created (as ComfyUI does
// before a write). It returns the final component's Lstat info, or an
// error wrapping fs.ErrNotExist when it is missing. root confines every
// operation to the participant's folder even if a component changes
// between the check and the use.
func resolve(root *os.Root, rel string, mkParents bool) (fs.FileInfo, error) {
	if rel == "" {
		return root.Lstat(".")
	}
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) && mkParents {
			if err = root.Mkdir(p, dirPerm); err == nil || errors.Is(err, fs.ErrExist) {
				fi, err = root.Lstat(p)
			}
		}
		if err != nil {
			if isNotDirErr(err) {
				return nil, errNotDir
			}
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, errSymlink
		}
		if !fi.IsDir() {
			return nil, errNotDir
		}
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		if isNotDirErr(err) {
			return nil, errNotDir
		}
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, errSymlink
	}
	return fi, nil
}

// writeAtomic writes data to rel through a temporary file in the same
// folder that is fsynced and renamed over rel; the folder is fsynced too.
// A crash leaves the old file or the new one, never part of one.
func writeAtomic(root *os.Root, rel string, data []byte) error {
	dir := path.Dir(rel)
	tmp := path.Join(dir, tmpPrefix+randomHex())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return syncDir(root, dir)
}

// syncDir fsyncs a folder inside root so a rename or removal in it is durable.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func isNotDirErr(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
