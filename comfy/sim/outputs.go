package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/gif"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// sample runs a sampler's steps: each one waits StepDelay, checks for an
// interrupt, and sends progress_state, a preview and progress in ComfyUI's
// order (type-4 preview before progress to clients that asked for
// metadata, type-1 after it to everyone else).
func (x *nodeCtx) sample(steps int, v *value) error {
	r := x.r
	s := x.server()
	if r.faults.ProgressText {
		s.hub.send(r.sid, wsFrame{binary: true, data: comfy.EncodeProgressText(x.id, fmt.Sprintf("Sampling %d steps", steps))})
	}
	var base *previewBase
	for step := 1; step <= steps; step++ {
		if s.cfg.StepDelay > 0 && !r.wait(s.cfg.StepDelay) {
			return errInterrupted
		}
		if r.e.interrupted() {
			return errInterrupted
		}
		r.progress.update(x.id, float64(step), float64(steps))
		r.sendProgressState()
		var jpg []byte
		if s.hub.count() > 0 { // nobody to show a preview to: skip the work
			if base == nil {
				base = newPreviewBase(v)
			}
			jpg = base.jpeg(step, steps)
		}
		meta := r.sid != nil && s.hub.lookup(*r.sid) != nil && s.hub.lookup(*r.sid).supportsPreviewMetadata()
		if jpg != nil && meta {
			frame, err := comfy.EncodePreviewImageWithMetadata(jsonobj.Of(
				"node_id", x.id, "prompt_id", r.j.id, "display_node_id", x.id, "parent_node_id", nil,
				"real_node_id", x.id, "image_type", "image/jpeg",
			), jpg)
			if err == nil {
				s.hub.send(r.sid, wsFrame{binary: true, data: frame})
			}
		}
		s.hub.sendJSON(r.sid, comfy.EventProgress, jsonobj.Of("value", step, "max", steps, "prompt_id", r.j.id, "node", x.id))
		if jpg != nil && !meta {
			s.hub.send(r.sid, wsFrame{binary: true, data: comfy.EncodePreviewImage(comfy.ImageJPEG, jpg)})
		}
		if r.faults.DropWSAtStep == step && !r.dropped {
			r.dropped = true
			n := s.hub.dropAll()
			s.log.Info("drop-ws fault: sockets cut", "prompt_id", r.j.id, "step", step, "sockets", n)
		}
	}
	return nil
}

// savePath is folder_paths.get_save_image_path: the folder, the base name
// and the next free counter for a filename prefix.
func savePath(outputDir, prefix string, w, h int) (folder, name string, counter int, subfolder string, err error) {
	if strings.Contains(prefix, "%") {
		now := time.Now()
		prefix = strings.NewReplacer(
			"%width%", strconv.Itoa(w), "%height%", strconv.Itoa(h),
			"%year%", strconv.Itoa(now.Year()), "%month%", fmt.Sprintf("%02d", int(now.Month())),
			"%day%", fmt.Sprintf("%02d", now.Day()), "%hour%", fmt.Sprintf("%02d", now.Hour()),
			"%minute%", fmt.Sprintf("%02d", now.Minute()), "%second%", fmt.Sprintf("%02d", now.Second()),
		).Replace(prefix)
	}
	clean := filepath.Clean(prefix)
	subfolder, name = filepath.Dir(clean), filepath.Base(clean)
	if subfolder == "." {
		subfolder = ""
	}
	folder = filepath.Join(outputDir, subfolder)
	if !within(outputDir, folder) {
		return "", "", 0, "", fmt.Errorf("**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: %s\n         output_dir: %s", folder, outputDir)
	}
	entries, err := os.ReadDir(folder)
	if err != nil {
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return "", "", 0, "", err
		}
		return folder, name, 1, subfolder, nil
	}
	counter = 1
	for _, e := range entries {
		f := e.Name()
		if len(f) <= len(name) || f[len(name)] != '_' || !strings.EqualFold(f[:len(name)], name) {
			continue
		}
		digits, _ := strconv.Atoi(strings.SplitN(f[len(name)+1:], "_", 2)[0])
		if digits+1 > counter {
			counter = digits + 1
		}
	}
	return folder, name, counter, subfolder, nil
}

// writeAtomic writes a file under a temporary name and renames it, so
// /view never serves half a file.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp-comfysim"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func fileRef(filename, subfolder, typ string) map[string]any {
	return map[string]any{"filename": filename, "subfolder": subfolder, "type": typ}
}

func uiOutput(kv ...any) comfy.NodeOutput {
	out := comfy.NodeOutput{}
	for i := 0; i+1 < len(kv); i += 2 {
		b, _ := json.Marshal(kv[i+1])
		out[kv[i].(string)] = b
	}
	return out
}

func (x *nodeCtx) pngMetadata() [][2]string {
	if x.server().cfg.DisableMetadata {
		return nil
	}
	meta := [][2]string{{"prompt", string(x.r.j.raw)}}
	if pnginfo, ok := x.r.j.extra["extra_pnginfo"].(map[string]any); ok {
		for _, k := range sortedKeys(pnginfo) {
			b, _ := json.Marshal(pnginfo[k])
			meta = append(meta, [2]string{k, string(b)})
		}
	}
	return meta
}

func (x *nodeCtx) saveImages(dir, typ, prefix string, v *value) (*nodeRun, error) {
	folder, name, counter, subfolder, err := savePath(dir, prefix, v.w, v.h)
	if err != nil {
		return nil, &execError{excType: "Exception", msg: err.Error(), inputs: x.currentInputs()}
	}
	var results []any
	meta := x.pngMetadata()
	for i := 0; i < v.count(); i++ {
		file := fmt.Sprintf("%s_%05d_.png", strings.ReplaceAll(name, "%batch_num%", strconv.Itoa(i)), counter)
		data, err := encodePNG(renderImage(v, i), meta)
		if err == nil {
			err = writeAtomic(filepath.Join(folder, file), data)
		}
		if err != nil {
			return nil, &execError{excType: "OSError", msg: err.Error(), inputs: x.currentInputs()}
		}
		results = append(results, fileRef(file, filepath.ToSlash(subfolder), typ))
		counter++
	}
	if results == nil {
		results = []any{}
	}
	return &nodeRun{ui: uiOutput("images", results)}, nil
}

func runSaveImage(x *nodeCtx) (*nodeRun, error) {
	v := x.link("images")
	if v == nil {
		v = &value{}
	}
	return x.saveImages(x.server().cfg.OutputDir, "output", x.str("filename_prefix", "ComfyUI"), v)
}

// runPreviewImage saves to temp as ComfyUI_temp_xxxxx_NNNNN_.png; the five
// letters are random in ComfyUI, derived from the prompt here.
func runPreviewImage(x *nodeCtx) (*nodeRun, error) {
	v := x.link("images")
	if v == nil {
		v = &value{}
	}
	letters := "abcdefghijklmnopqrstupvxyz" // sic: ComfyUI's alphabet
	h := hashBytes(x.r.j.id, x.id)
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = letters[int(h[i])%len(letters)]
	}
	return x.saveImages(x.server().cfg.TempDir, "temp", "ComfyUI_temp_"+string(suffix), v)
}

// runSaveVideo is ComfyUI's SaveVideo: one .mp4 reported, like every core
// video node, under "images" with "animated": [true].
func runSaveVideo(x *nodeCtx) (*nodeRun, error) {
	v := x.link("video")
	if v == nil {
		v = &value{}
	}
	folder, name, counter, subfolder, err := savePath(x.server().cfg.OutputDir, x.str("filename_prefix", "video/ComfyUI"), v.w, v.h)
	if err != nil {
		return nil, &execError{excType: "Exception", msg: err.Error(), inputs: x.currentInputs()}
	}
	file := fmt.Sprintf("%s_%05d_.mp4", name, counter)
	if err := writeAtomic(filepath.Join(folder, file), fakeMP4(v)); err != nil {
		return nil, &execError{excType: "OSError", msg: err.Error(), inputs: x.currentInputs()}
	}
	return &nodeRun{ui: uiOutput("images", []any{fileRef(file, filepath.ToSlash(subfolder), "output")}, "animated", []bool{true})}, nil
}

// runVideoCombine is Video Helper Suite's VHS_VideoCombine: it reports
// under "gifs" with format, frame_rate, workflow and fullpath, names files
// prefix_NNNNN.ext, and writes a real animated GIF for image/gif.
func runVideoCombine(x *nodeCtx) (*nodeRun, error) {
	v := x.link("images")
	if v == nil {
		v = &value{}
	}
	s := x.server()
	dir, typ := s.cfg.OutputDir, "output"
	if !x.boolean("save_output", true) {
		dir, typ = s.cfg.TempDir, "temp"
	}
	format := x.str("format", "image/gif")
	fps := x.float("frame_rate", 8)
	folder, name, counter, subfolder, err := savePath(dir, x.str("filename_prefix", "AnimateDiff"), v.w, v.h)
	if err != nil {
		return nil, &execError{excType: "Exception", msg: err.Error(), inputs: x.currentInputs()}
	}
	var data []byte
	var ext string
	switch format {
	case "image/gif":
		ext = "gif"
		var buf bytes.Buffer
		if err := gif.EncodeAll(&buf, animatedGIF(v, fps, int(x.int("loop_count", 0)))); err != nil {
			return nil, &execError{excType: "OSError", msg: err.Error(), inputs: x.currentInputs()}
		}
		data = buf.Bytes()
	case "image/webp":
		ext, data = "webp", fakeContainer("webp", v)
	case "video/webm":
		ext, data = "webm", fakeContainer("webm", v)
	default:
		ext, data = "mp4", fakeMP4(v)
	}
	file := fmt.Sprintf("%s_%05d.%s", name, counter, ext)
	full := filepath.Join(folder, file)
	if err := writeAtomic(full, data); err != nil {
		return nil, &execError{excType: "OSError", msg: err.Error(), inputs: x.currentInputs()}
	}
	// VHS also saves the first frame with the workflow as a PNG.
	png := fmt.Sprintf("%s_%05d.png", name, counter)
	if pngData, err := encodePNG(renderImage(v, 0), x.pngMetadata()); err == nil {
		_ = writeAtomic(filepath.Join(folder, png), pngData)
	}
	item := fileRef(file, filepath.ToSlash(subfolder), typ)
	item["format"] = format
	item["frame_rate"] = fps
	item["workflow"] = png
	item["fullpath"] = full
	out := &value{typ: "VHS_FILENAMES", files: []string{filepath.Join(folder, png), full}}
	return &nodeRun{outputs: []*value{out}, ui: uiOutput("gifs", []any{item})}, nil
}
