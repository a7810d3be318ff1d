package models

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Entry is one model file of a manifest.
type Entry struct {
	// Folder is the model folder under the models directory, e.g.
	// "checkpoints" or "loras/styles": slash-separated, relative, no "." or
	// ".." parts, no hidden parts.
	Folder string `json:"folder"`
	// File is the file name inside Folder: a plain name, no separator.
	File string `json:"file"`
	// URL is where to download it from (http or https).
	URL string `json:"url"`
	// SHA256 is the file's hash in lower-case hex; "" when the manifest has
	// none (the file is then only checked for presence and size).
	SHA256 string `json:"sha256,omitempty"`
	// Size is the file's size in bytes; 0 when the manifest has none.
	Size int64 `json:"size,omitempty"`
	// Line is the entry's line in the manifest, for messages.
	Line int `json:"-"`
}

// Path is the entry's path relative to the models directory, with slashes,
// e.g. "checkpoints/sd_xl_base_1.0.safetensors".
func (e Entry) Path() string { return path.Join(e.Folder, e.File) }

// KnownFolders are ComfyUI's standard model folders (folder_paths.py).
// Custom nodes add their own, so other folders are allowed; UnknownFolders
// names them so that a typo ("checkpoint") can be warned about.
var KnownFolders = []string{
	"audio_encoders", "checkpoints", "clip", "clip_vision", "configs", "controlnet",
	"diffusers", "diffusion_models", "embeddings", "gligen", "hypernetworks",
	"latent_upscale_models", "loras", "model_patches", "photomaker", "style_models",
	"text_encoders", "unet", "upscale_models", "vae", "vae_approx",
}

// UnknownFolders returns the top-level folders of entries that are not in
// KnownFolders, each once, in manifest order.
func UnknownFolders(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		top, _, _ := strings.Cut(e.Folder, "/")
		if !slices.Contains(KnownFolders, top) && !slices.Contains(out, top) {
			out = append(out, top)
		}
	}
	return out
}

// LoadManifest reads and validates a manifest file (see ParseManifest).
func LoadManifest(file string) ([]Entry, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("models manifest: %w", err)
	}
	return ParseManifest(data, file)
}

var manifestKeys = []string{"folder", "file", "url", "sha256", "size"}

// ParseManifest parses and validates a YAML manifest. The document is a list
// of entries, or a mapping whose only key, "models", holds that list:
//
//   - folder: checkpoints
//     file: sd_xl_base_1.0.safetensors
//     url: https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors
//     sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b
//     size: 6938078334   # optional, bytes
//
// Validation is strict: unknown or repeated keys, a folder or file that could
// leave the models directory, a URL that is not http(s), a hash that is not
// 64 hex digits, and two entries for the same path are errors. name (the
// file name) prefixes the messages; all problems are reported at once.
func ParseManifest(data []byte, name string) ([]Entry, error) {
	if name == "" {
		name = "manifest"
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty manifest: want a list of models (folder, file, url, sha256)", name)
	}
	root := doc.Content[0]
	if root.Kind == yaml.MappingNode {
		var list *yaml.Node
		for i := 0; i+1 < len(root.Content); i += 2 {
			k := root.Content[i]
			if k.Value != "models" || list != nil {
				return nil, fmt.Errorf("%s:%d: unexpected key %q: the manifest is a list of models, or a mapping with the one key \"models\"", name, k.Line, k.Value)
			}
			list = root.Content[i+1]
		}
		if list == nil {
			return nil, fmt.Errorf("%s:%d: no \"models\" list", name, root.Line)
		}
		root = list
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // "models:" with nothing after it
	}
	if root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a list of models (folder, file, url, sha256)", name, root.Line)
	}

	var errs []error
	var entries []Entry
	seen := map[string]int{} // path -> line
	for i, n := range root.Content {
		e, err := parseEntry(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: model %d: %w", name, n.Line, i+1, err))
			continue
		}
		key := strings.ToLower(e.Path()) // case-insensitive file systems
		if line, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: model %d: %s is already listed on line %d", name, n.Line, i+1, e.Path(), line))
			continue
		}
		seen[key] = n.Line
		entries = append(entries, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return entries, nil
}

func parseEntry(n *yaml.Node) (Entry, error) {
	e := Entry{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		return e, errors.New("want a mapping with folder, file, url and sha256")
	}
	var errs []string
	got := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(manifestKeys, k.Value) {
			errs = append(errs, fmt.Sprintf("unknown key %q (line %d; known: %s)", k.Value, k.Line, strings.Join(manifestKeys, ", ")))
			continue
		}
		if got[k.Value] {
			errs = append(errs, fmt.Sprintf("key %q given twice (line %d)", k.Value, k.Line))
			continue
		}
		got[k.Value] = true
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			errs = append(errs, fmt.Sprintf("%s: want a value (line %d)", k.Value, v.Line))
			continue
		}
		var err error
		switch k.Value {
		case "folder":
			e.Folder, err = cleanFolder(v.Value)
		case "file":
			e.File, err = cleanFile(v.Value)
		case "url":
			e.URL, err = checkURL(v.Value)
		case "sha256":
			e.SHA256, err = checkSHA256(v.Value)
		case "size":
			e.Size, err = strconv.ParseInt(v.Value, 10, 64)
			if err != nil || e.Size <= 0 {
				err = fmt.Errorf("%q: want a positive number of bytes", v.Value)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k.Value, err))
		}
	}
	for _, k := range []string{"folder", "file", "url"} {
		if !got[k] {
			errs = append(errs, fmt.Sprintf("%s is missing", k))
		}
	}
	if len(errs) > 0 {
		if e.Folder != "" && e.File != "" {
			return e, fmt.Errorf("%s: %s", e.Path(), strings.Join(errs, "; "))
		}
		return e, errors.New(strings.Join(errs, "; "))
	}
	return e, nil
}

// checkName checks one path part: not empty, not "." or "..", not hidden,
// no separator, colon or control character.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case s == "." || s == "..":
		return fmt.Errorf("%q would leave the models folder", s)
	case strings.HasPrefix(s, "."):
		return fmt.Errorf("%q: hidden names are not allowed", s)
	case strings.ContainsAny(s, `/\:`):
		return fmt.Errorf("%q: no '/', '\\' or ':' allowed", s)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%q: leading or trailing space", s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%q: control characters are not allowed", s)
	}
	return nil
}

func cleanFolder(s string) (string, error) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, `\`) || filepath.VolumeName(s) != "" {
		return "", fmt.Errorf("%q: want a folder relative to the models directory, e.g. checkpoints", s)
	}
	s = strings.TrimSuffix(s, "/")
	for part := range strings.SplitSeq(s, "/") {
		if err := checkName(part); err != nil {
			if part == s {
				return "", err
			}
			return "", fmt.Errorf("%q: %v", s, err)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(s)) {
		return "", fmt.Errorf("%q would leave the models folder", s)
	}
	return s, nil
}

func cleanFile(s string) (string, error) {
	if err := checkName(s); err != nil {
		return "", fmt.Errorf("want a plain file name: %v", err)
	}
	if strings.HasSuffix(s, partSuffix) {
		return "", fmt.Errorf("%q: names ending in %s are the downloader's partial files", s, partSuffix)
	}
	if !filepath.IsLocal(s) {
		return "", fmt.Errorf("%q is not a plain file name", s)
	}
	return s, nil
}

func checkURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: want an http:// or https:// URL", redactURL(s))
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q: no host", redactURL(s))
	}
	return s, nil
}

func checkSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	if len(s) != 64 {
		return "", fmt.Errorf("%q: want 64 hex digits, got %d characters", s, len(s))
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("%q: want 64 hex digits", s)
	}
	return s, nil
}

// secretParams are query parameters whose values redactURL hides.
var secretParams = []string{"token", "key", "sig", "secret", "auth", "password", "credential"}

// redactURL hides a URL's password and the values of query parameters that
// look like secrets (token=, X-Amz-Signature=, ...), for logs and messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			lk := strings.ToLower(k)
			for _, s := range secretParams {
				if strings.Contains(lk, s) {
					q[k] = []string{"xxxxx"}
					changed = true
					break
				}
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}
