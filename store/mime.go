package store

import (
	"bytes"
	"io"
	"net/url"
	"path"
	"strings"
)

// Stored files (participants' uploads, what GPU hosts send back) are
// served on the instructor's origin, so a browser must never run them: only
// the media types below are shown inline, and only when the file's first
// bytes are what its name claims; everything else is a download, sandboxed.

// media is one type shown inline: its MIME type and a check of its first
// bytes.
type media struct {
	mime  string
	magic func(head []byte) bool
}

func prefix(p string) func([]byte) bool {
	return func(h []byte) bool { return bytes.HasPrefix(h, []byte(p)) }
}

// riff matches a RIFF container of the given form ("WEBP", "WAVE").
func riff(form string) func([]byte) bool {
	return func(h []byte) bool { return len(h) >= 12 && string(h[:4]) == "RIFF" && string(h[8:12]) == form }
}

// isoBMFF matches an MP4/QuickTime/AVIF file: a box of type ftyp first.
func isoBMFF(h []byte) bool { return len(h) >= 12 && string(h[4:8]) == "ftyp" }

func gifMagic(h []byte) bool {
	return bytes.HasPrefix(h, []byte("GIF87a")) || bytes.HasPrefix(h, []byte("GIF89a"))
}

func mp3(h []byte) bool {
	return bytes.HasPrefix(h, []byte("ID3")) || len(h) >= 2 && h[0] == 0xff && h[1]&0xe0 == 0xe0
}

var inlineMedia = map[string]media{
	".png":  {"image/png", prefix("\x89PNG\r\n\x1a\n")},
	".jpg":  {"image/jpeg", prefix("\xff\xd8\xff")},
	".jpeg": {"image/jpeg", prefix("\xff\xd8\xff")},
	".gif":  {"image/gif", gifMagic},
	".webp": {"image/webp", riff("WEBP")},
	".avif": {"image/avif", isoBMFF},
	".mp4":  {"video/mp4", isoBMFF},
	".m4v":  {"video/mp4", isoBMFF},
	".mov":  {"video/quicktime", isoBMFF},
	".webm": {"video/webm", prefix("\x1a\x45\xdf\xa3")},
	".wav":  {"audio/wav", riff("WAVE")},
	".mp3":  {"audio/mpeg", mp3},
	".flac": {"audio/flac", prefix("fLaC")},
	".ogg":  {"audio/ogg", prefix("OggS")},
	".opus": {"audio/ogg", prefix("OggS")},
	".m4a":  {"audio/mp4", isoBMFF},
}

// SniffLen is how many first bytes of a file Delivery looks at.
const SniffLen = 16

// ContentType is the type a stored file is listed as (in galleries and the
// extension): its media type when inline media, else
// application/octet-stream.
func ContentType(name string) string {
	if m, ok := inlineMedia[strings.ToLower(path.Ext(name))]; ok {
		return m.mime
	}
	return "application/octet-stream"
}

// Delivery is how to send one stored file to a browser.
type Delivery struct {
	ContentType string
	Inline      bool
}

// DeliveryOf decides it from the file's name and its first bytes (at least
// SniffLen of them, or the whole file): inline only for media whose bytes
// match the type their extension names.
func DeliveryOf(name string, head []byte) Delivery {
	if m, ok := inlineMedia[strings.ToLower(path.Ext(name))]; ok && m.magic(head) {
		return Delivery{ContentType: m.mime, Inline: true}
	}
	return Delivery{ContentType: "application/octet-stream"}
}

// DeliveryOfFile is DeliveryOf with the first bytes read from f.
func DeliveryOfFile(f io.ReaderAt, name string) Delivery {
	head := make([]byte, SniffLen)
	n, _ := f.ReadAt(head, 0)
	return DeliveryOf(name, head[:n])
}

// Headers are the response headers of d for a file called name. A
// download also gets a sandbox policy, so even a browser that renders it
// runs nothing on this origin; every answer is nosniff.
func (d Delivery) Headers(name string) map[string]string {
	h := map[string]string{
		"Content-Type":           d.ContentType,
		"X-Content-Type-Options": "nosniff",
	}
	if d.Inline {
		h["Content-Disposition"] = "inline; " + dispositionName(name)
		h["Content-Security-Policy"] = "sandbox"
	} else {
		h["Content-Disposition"] = "attachment; " + dispositionName(name)
		h["Content-Security-Policy"] = "default-src 'none'; sandbox"
	}
	return h
}

// dispositionName is the filename parameters of a Content-Disposition: an
// ASCII fallback, and the exact name in RFC 5987 form when it is not ASCII.
func dispositionName(name string) string {
	ascii := true
	safe := strings.Map(func(r rune) rune {
		switch {
		case r > 0x7e:
			ascii = false
			return '_'
		case r < 0x20 || r == 0x7f || r == '"' || r == '\\':
			return '_'
		}
		return r
	}, name)
	out := `filename="` + safe + `"`
	if !ascii {
		out += "; filename*=UTF-8''" + url.PathEscape(name)
	}
	return out
}
