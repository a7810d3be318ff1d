package sim

import (
	"encoding/json"
	"fmt"
	"image"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/comfy-workshop/workshop/comfy"
)

// value is what flows along a link in the simulation. Instead of tensors
// it carries what determines the picture: size, seed, prompt text, model,
// and source pixels when there are any.
type value struct {
	typ                 string
	w, h, batch, frames int
	seed                uint64
	hasSeed, sampled    bool
	text, model         string
	color               *uint32
	img                 image.Image
	fps                 float64
	audio               bool
	steps               int
	scalar              any // INT, FLOAT, STRING, BOOLEAN outputs
	files               []string
}

// count is how many images an IMAGE value holds (video frames included).
func (v *value) count() int {
	n := max(v.batch, 1)
	if v.frames > 0 {
		n *= v.frames
	}
	return n
}

type runFunc func(x *nodeCtx) (*nodeRun, error)

type nodeRun struct {
	outputs []*value
	ui      comfy.NodeOutput
}

// nodeCtx is what a node's run function sees.
type nodeCtx struct {
	r    *runState
	id   string
	node comfy.Node
	def  *nodeDef
}

func (x *nodeCtx) server() *Server { return x.r.e.s }

// link returns the value on a linked input, or nil.
func (x *nodeCtx) link(name string) *value {
	src, idx, ok := comfy.AsLink(x.node.Inputs[name])
	if !ok {
		return nil
	}
	outs := x.r.results[src]
	if idx < 0 || idx >= len(outs) {
		return nil
	}
	return outs[idx]
}

// arg returns a widget value, following a link to a primitive node.
func (x *nodeCtx) arg(name string) any {
	if v := x.link(name); v != nil {
		return v.scalar
	}
	return x.node.Inputs[name]
}

func (x *nodeCtx) int(name string, def int64) int64 {
	switch n := x.arg(name).(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return int64(u)
		}
		if f, err := n.Float64(); err == nil {
			return int64(f)
		}
	case float64:
		return int64(n)
	case int64:
		return n
	}
	return def
}

func (x *nodeCtx) uint(name string) (uint64, bool) {
	switch n := x.arg(name).(type) {
	case json.Number:
		if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return u, true
		}
		if i, err := n.Int64(); err == nil {
			return uint64(i), true
		}
	case float64:
		return uint64(n), true
	case int64:
		return uint64(n), true
	}
	return 0, false
}

func (x *nodeCtx) float(name string, def float64) float64 {
	switch n := x.arg(name).(type) {
	case json.Number:
		if f, err := n.Float64(); err == nil {
			return f
		}
	case float64:
		return n
	case int64:
		return float64(n)
	}
	return def
}

func (x *nodeCtx) str(name, def string) string {
	if s, ok := x.arg(name).(string); ok {
		return s
	}
	return def
}

func (x *nodeCtx) boolean(name string, def bool) bool {
	if b, ok := x.arg(name).(bool); ok {
		return b
	}
	return def
}

// merged combines the values on every linked input except "negative"
// (a negative prompt should not change what the picture shows).
func (x *nodeCtx) merged() *value {
	m := &value{}
	for _, in := range append(append([]inputDef{}, x.def.required...), x.def.optional...) {
		if in.name == "negative" {
			continue
		}
		v := x.link(in.name)
		if v == nil {
			continue
		}
		if m.w == 0 && v.w > 0 {
			m.w, m.h = v.w, v.h
		}
		if m.batch == 0 {
			m.batch = v.batch
		}
		if m.frames == 0 {
			m.frames = v.frames
		}
		if !m.hasSeed && v.hasSeed {
			m.seed, m.hasSeed = v.seed, true
		}
		m.sampled = m.sampled || v.sampled
		m.text = joinNonEmpty(m.text, v.text)
		m.model = joinNonEmpty(m.model, v.model)
		if m.color == nil {
			m.color = v.color
		}
		if m.img == nil {
			m.img = v.img
		}
		if m.fps == 0 {
			m.fps = v.fps
		}
		m.audio = m.audio || v.audio
		if m.steps == 0 {
			m.steps = v.steps
		}
	}
	return m
}

func joinNonEmpty(a, b string) string {
	switch {
	case b == "" || a == b:
		return a
	case a == "":
		return b
	}
	return a + "\n" + b
}

// currentInputs is execution_error's current_inputs: widget values as
// one-element lists, links as [None] (ComfyUI formats tensors as text).
func (x *nodeCtx) currentInputs() map[string]any {
	out := map[string]any{}
	for name, v := range x.node.Inputs {
		if _, _, ok := comfy.AsLink(v); ok {
			out[name] = []any{nil}
			continue
		}
		out[name] = []any{v}
	}
	return out
}

func (x *nodeCtx) typed(v *value) []*value {
	outs := make([]*value, len(x.def.outputs))
	for i, o := range x.def.outputs {
		c := *v
		c.typ = o.typ
		outs[i] = &c
	}
	return outs
}

// runPassThrough is the default: outputs carry what came in, plus a seed
// or step count given as a widget.
func runPassThrough(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	if seed, ok := x.uint("noise_seed"); ok {
		v.seed, v.hasSeed = seed, true
	}
	if steps := x.int("steps", 0); steps > 0 {
		v.steps = int(steps)
	}
	if sig, ok := x.arg("sigmas").(string); ok && v.steps == 0 {
		v.steps = max(len(strings.Split(sig, ","))-1, 1)
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runLoader(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	for _, in := range x.def.required {
		if in.folder != nil {
			v.model = joinNonEmpty(v.model, x.str(in.name, ""))
		}
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runTextEncode(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	v.text = joinNonEmpty(v.text, x.str("text", ""))
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runPrimitive(x *nodeCtx) (*nodeRun, error) {
	v := &value{scalar: x.arg("value")}
	if s, ok := v.scalar.(string); ok {
		v.text = s
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runEmptyLatent(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	v.w, v.h = int(x.int("width", 512)), int(x.int("height", 512))
	v.batch = int(x.int("batch_size", 1))
	if l := x.int("length", 0); l > 0 {
		v.frames = int(l)
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runEmptyImage(x *nodeCtx) (*nodeRun, error) {
	v := &value{w: int(x.int("width", 512)), h: int(x.int("height", 512)), batch: int(x.int("batch_size", 1))}
	c := uint32(x.int("color", 0)) & 0xFFFFFF
	v.color = &c
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runLatentUpsample(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	v.w, v.h = v.w*2, v.h*2
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runAudioDecode(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	v.audio = true
	return &nodeRun{outputs: x.typed(v)}, nil
}

// runSampler stands for KSampler and SamplerCustomAdvanced: it takes its
// steps (with progress and previews) and marks the latent as sampled.
func runSampler(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	if seed, ok := x.uint("seed"); ok {
		v.seed, v.hasSeed = seed, true
	}
	steps := x.server().cfg.Steps
	if steps == 0 {
		steps = int(x.int("steps", 0))
	}
	if steps == 0 {
		steps = v.steps
	}
	if steps == 0 {
		steps = 20
	}
	v.sampled = true
	if err := x.sample(steps, v); err != nil {
		return nil, err
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runDecode(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	return &nodeRun{outputs: x.typed(v)}, nil
}

// runEncode is VAEEncode: the image becomes a latent that keeps its pixels
// (an img2img source).
func runEncode(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	if v.img == nil && v.color == nil && v.w > 0 {
		v.img = renderImage(v, 0)
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}

func runImageSize(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	outs := []*value{
		{typ: "INT", scalar: json.Number(strconv.Itoa(v.w))},
		{typ: "INT", scalar: json.Number(strconv.Itoa(v.h))},
		{typ: "INT", scalar: json.Number(strconv.Itoa(max(v.count(), 1)))},
	}
	return &nodeRun{outputs: outs}, nil
}

func runImageScale(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	w, h := int(x.int("width", 512)), int(x.int("height", 512))
	if w == 0 && h == 0 {
		return &nodeRun{outputs: x.typed(v)}, nil
	}
	if w == 0 && v.h > 0 {
		w = max(1, int(math.Round(float64(v.w)*float64(h)/float64(v.h))))
	} else if h == 0 && v.w > 0 {
		h = max(1, int(math.Round(float64(v.h)*float64(w)/float64(v.w))))
	}
	return &nodeRun{outputs: x.typed(resized(v, w, h))}, nil
}

func runImageScaleBy(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	f := x.float("scale_by", 1)
	w, h := max(1, int(math.Round(float64(v.w)*f))), max(1, int(math.Round(float64(v.h)*f)))
	return &nodeRun{outputs: x.typed(resized(v, w, h))}, nil
}

func resized(v *value, w, h int) *value {
	c := *v
	if c.img == nil && c.sampled {
		// Keep the picture: render it at the old size, then scale it.
		c.img = renderImage(v, 0)
	}
	c.w, c.h = w, h
	if c.img != nil {
		c.img = scaleNearest(c.img, w, h)
	}
	return &c
}

func runLoadImage(x *nodeCtx) (*nodeRun, error) {
	name := x.str("image", "")
	path, ok := x.server().annotatedPath(name, "input")
	if !ok {
		return nil, &execError{excType: "FileNotFoundError", msg: fmt.Sprintf("[Errno 2] No such file or directory: '%s'", name), inputs: x.currentInputs()}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &execError{excType: "FileNotFoundError", msg: fmt.Sprintf("[Errno 2] No such file or directory: '%s'", path), inputs: x.currentInputs()}
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, &execError{excType: "PIL.UnidentifiedImageError", msg: fmt.Sprintf("cannot identify image file '%s'", path), inputs: x.currentInputs()}
	}
	b := img.Bounds()
	v := &value{w: b.Dx(), h: b.Dy(), batch: 1, img: img, text: name}
	mask := *v
	return &nodeRun{outputs: []*value{withType(v, "IMAGE"), withType(&mask, "MASK")}}, nil
}

func withType(v *value, typ string) *value { v.typ = typ; return v }

func runCreateVideo(x *nodeCtx) (*nodeRun, error) {
	v := x.merged()
	v.fps = x.float("fps", 30)
	if x.link("audio") != nil {
		v.audio = true
	}
	return &nodeRun{outputs: x.typed(v)}, nil
}
