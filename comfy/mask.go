package comfy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif"  // originals in any format LoadImage reads that Go decodes
	_ "image/jpeg" // (PNG is imported below)
	"image/png"
)

// CompositeMask is what ComfyUI's /upload/mask stores: the original image
// with the mask's alpha channel as its own alpha, as a PNG that keeps the
// original's PNG text chunks (ComfyUI's embedded prompt and workflow).
// Like PIL's putalpha, it refuses a mask of another size.
func CompositeMask(original, mask []byte) ([]byte, error) {
	orig, _, err := image.Decode(bytes.NewReader(original))
	if err != nil {
		return nil, fmt.Errorf("original image: %w", err)
	}
	m, _, err := image.Decode(bytes.NewReader(mask))
	if err != nil {
		return nil, fmt.Errorf("mask: %w", err)
	}
	ob, mb := orig.Bounds(), m.Bounds()
	if ob.Dx() != mb.Dx() || ob.Dy() != mb.Dy() {
		return nil, fmt.Errorf("the mask is %dx%d but the image is %dx%d", mb.Dx(), mb.Dy(), ob.Dx(), ob.Dy())
	}
	// Non-premultiplied, as PIL's RGBA: colour under a transparent pixel of
	// the original survives when the mask makes it opaque again.
	out, ok := orig.(*image.NRGBA)
	if ok {
		out = &image.NRGBA{Pix: bytes.Clone(out.Pix), Stride: out.Stride, Rect: out.Rect}
	} else {
		out = image.NewNRGBA(ob)
		draw.Draw(out, ob, orig, ob.Min, draw.Src)
	}
	for y := 0; y < ob.Dy(); y++ {
		row := out.Pix[y*out.Stride:]
		for x := 0; x < ob.Dx(); x++ {
			row[x*4+3] = color.NRGBAModel.Convert(m.At(mb.Min.X+x, mb.Min.Y+y)).(color.NRGBA).A
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return nil, err
	}
	return withTextChunks(buf.Bytes(), pngTextChunks(original)), nil
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// pngTextChunks returns the tEXt, zTXt and iTXt chunks of a PNG, whole
// (length, type, data, CRC); none for anything else.
func pngTextChunks(b []byte) [][]byte {
	if !bytes.HasPrefix(b, pngSignature) {
		return nil
	}
	var out [][]byte
	for rest := b[len(pngSignature):]; len(rest) >= 12; {
		n := binary.BigEndian.Uint32(rest)
		if uint64(n)+12 > uint64(len(rest)) {
			break
		}
		chunk := rest[:12+n]
		switch string(chunk[4:8]) {
		case "tEXt", "zTXt", "iTXt":
			out = append(out, chunk)
		case "IEND":
			return out
		}
		rest = rest[12+n:]
	}
	return out
}

// withTextChunks inserts chunks into an encoded PNG right after its IHDR
// chunk (where PIL puts them).
func withTextChunks(encoded []byte, chunks [][]byte) []byte {
	if len(chunks) == 0 {
		return encoded
	}
	at := len(pngSignature) + 12 + int(binary.BigEndian.Uint32(encoded[len(pngSignature):]))
	out := make([]byte, 0, len(encoded)+len(bytes.Join(chunks, nil)))
	out = append(out, encoded[:at]...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, encoded[at:]...)
}
