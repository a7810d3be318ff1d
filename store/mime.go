package store

import (
	"mime"
	"path"
	"strings"
)

// ContentType is the type to serve a stored file as. Anything a browser
// would run (HTML, scripts, SVG) goes out as bytes, as ComfyUI does, so a
// participant's upload can never script the server's pages.
func ContentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".html", ".htm", ".js", ".mjs", ".css", ".svg", ".xml", ".xhtml":
		return "application/octet-stream"
	}
	// Go's built-in table lacks most media types; a host without
	// /etc/mime.types must still serve a video as a video.
	if t, ok := mediaTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

var mediaTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
	".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime",
	".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".json": "application/json",
}
