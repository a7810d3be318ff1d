package store_test

import (
	"testing"

	"github.com/comfy-workshop/workshop/store"
)

func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"a.png": "image/png", "b.MP4": "video/mp4", "c.webm": "video/webm", "d.wav": "audio/wav",
		"e.html": "application/octet-stream", "f.svg": "application/octet-stream", "g.js": "application/octet-stream",
		"h": "application/octet-stream", "i.unknownext": "application/octet-stream",
	} {
		if got := store.ContentType(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}
