package sim

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// modelFolders is ComfyUI's folder_names_and_paths, in its order.
var modelFolders = []string{"checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
	"embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models", "latent_upscale_models", "custom_nodes",
	"hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders"}

// folderAliases are the extra folders ComfyUI scans for a model type.
var folderAliases = map[string][]string{"text_encoders": {"clip"}, "diffusion_models": {"unet"}, "controlnet": {"t2i_adapter"}}

var modelExts = map[string]bool{".ckpt": true, ".pt": true, ".pt2": true, ".bin": true, ".pth": true, ".safetensors": true, ".pkl": true, ".sft": true}

// defaultModels is what the simulator reports without a models folder:
// enough for the workshop's fixture workflows (Flux.2 Klein, LTX-2, SDXL)
// and a classic SD1.5 graph to validate.
var defaultModels = map[string][]string{
	"checkpoints":           {"ltx-2-19b-dev-fp8.safetensors", "ltx-2-19b-dev.safetensors", "ltx-2-19b-distilled-fp8.safetensors", "ltx-2-19b-distilled.safetensors", "sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"},
	"diffusion_models":      {"flux-2-klein-4b.safetensors", "flux-2-klein-9b-fp8.safetensors", "flux-2-klein-base-4b.safetensors", "flux-2-klein-base-9b-fp8.safetensors"},
	"text_encoders":         {"gemma_3_12B_it_fp4_mixed.safetensors", "qwen_3_4b.safetensors", "qwen_3_8b_fp8mixed.safetensors"},
	"vae":                   {"flux2-vae.safetensors"},
	"loras":                 {"ltx-2-19b-distilled-lora-384.safetensors", "ltx-2-19b-lora-camera-control-dolly-left.safetensors"},
	"latent_upscale_models": {"ltx-2-spatial-upscaler-x2-1.0.safetensors"},
	"upscale_models":        {"RealESRGAN_x4plus.safetensors"},
}

func (s *Server) modelDir(folder string) []string {
	if s.cfg.ModelsDir == "" {
		return []string{filepath.Join("/ComfyUI/models", folder)}
	}
	dirs := []string{filepath.Join(s.cfg.ModelsDir, folder)}
	for _, a := range folderAliases[folder] {
		dirs = append(dirs, filepath.Join(s.cfg.ModelsDir, a))
	}
	return dirs
}

type modelFile struct {
	name      string
	pathIndex int
	info      fs.FileInfo
}

// modelFiles lists a folder's models as folder_paths.get_filename_list.
func (s *Server) modelFiles(folder string) []modelFile {
	if s.cfg.ModelsDir == "" {
		list := defaultModels[folder]
		if s.cfg.Models != nil {
			list = s.cfg.Models[folder]
		}
		out := make([]modelFile, len(list))
		for i, n := range list {
			out[i] = modelFile{name: n}
		}
		return out
	}
	var out []modelFile
	for i, dir := range s.modelDir(folder) {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if path != dir && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || !modelExts[strings.ToLower(filepath.Ext(path))] {
				return nil
			}
			rel, _ := filepath.Rel(dir, path)
			info, _ := d.Info()
			out = append(out, modelFile{name: filepath.ToSlash(rel), pathIndex: i, info: info})
			return nil
		})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out
}

func (s *Server) modelNames(folder string) []string {
	files := s.modelFiles(folder)
	names := make([]string, 0, len(files))
	seen := map[string]bool{}
	for _, f := range files {
		if !seen[f.name] {
			names = append(names, f.name)
			seen[f.name] = true
		}
	}
	return names
}

func knownFolder(folder string) bool {
	for _, f := range modelFolders {
		if f == folder {
			return true
		}
	}
	return folder == "clip" || folder == "unet"
}

func legacyFolder(folder string) string {
	switch folder {
	case "clip":
		return "text_encoders"
	case "unet":
		return "diffusion_models"
	}
	return folder
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	names := []string{}
	for _, n := range s.modelNames("embeddings") {
		names = append(names, strings.TrimSuffix(n, filepath.Ext(n)))
	}
	writeJSON(w, http.StatusOK, names)
}

func (s *Server) handleModelTypes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, modelFolders)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	folder := r.PathValue("folder")
	if !knownFolder(folder) {
		plain(w, http.StatusNotFound, "")
		return
	}
	names := s.modelNames(legacyFolder(folder))
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, names)
}

func (s *Server) handleExperimentModels(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, f := range modelFolders {
		if f == "configs" || f == "custom_nodes" {
			continue
		}
		out = append(out, map[string]any{"name": f, "folders": s.modelDir(f)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleExperimentModelFiles(w http.ResponseWriter, r *http.Request) {
	folder := r.PathValue("folder")
	if !knownFolder(folder) {
		plain(w, http.StatusNotFound, "")
		return
	}
	out := []map[string]any{}
	for _, f := range s.modelFiles(legacyFolder(folder)) {
		entry := map[string]any{"name": f.name, "pathIndex": f.pathIndex}
		if f.info != nil {
			mt := float64(f.info.ModTime().UnixNano()) / float64(time.Second)
			entry["modified"], entry["created"], entry["size"] = mt, mt, f.info.Size()
		} else {
			entry["modified"], entry["created"], entry["size"] = 1.7e9, 1.7e9, 0
		}
		out = append(out, entry)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleFolderPaths(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	for _, f := range modelFolders {
		out[f] = s.modelDir(f)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleInternalFiles(w http.ResponseWriter, r *http.Request) {
	dir, ok := s.dirByType(r.PathValue("directory_type"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Invalid directory type"})
		return
	}
	entries, _ := os.ReadDir(dir)
	type named struct {
		name string
		mt   time.Time
	}
	var files []named
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && info.Mode().IsRegular() {
			files = append(files, named{e.Name(), info.ModTime()})
		}
	}
	sort.SliceStable(files, func(a, b int) bool { return files[a].mt.After(files[b].mt) })
	names := []string{}
	for _, f := range files {
		names = append(names, f.name)
	}
	writeJSON(w, http.StatusOK, names)
}

func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, "")
}

func (s *Server) handleLogsRaw(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"entries": []any{}, "size": map[string]any{"cols": 80, "rows": 24}})
}
