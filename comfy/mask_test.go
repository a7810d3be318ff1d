package comfy

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func textChunk(key, value string) []byte {
	data := append([]byte(key+"\x00"), value...)
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(c, "tEXt"...)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

func TestCompositeMask(t *testing.T) {
	orig := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	mask := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	for y := range 3 {
		for x := range 4 {
			orig.SetNRGBA(x, y, color.NRGBA{uint8(10 * x), uint8(20 * y), 200, 255})
			mask.SetNRGBA(x, y, color.NRGBA{0, 0, 0, uint8(60 * x)})
		}
	}
	// The original carries ComfyUI's workflow in a text chunk.
	raw := withTextChunks(encodePNG(t, orig), [][]byte{textChunk("workflow", `{"nodes":[]}`)})

	got, err := CompositeMask(raw, encodePNG(t, mask))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(got)) // checks every CRC
	if err != nil {
		t.Fatal(err)
	}
	for y := range 3 {
		for x := range 4 {
			want := color.NRGBA{uint8(10 * x), uint8(20 * y), 200, uint8(60 * x)}
			if c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA); c != want {
				t.Fatalf("pixel %d,%d = %v, want %v", x, y, c, want)
			}
		}
	}
	if tc := pngTextChunks(got); len(tc) != 1 || !bytes.Contains(tc[0], []byte(`{"nodes":[]}`)) {
		t.Errorf("text chunks of the result: %q", tc)
	}

	// A JPEG original has no alpha and no text: the mask gives it both alpha.
	var jb bytes.Buffer
	jpeg.Encode(&jb, orig, nil)
	if got, err := CompositeMask(jb.Bytes(), encodePNG(t, mask)); err != nil {
		t.Fatal(err)
	} else if img, _ := png.Decode(bytes.NewReader(got)); color.NRGBAModel.Convert(img.At(3, 0)).(color.NRGBA).A != 180 {
		t.Errorf("jpeg original: alpha not from the mask")
	}

	for name, c := range map[string][2][]byte{
		"another size": {raw, encodePNG(t, image.NewNRGBA(image.Rect(0, 0, 2, 2)))},
		"not an image": {[]byte("hello"), encodePNG(t, mask)},
		"bad mask":     {raw, []byte("\x89PNG\r\n\x1a\nbroken")},
	} {
		if _, err := CompositeMask(c[0], c[1]); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "another size" && !strings.Contains(err.Error(), "2x2") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
