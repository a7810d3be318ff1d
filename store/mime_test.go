package store_test

import (
	"strings"
	"testing"

	"github.com/comfy-workshop/workshop/store"
)

func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"a.png": "image/png", "b.MP4": "video/mp4", "c.webm": "video/webm", "d.wav": "audio/wav",
		"e.html": "application/octet-stream", "f.svg": "application/octet-stream", "g.js": "application/octet-stream",
		"h": "application/octet-stream", "i.unknownext": "application/octet-stream", "j.json": "application/octet-stream",
	} {
		if got := store.ContentType(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}

// Only media whose bytes are what the name says go inline; every type a
// browser would run or render as a page is a sandboxed download.
func TestDelivery(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	html := []byte("<html><script>fetch('/admin/session')</script>")
	cases := []struct {
		name   string
		head   []byte
		inline bool
		typ    string
	}{
		{"cat.png", png, true, "image/png"},
		{"cat.PNG", png, true, "image/png"},
		{"cat.png", html, false, ""},    // HTML named .png
		{"cat.jpg", png, false, ""},     // a PNG named .jpg: not what it claims
		{"cat.png", png[:4], false, ""}, // too short to tell
		{"clip.mp4", []byte("\x00\x00\x00\x20ftypisom"), true, "video/mp4"},
		{"clip.webm", []byte("\x1a\x45\xdf\xa3\x01"), true, "video/webm"},
		{"a.webp", []byte("RIFF\x10\x00\x00\x00WEBPVP8 "), true, "image/webp"},
		{"a.wav", []byte("RIFF\x10\x00\x00\x00WAVEfmt "), true, "audio/wav"},
		{"a.wav", []byte("RIFF\x10\x00\x00\x00WEBPVP8 "), false, ""},
		{"a.gif", []byte("GIF89a\x01\x00"), true, "image/gif"},
		{"a.mp3", []byte("ID3\x04\x00"), true, "audio/mpeg"},
		{"a.flac", []byte("fLaC\x00"), true, "audio/flac"},
	}
	for _, ext := range []string{".shtml", ".xht", ".xhtml", ".xsl", ".xsd", ".rdf", ".mml", ".jsm", ".js", ".mjs", ".html", ".htm", ".svg", ".xml", ".css", ".json", ".pdf", ".txt", ""} {
		cases = append(cases, struct {
			name   string
			head   []byte
			inline bool
			typ    string
		}{"cat" + ext, html, false, ""})
	}
	for _, c := range cases {
		d := store.DeliveryOf(c.name, c.head)
		h := d.Headers(c.name)
		if d.Inline != c.inline {
			t.Errorf("%s: inline %v, want %v", c.name, d.Inline, c.inline)
		}
		if h["X-Content-Type-Options"] != "nosniff" || !strings.Contains(h["Content-Security-Policy"], "sandbox") {
			t.Errorf("%s: headers %v", c.name, h)
		}
		if c.inline {
			if d.ContentType != c.typ || !strings.HasPrefix(h["Content-Disposition"], "inline;") {
				t.Errorf("%s: %v", c.name, h)
			}
			continue
		}
		if d.ContentType != "application/octet-stream" || !strings.HasPrefix(h["Content-Disposition"], "attachment;") {
			t.Errorf("%s: %v, want a download", c.name, h)
		}
	}
	// A name that would break the header is made safe; a non-ASCII one is
	// kept in RFC 5987 form too.
	if got := store.DeliveryOf("a\"b\r\n.png", png).Headers("a\"b\r\n.png")["Content-Disposition"]; strings.ContainsAny(got, "\r\n") || strings.Count(got, `"`) != 2 {
		t.Errorf("quoted name: %q", got)
	}
	if got := store.DeliveryOf("猫.png", png).Headers("猫.png")["Content-Disposition"]; !strings.Contains(got, "filename*=UTF-8''%E7%8C%AB.png") {
		t.Errorf("non-ASCII name: %q", got)
	}
}
