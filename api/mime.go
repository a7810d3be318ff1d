package api

import (
	"mime"
	"path"
	"strings"
)

// contentType is the type to serve a stored file as. Anything a browser
// would run (HTML, scripts, SVG) goes out as bytes, as ComfyUI does.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".html", ".htm", ".js", ".mjs", ".css", ".svg", ".xml", ".xhtml":
		return "application/octet-stream"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}
