package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
)

// Pictures are drawn, not generated: a gradient and a few discs whose
// colours and places come from a hash of the seed, the prompt text, the
// model names and the image's index in its batch. The same graph gives
// the same pixels, and the same PNG bytes, every time.

func hashBytes(parts ...any) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%v\x00", p)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// renderImage draws image index of an IMAGE value.
func renderImage(v *value, index int) *image.NRGBA {
	w, h := max(v.w, 1), max(v.h, 1)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	switch {
	case v.img != nil:
		draw.Draw(img, img.Bounds(), scaleNearest(v.img, w, h), image.Point{}, draw.Src)
	case v.color != nil:
		c := *v.color
		fill(img, color.NRGBA{uint8(c >> 16), uint8(c >> 8), uint8(c), 255})
	default:
		fill(img, color.NRGBA{128, 128, 128, 255}) // a decoded empty latent
	}
	if v.sampled {
		art := drawArt(w, h, hashBytes(v.seed, v.text, v.model, index))
		if v.img != nil || v.color != nil { // img2img: half source, half new
			blend(img, art)
		} else {
			img = art
		}
	}
	return img
}

func fill(img *image.NRGBA, c color.NRGBA) {
	p := img.Pix
	for i := 0; i < len(p); i += 4 {
		p[i], p[i+1], p[i+2], p[i+3] = c.R, c.G, c.B, c.A
	}
}

func blend(dst, src *image.NRGBA) {
	for i := range dst.Pix {
		dst.Pix[i] = uint8((uint16(dst.Pix[i]) + uint16(src.Pix[i])) / 2)
	}
}

func drawArt(w, h int, seed [32]byte) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	c1 := [3]int{int(seed[0]), int(seed[1]), int(seed[2])}
	c2 := [3]int{int(seed[3]), int(seed[4]), int(seed[5])}
	type disc struct {
		cx, cy, r2 int
		c          [3]uint8
	}
	n := 3 + int(seed[6])%4
	discs := make([]disc, n)
	minSide := min(w, h)
	for i := range discs {
		b := seed[7+i*4:]
		r := max(1, minSide/8+int(b[2])*minSide/(3*256))
		discs[i] = disc{cx: int(b[0]) * w / 256, cy: int(b[1]) * h / 256, r2: r * r,
			c: [3]uint8{b[3], b[3] ^ seed[30], b[3] ^ seed[31]}}
	}
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			t := (x + y) * 256 / (w + h)
			r := uint8((c1[0]*(256-t) + c2[0]*t) >> 8)
			g := uint8((c1[1]*(256-t) + c2[1]*t) >> 8)
			b := uint8((c1[2]*(256-t) + c2[2]*t) >> 8)
			for _, d := range discs {
				dx, dy := x-d.cx, y-d.cy
				if dx*dx+dy*dy <= d.r2 {
					r, g, b = d.c[0], d.c[1], d.c[2]
				}
			}
			i := x * 4
			row[i], row[i+1], row[i+2], row[i+3] = r, g, b, 255
		}
	}
	return img
}

func scaleNearest(src image.Image, w, h int) *image.NRGBA {
	dst := image.NewNRGBA(image.Rect(0, 0, max(w, 1), max(h, 1)))
	sb := src.Bounds()
	for y := 0; y < dst.Rect.Dy(); y++ {
		sy := sb.Min.Y + y*sb.Dy()/dst.Rect.Dy()
		for x := 0; x < dst.Rect.Dx(); x++ {
			sx := sb.Min.X + x*sb.Dx()/dst.Rect.Dx()
			dst.Set(x, y, src.At(sx, sy))
		}
	}
	return dst
}

// encodePNG writes a PNG with ComfyUI's metadata chunks ("prompt",
// "workflow"...) after the header, as PIL does.
func encodePNG(img image.Image, meta [][2]string) ([]byte, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	if len(meta) == 0 {
		return buf.Bytes(), nil
	}
	data := buf.Bytes()
	const ihdrEnd = 8 + 8 + 13 + 4 // signature, IHDR length+type, data, crc
	out := make([]byte, 0, len(data)+1024)
	out = append(out, data[:ihdrEnd]...)
	for _, kv := range meta {
		out = appendTextChunk(out, kv[0], kv[1])
	}
	return append(out, data[ihdrEnd:]...), nil
}

// appendTextChunk writes tEXt for Latin-1 text and iTXt (UTF-8) otherwise.
func appendTextChunk(out []byte, key, text string) []byte {
	typ, body := "tEXt", append([]byte(key+"\x00"), text...)
	for _, r := range text {
		if r > 0xff || r >= 0x80 {
			typ = "iTXt"
			body = append([]byte(key+"\x00\x00\x00\x00\x00"), text...)
			break
		}
	}
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)))
	copy(hdr[4:], typ)
	out = append(out, hdr[:]...)
	out = append(out, body...)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(body)
	return binary.BigEndian.AppendUint32(out, crc.Sum32())
}

// previewBase is the small final picture a sampler's previews fade into.
type previewBase struct {
	img   *image.NRGBA
	noise *image.NRGBA
}

const previewSize = 96

func newPreviewBase(v *value) *previewBase {
	w, h := max(v.w, 1), max(v.h, 1)
	scale := float64(previewSize) / float64(max(w, h))
	pw, ph := max(1, int(float64(w)*scale)), max(1, int(float64(h)*scale))
	small := *v
	small.w, small.h = pw, ph
	if small.img != nil {
		small.img = scaleNearest(small.img, pw, ph)
	}
	final := renderImage(&small, 0)
	return &previewBase{img: final, noise: drawArt(pw, ph, hashBytes("noise", v.seed))}
}

// jpeg renders the preview of a step: noise fading into the picture.
func (p *previewBase) jpeg(step, steps int) []byte {
	t := step * 256 / max(steps, 1)
	frame := image.NewNRGBA(p.img.Rect)
	for i := range frame.Pix {
		frame.Pix[i] = uint8((int(p.img.Pix[i])*t + int(p.noise.Pix[i])*(256-t)) >> 8)
	}
	var buf bytes.Buffer
	_ = jpeg.Encode(&buf, frame, &jpeg.Options{Quality: 95})
	return buf.Bytes()
}

// animatedGIF draws up to 24 small frames of a video.
func animatedGIF(v *value, fps float64, loops int) *gif.GIF {
	n := min(max(v.count(), 1), 24)
	w, h := max(v.w, 1), max(v.h, 1)
	scale := 128.0 / float64(max(w, h))
	if scale > 1 {
		scale = 1
	}
	small := *v
	small.w, small.h = max(1, int(float64(w)*scale)), max(1, int(float64(h)*scale))
	if small.img != nil {
		small.img = scaleNearest(small.img, small.w, small.h)
	}
	delay := 100 / 8
	if fps > 0 {
		delay = max(1, int(100/fps))
	}
	g := &gif.GIF{LoopCount: loops}
	for i := 0; i < n; i++ {
		frame := renderImage(&small, i)
		pal := image.NewPaletted(frame.Rect, palette.Plan9)
		draw.Draw(pal, pal.Rect, frame, image.Point{}, draw.Src)
		g.Image = append(g.Image, pal)
		g.Delay = append(g.Delay, delay)
	}
	return g
}

// fakeMP4 is a small, deterministic stand-in for an encoded video: an ISO
// BMFF "ftyp" box, a "free" box describing the video, and an "mdat" of
// bytes derived from it. Players will not play it; clients that store and
// serve files cannot tell.
func fakeMP4(v *value) []byte {
	var out []byte
	ftyp := append([]byte("isom\x00\x00\x02\x00"), "isomiso2avc1mp41"...)
	out = appendBox(out, "ftyp", ftyp)
	desc, _ := json.Marshal(map[string]any{"simulated": "comfysim", "width": v.w, "height": v.h,
		"frames": v.count(), "fps": v.fps, "audio": v.audio, "seed": v.seed, "text": v.text})
	out = appendBox(out, "free", desc)
	return appendBox(out, "mdat", pseudoBytes(hashBytes("mp4", string(desc)), min(4096+v.count()*1024, 1<<20)))
}

func fakeContainer(kind string, v *value) []byte {
	desc, _ := json.Marshal(map[string]any{"simulated": "comfysim", "kind": kind, "frames": v.count(), "seed": v.seed, "text": v.text})
	payload := append(desc, pseudoBytes(hashBytes(kind, string(desc)), 4096)...)
	if kind == "webp" {
		out := []byte("RIFF")
		out = binary.LittleEndian.AppendUint32(out, uint32(4+len(payload)))
		return append(append(out, "WEBP"...), payload...)
	}
	return append([]byte{0x1a, 0x45, 0xdf, 0xa3}, payload...) // EBML magic
}

func appendBox(out []byte, typ string, body []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(8+len(body)))
	out = append(out, typ...)
	return append(out, body...)
}

func pseudoBytes(seed [32]byte, n int) []byte {
	out := make([]byte, 0, n+32)
	block := seed
	for len(out) < n {
		block = sha256.Sum256(block[:])
		out = append(out, block[:]...)
	}
	return out[:n]
}
