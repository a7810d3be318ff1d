package sim

import (
	"encoding/json"

	"github.com/comfy-workshop/workshop/comfy"
)

// The node catalog: what /object_info describes and what /prompt accepts.
// Input specs are read from ComfyUI's nodes.py and comfy_extras (v0.3.6x
// to early 2026); the LTX-2 audio and Flux.2 nodes follow their 2026
// sources; a few loaders are inferred from the workshop's fixture
// workflows. Old-style nodes send combos as option lists, new-style ("V3")
// nodes as ["COMBO", {"options": [...]}], as ComfyUI does.

const maxResolution = 16384

// maxSeed is 0xffffffffffffffff, which does not fit a float64 exactly.
var maxSeed = json.Number("18446744073709551615")

// Python's sys.maxsize, the range of the primitive nodes.
var (
	maxSize = json.Number("9223372036854775807")
	minSize = json.Number("-9223372036854775807")
)

var samplerNames = []string{"euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2", "dpm_2_ancestral",
	"lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu",
	"dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm",
	"ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
	"gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"}

var schedulerNames = []string{"simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic", "kl_optimal"}

var upscaleMethods = []string{"nearest-exact", "bilinear", "area", "bicubic", "lanczos"}

var clipTypes = []string{"stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos", "lumina2", "wan",
	"hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis"}

// nodeDef describes one node class.
type nodeDef struct {
	name, display, category, module, description string
	v3                                           bool // new-style node: combos as "COMBO", hidden as lists
	required, optional                           []inputDef
	hidden                                       []string // PROMPT, EXTRA_PNGINFO, UNIQUE_ID
	outputs                                      []outputDef
	outputNode                                   bool
	run                                          runFunc
}

type inputDef struct {
	name string
	typ  string
	cfg  map[string]any
	// options, when set, makes the input a combo; folder names a model
	// folder whose files are the options (resolved per request).
	options []string
	folder  []string
	inputs  bool // the options are the image files of the input folder
}

type outputDef struct{ typ, name string }

func in(name, typ string, kv ...any) inputDef { return inputDef{name: name, typ: typ, cfg: kvMap(kv)} }

func intIn(name string, def, min, max any, kv ...any) inputDef {
	return inputDef{name: name, typ: "INT", cfg: merge(map[string]any{"default": def, "min": min, "max": max}, kvMap(kv))}
}

func floatIn(name string, def, min, max, step any, kv ...any) inputDef {
	return inputDef{name: name, typ: "FLOAT", cfg: merge(map[string]any{"default": def, "min": min, "max": max, "step": step}, kvMap(kv))}
}

func combo(name string, options []string, kv ...any) inputDef {
	return inputDef{name: name, typ: "COMBO", options: options, cfg: kvMap(kv)}
}

func modelCombo(name string, folders []string, kv ...any) inputDef {
	return inputDef{name: name, typ: "COMBO", folder: folders, cfg: kvMap(kv)}
}

func out(typ string, name ...string) outputDef {
	if len(name) > 0 {
		return outputDef{typ, name[0]}
	}
	return outputDef{typ, typ}
}

func kvMap(kv []any) map[string]any {
	if len(kv) == 0 {
		return nil
	}
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

const (
	tipSaveImage = "The images to save."
	tipPrefix    = "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes."
)

// catalog lists every node the simulator knows, in object_info order.
func catalog() []nodeDef {
	return []nodeDef{
		{name: "KSampler", category: "sampling", run: runSampler,
			description: "Uses the provided model, positive and negative conditioning to denoise the latent image.",
			required: []inputDef{
				in("model", "MODEL", "tooltip", "The model used for denoising the input latent."),
				intIn("seed", 0, 0, maxSeed, "control_after_generate", true, "tooltip", "The random seed used for creating the noise."),
				intIn("steps", 20, 1, 10000, "tooltip", "The number of steps used in the denoising process."),
				floatIn("cfg", 8.0, 0.0, 100.0, 0.1, "round", 0.01),
				combo("sampler_name", samplerNames),
				combo("scheduler", schedulerNames),
				in("positive", "CONDITIONING"),
				in("negative", "CONDITIONING"),
				in("latent_image", "LATENT"),
				floatIn("denoise", 1.0, 0.0, 1.0, 0.01),
			}, outputs: []outputDef{out("LATENT")}},
		{name: "CheckpointLoaderSimple", display: "Load Checkpoint", category: "loaders", run: runLoader,
			description: "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
			required:    []inputDef{modelCombo("ckpt_name", []string{"checkpoints"}, "tooltip", "The name of the checkpoint (model) to load.")},
			outputs:     []outputDef{out("MODEL"), out("CLIP"), out("VAE")}},
		{name: "CLIPTextEncode", display: "CLIP Text Encode (Prompt)", category: "conditioning", run: runTextEncode,
			description: "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.",
			required: []inputDef{
				in("text", "STRING", "multiline", true, "dynamicPrompts", true, "tooltip", "The text to be encoded."),
				in("clip", "CLIP", "tooltip", "The CLIP model used for encoding the text."),
			}, outputs: []outputDef{out("CONDITIONING")}},
		{name: "VAEDecode", display: "VAE Decode", category: "latent", run: runDecode,
			description: "Decodes latent images back into pixel space images.",
			required:    []inputDef{in("samples", "LATENT"), in("vae", "VAE")},
			outputs:     []outputDef{out("IMAGE")}},
		{name: "VAEEncode", display: "VAE Encode", category: "latent", run: runEncode,
			required: []inputDef{in("pixels", "IMAGE"), in("vae", "VAE")},
			outputs:  []outputDef{out("LATENT")}},
		{name: "EmptyLatentImage", display: "Empty Latent Image", category: "latent", run: runEmptyLatent,
			description: "Create a new batch of empty latent images to be denoised via sampling.",
			required: []inputDef{
				intIn("width", 512, 16, maxResolution, "step", 8),
				intIn("height", 512, 16, maxResolution, "step", 8),
				intIn("batch_size", 1, 1, 4096),
			}, outputs: []outputDef{out("LATENT")}},
		{name: "SaveImage", display: "Save Image", category: "image", outputNode: true, run: runSaveImage,
			description: "Saves the input images to your ComfyUI output directory.",
			required: []inputDef{
				in("images", "IMAGE", "tooltip", tipSaveImage),
				in("filename_prefix", "STRING", "default", "ComfyUI", "tooltip", tipPrefix),
			}, hidden: []string{"prompt:PROMPT", "extra_pnginfo:EXTRA_PNGINFO"}},
		{name: "PreviewImage", display: "Preview Image", category: "image", outputNode: true, run: runPreviewImage,
			description: "Saves the input images to your ComfyUI output directory.",
			required:    []inputDef{in("images", "IMAGE")},
			hidden:      []string{"prompt:PROMPT", "extra_pnginfo:EXTRA_PNGINFO"}},
		{name: "LoadImage", display: "Load Image", category: "image", run: runLoadImage,
			required: []inputDef{{name: "image", typ: "COMBO", inputs: true, cfg: map[string]any{"image_upload": true}}},
			outputs:  []outputDef{out("IMAGE"), out("MASK")}},
		{name: "EmptyImage", category: "image", run: runEmptyImage,
			required: []inputDef{
				intIn("width", 512, 1, maxResolution, "step", 1),
				intIn("height", 512, 1, maxResolution, "step", 1),
				intIn("batch_size", 1, 1, 4096),
				intIn("color", 0, 0, 0xFFFFFF, "step", 1, "display", "color"),
			}, outputs: []outputDef{out("IMAGE")}},
		{name: "ImageScale", display: "Upscale Image", category: "image/upscaling", run: runImageScale,
			required: []inputDef{
				in("image", "IMAGE"), combo("upscale_method", upscaleMethods),
				intIn("width", 512, 0, maxResolution, "step", 1),
				intIn("height", 512, 0, maxResolution, "step", 1),
				combo("crop", []string{"disabled", "center"}),
			}, outputs: []outputDef{out("IMAGE")}},
		{name: "ImageScaleBy", display: "Upscale Image By", category: "image/upscaling", run: runImageScaleBy,
			required: []inputDef{in("image", "IMAGE"), combo("upscale_method", upscaleMethods), floatIn("scale_by", 1.0, 0.01, 8.0, 0.01)},
			outputs:  []outputDef{out("IMAGE")}},
		{name: "VAEDecodeTiled", display: "VAE Decode (Tiled)", category: "_for_testing", run: runDecode,
			required: []inputDef{
				in("samples", "LATENT"), in("vae", "VAE"),
				intIn("tile_size", 512, 64, 4096, "step", 32),
				intIn("overlap", 64, 0, 4096, "step", 32),
				intIn("temporal_size", 64, 8, 4096, "step", 4, "tooltip", "Only used for video VAEs: Amount of frames to decode at a time."),
				intIn("temporal_overlap", 8, 4, 4096, "step", 4, "tooltip", "Only used for video VAEs: Amount of frames to overlap."),
			}, outputs: []outputDef{out("IMAGE")}},
		{name: "LoraLoaderModelOnly", category: "loaders", run: runLoader,
			required: []inputDef{in("model", "MODEL"), modelCombo("lora_name", []string{"loras"}), floatIn("strength_model", 1.0, -100.0, 100.0, 0.01)},
			outputs:  []outputDef{out("MODEL")}},
		{name: "UNETLoader", display: "Load Diffusion Model", category: "advanced/loaders", run: runLoader,
			required: []inputDef{modelCombo("unet_name", []string{"diffusion_models"}), combo("weight_dtype", []string{"default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"})},
			outputs:  []outputDef{out("MODEL")}},
		{name: "CLIPLoader", display: "Load CLIP", category: "advanced/loaders", run: runLoader,
			required: []inputDef{modelCombo("clip_name", []string{"text_encoders"}), combo("type", clipTypes)},
			optional: []inputDef{combo("device", []string{"default", "cpu"}, "advanced", true)},
			outputs:  []outputDef{out("CLIP")}},
		{name: "VAELoader", display: "Load VAE", category: "loaders", run: runLoader,
			required: []inputDef{modelCombo("vae_name", []string{"vae", "+pixel_space"})},
			outputs:  []outputDef{out("VAE")}},
		{name: "ConditioningZeroOut", category: "advanced/conditioning", run: runPassThrough,
			required: []inputDef{in("conditioning", "CONDITIONING")},
			outputs:  []outputDef{out("CONDITIONING")}},
		{name: "KSamplerSelect", category: "sampling/custom_sampling/samplers", module: "comfy_extras.nodes_custom_sampler", run: runPassThrough,
			required: []inputDef{combo("sampler_name", samplerNames)}, outputs: []outputDef{out("SAMPLER")}},
		{name: "RandomNoise", category: "sampling/custom_sampling/noise", module: "comfy_extras.nodes_custom_sampler", run: runPassThrough,
			required: []inputDef{intIn("noise_seed", 0, 0, maxSeed, "control_after_generate", true)}, outputs: []outputDef{out("NOISE")}},
		{name: "CFGGuider", category: "sampling/custom_sampling/guiders", module: "comfy_extras.nodes_custom_sampler", run: runPassThrough,
			required: []inputDef{in("model", "MODEL"), in("positive", "CONDITIONING"), in("negative", "CONDITIONING"), floatIn("cfg", 8.0, 0.0, 100.0, 0.1, "round", 0.01)},
			outputs:  []outputDef{out("GUIDER")}},
		{name: "SamplerCustomAdvanced", category: "sampling/custom_sampling", module: "comfy_extras.nodes_custom_sampler", run: runSampler,
			required: []inputDef{in("noise", "NOISE"), in("guider", "GUIDER"), in("sampler", "SAMPLER"), in("sigmas", "SIGMAS"), in("latent_image", "LATENT")},
			outputs:  []outputDef{out("LATENT", "output"), out("LATENT", "denoised_output")}},
		{name: "ManualSigmas", category: "sampling/custom_sampling/schedulers", module: "comfy_extras.nodes_custom_sampler", v3: true, run: runPassThrough,
			required: []inputDef{in("sigmas", "STRING", "default", "1, 0.5", "multiline", false)}, outputs: []outputDef{out("SIGMAS")}},
		{name: "Flux2Scheduler", category: "sampling/custom_sampling/schedulers", module: "comfy_extras.nodes_flux", v3: true, run: runPassThrough,
			required: []inputDef{intIn("steps", 20, 1, 4096), intIn("width", 1024, 16, maxResolution, "step", 1), intIn("height", 1024, 16, maxResolution, "step", 1)},
			outputs:  []outputDef{out("SIGMAS")}},
		{name: "EmptyFlux2LatentImage", category: "latent", module: "comfy_extras.nodes_flux", v3: true, run: runEmptyLatent,
			required: []inputDef{intIn("width", 1024, 16, maxResolution, "step", 16), intIn("height", 1024, 16, maxResolution, "step", 16), intIn("batch_size", 1, 1, 4096)},
			outputs:  []outputDef{out("LATENT")}},
		{name: "PrimitiveInt", display: "Int", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{intIn("value", nil, minSize, maxSize, "control_after_generate", true)}, outputs: []outputDef{out("INT")}},
		{name: "PrimitiveFloat", display: "Float", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{{name: "value", typ: "FLOAT", cfg: map[string]any{"min": minSize, "max": maxSize}}}, outputs: []outputDef{out("FLOAT")}},
		{name: "PrimitiveString", display: "String", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{in("value", "STRING")}, outputs: []outputDef{out("STRING")}},
		{name: "PrimitiveStringMultiline", display: "String (Multiline)", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{in("value", "STRING", "multiline", true)}, outputs: []outputDef{out("STRING")}},
		{name: "PrimitiveBoolean", display: "Boolean", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{in("value", "BOOLEAN")}, outputs: []outputDef{out("BOOLEAN")}},
		{name: "GetImageSize", display: "Get Image Size", category: "image", module: "comfy_extras.nodes_images", run: runImageSize,
			description: "Returns width and height of the image, and passes it through unchanged.",
			required:    []inputDef{in("image", "IMAGE")}, hidden: []string{"unique_id:UNIQUE_ID"},
			outputs: []outputDef{out("INT", "width"), out("INT", "height"), out("INT", "batch_size")}},
		{name: "EmptyLTXVLatentVideo", category: "latent/video/ltxv", module: "comfy_extras.nodes_lt", v3: true, run: runEmptyLatent,
			required: []inputDef{
				intIn("width", 768, 64, maxResolution, "step", 32), intIn("height", 512, 64, maxResolution, "step", 32),
				intIn("length", 97, 1, maxResolution, "step", 8), intIn("batch_size", 1, 1, 4096),
			}, outputs: []outputDef{out("LATENT")}},
		{name: "LTXVConditioning", category: "conditioning/video_models", module: "comfy_extras.nodes_lt", v3: true, run: runPassThrough,
			required: []inputDef{in("positive", "CONDITIONING"), in("negative", "CONDITIONING"), floatIn("frame_rate", 25.0, 0.0, 1000.0, 0.01)},
			outputs:  []outputDef{out("CONDITIONING", "positive"), out("CONDITIONING", "negative")}},
		{name: "LTXVScheduler", category: "sampling/custom_sampling/schedulers", module: "comfy_extras.nodes_lt", v3: true, run: runPassThrough,
			required: []inputDef{
				intIn("steps", 20, 1, 10000), floatIn("max_shift", 2.05, 0.0, 100.0, 0.01), floatIn("base_shift", 0.95, 0.0, 100.0, 0.01),
				in("stretch", "BOOLEAN", "default", true, "tooltip", "Stretch the sigmas to be in the range [terminal, 1]."),
				floatIn("terminal", 0.1, 0.0, 0.99, 0.01, "tooltip", "The terminal value of the sigmas after stretching."),
			}, optional: []inputDef{in("latent", "LATENT")}, outputs: []outputDef{out("SIGMAS")}},
		{name: "LTXVCropGuides", category: "conditioning/video_models", module: "comfy_extras.nodes_lt", v3: true, run: runPassThrough,
			required: []inputDef{in("positive", "CONDITIONING"), in("negative", "CONDITIONING"), in("latent", "LATENT")},
			outputs:  []outputDef{out("CONDITIONING", "positive"), out("CONDITIONING", "negative"), out("LATENT", "latent")}},
		{name: "LTXVConcatAVLatent", category: "latent/video/ltxv", module: "comfy_extras.nodes_lt", v3: true, run: runPassThrough,
			required: []inputDef{in("video_latent", "LATENT"), in("audio_latent", "LATENT")}, outputs: []outputDef{out("LATENT", "latent")}},
		{name: "LTXVSeparateAVLatent", category: "latent/video/ltxv", module: "comfy_extras.nodes_lt", v3: true, run: runPassThrough,
			required: []inputDef{in("av_latent", "LATENT")}, outputs: []outputDef{out("LATENT", "video_latent"), out("LATENT", "audio_latent")}},
		{name: "LTXVLatentUpsampler", category: "latent/video", module: "comfy_extras.nodes_lt_upsampler", run: runLatentUpsample,
			required: []inputDef{in("samples", "LATENT"), in("upscale_model", "LATENT_UPSCALE_MODEL"), in("vae", "VAE")},
			outputs:  []outputDef{out("LATENT")}},
		{name: "LatentUpscaleModelLoader", display: "Load Latent Upscale Model", category: "loaders", module: "comfy_extras.nodes_hunyuan", v3: true, run: runLoader,
			required: []inputDef{modelCombo("model_name", []string{"latent_upscale_models"})}, outputs: []outputDef{out("LATENT_UPSCALE_MODEL")}},
		{name: "LTXVAudioVAELoader", display: "Load LTXV Audio VAE", category: "model/loaders", module: "comfy_extras.nodes_lt_audio", v3: true, run: runLoader,
			required: []inputDef{modelCombo("ckpt_name", []string{"vae", "checkpoints"}, "tooltip", "Audio VAE checkpoint to load.")},
			outputs:  []outputDef{out("VAE", "Audio VAE")}},
		{name: "LTXVAudioVAEDecode", display: "LTXV Audio VAE Decode", category: "model/latent/ltxv", module: "comfy_extras.nodes_lt_audio", v3: true, run: runAudioDecode,
			required: []inputDef{in("samples", "LATENT", "tooltip", "The latent to be decoded."), in("audio_vae", "VAE", "display_name", "Audio VAE")},
			outputs:  []outputDef{out("AUDIO", "Audio")}},
		{name: "LTXVEmptyLatentAudio", display: "Empty LTXV Latent Audio", category: "model/latent/ltxv", module: "comfy_extras.nodes_lt_audio", v3: true, run: runPassThrough,
			required: []inputDef{
				intIn("frames_number", 97, 1, 1000, "step", 1, "display", "number", "tooltip", "Number of frames."),
				{name: "frame_rate", typ: "FLOAT,INT", cfg: map[string]any{"default": 25.0, "min": 1.0, "max": 1000.0, "step": 0.01, "display": "number", "tooltip": "Number of frames per second."}},
				intIn("batch_size", 1, 1, 4096, "display", "number"),
				in("audio_vae", "VAE", "display_name", "Audio VAE"),
			}, outputs: []outputDef{out("LATENT", "Latent")}},
		{name: "LTXAVTextEncoderLoader", display: "Load LTXV Audio Text Encoder", category: "model/loaders", module: "comfy_extras.nodes_lt_audio", v3: true, run: runLoader,
			description: "Recipes:\nltxav: gemma 3 12B or matching gemma 4 model",
			required: []inputDef{
				modelCombo("text_encoder", []string{"text_encoders"}), modelCombo("ckpt_name", []string{"checkpoints"}),
				combo("device", []string{"default", "cpu"}, "advanced", true),
			}, outputs: []outputDef{out("CLIP")}},
		{name: "CreateVideo", display: "Create Video", category: "image/video", module: "comfy_extras.nodes_video", v3: true, run: runCreateVideo,
			description: "Create a video from images.",
			required:    []inputDef{in("images", "IMAGE", "tooltip", "The images to create a video from."), floatIn("fps", 30.0, 1.0, 120.0, 1.0)},
			optional:    []inputDef{in("audio", "AUDIO", "tooltip", "The audio to add to the video.")},
			outputs:     []outputDef{out("VIDEO")}},
		{name: "SaveVideo", display: "Save Video", category: "image/video", module: "comfy_extras.nodes_video", v3: true, outputNode: true, run: runSaveVideo,
			description: "Saves the input images to your ComfyUI output directory.",
			required: []inputDef{
				in("video", "VIDEO", "tooltip", "The video to save."),
				in("filename_prefix", "STRING", "default", "video/ComfyUI", "tooltip", tipPrefix),
				combo("format", []string{"auto", "mp4"}, "default", "auto", "tooltip", "The format to save the video as."),
				combo("codec", []string{"auto", "h264"}, "default", "auto", "tooltip", "The codec to use for the video."),
			}, hidden: []string{"prompt:PROMPT", "extra_pnginfo:EXTRA_PNGINFO"}},
		// Video Helper Suite's combine node, the most used custom video
		// output: it reports its file under "gifs", not "images".
		{name: "VHS_VideoCombine", display: "Video Combine 🎥🅥🅗🅢", category: "Video Helper Suite 🎥🅥🅗🅢", module: "custom_nodes.ComfyUI-VideoHelperSuite",
			outputNode: true, run: runVideoCombine,
			required: []inputDef{
				in("images", "IMAGE"),
				floatIn("frame_rate", 8, 1, nil, 1),
				intIn("loop_count", 0, 0, 100, "step", 1),
				in("filename_prefix", "STRING", "default", "AnimateDiff"),
				combo("format", []string{"image/gif", "image/webp", "video/h264-mp4", "video/webm"}),
				in("pingpong", "BOOLEAN", "default", false),
				in("save_output", "BOOLEAN", "default", true),
			},
			optional: []inputDef{in("audio", "AUDIO"), in("meta_batch", "VHS_BatchManager"), in("vae", "VAE")},
			hidden:   []string{"prompt:PROMPT", "extra_pnginfo:EXTRA_PNGINFO", "unique_id:UNIQUE_ID"},
			outputs:  []outputDef{out("VHS_FILENAMES", "Filenames")}},
	}
}

// nodeInfo renders a definition as /object_info does; dynamic combos get
// their options from opts.
func (d *nodeDef) nodeInfo(opts func(inputDef) []string) comfy.NodeInfo {
	info := comfy.NodeInfo{
		Input:        comfy.NodeInputs{Required: map[string]comfy.InputSpec{}},
		InputOrder:   map[string][]string{"required": {}},
		Output:       []comfy.IOType{},
		OutputIsList: []bool{},
		OutputName:   []string{},
		Name:         d.name,
		DisplayName:  d.display,
		Description:  d.description,
		PythonModule: d.module,
		Category:     d.category,
		OutputNode:   d.outputNode,
	}
	if info.DisplayName == "" {
		info.DisplayName = d.name
	}
	if info.PythonModule == "" {
		info.PythonModule = "nodes"
	}
	for _, in := range d.required {
		info.Input.Required[in.name] = d.spec(in, opts)
		info.InputOrder["required"] = append(info.InputOrder["required"], in.name)
	}
	if len(d.optional) > 0 {
		info.Input.Optional = map[string]comfy.InputSpec{}
		for _, in := range d.optional {
			info.Input.Optional[in.name] = d.spec(in, opts)
			info.InputOrder["optional"] = append(info.InputOrder["optional"], in.name)
		}
	}
	if len(d.hidden) > 0 {
		info.Input.Hidden = map[string]json.RawMessage{}
		for _, h := range d.hidden {
			name, kind := splitHidden(h)
			var raw []byte
			if d.v3 {
				raw, _ = json.Marshal([]string{kind})
			} else {
				raw, _ = json.Marshal(kind)
			}
			info.Input.Hidden[name] = raw
			info.InputOrder["hidden"] = append(info.InputOrder["hidden"], name)
		}
	}
	for _, o := range d.outputs {
		info.Output = append(info.Output, comfy.IOType{Name: o.typ})
		info.OutputIsList = append(info.OutputIsList, false)
		info.OutputName = append(info.OutputName, o.name)
		if d.v3 {
			info.OutputTooltips = append(info.OutputTooltips, nil)
		}
	}
	return info
}

func splitHidden(h string) (name, kind string) {
	for i := 0; i < len(h); i++ {
		if h[i] == ':' {
			return h[:i], h[i+1:]
		}
	}
	return h, h
}

func (d *nodeDef) spec(in inputDef, opts func(inputDef) []string) comfy.InputSpec {
	cfg := map[string]any{}
	for k, v := range in.cfg {
		if v != nil { // e.g. VHS frame_rate has no max, PrimitiveInt no default
			cfg[k] = v
		}
	}
	if in.typ != "COMBO" {
		if len(cfg) == 0 && !d.v3 {
			return comfy.InputSpec{Type: in.typ}
		}
		return comfy.InputSpec{Type: in.typ, Config: cfg}
	}
	options := in.options
	if options == nil {
		options = opts(in)
	}
	list := make([]any, len(options))
	for i, o := range options {
		list[i] = o
	}
	if d.v3 {
		cfg["options"] = list
		return comfy.InputSpec{Type: "COMBO", Options: list, Config: cfg}
	}
	if len(cfg) == 0 {
		return comfy.InputSpec{Type: "COMBO", Options: list, ListForm: true}
	}
	return comfy.InputSpec{Type: "COMBO", Options: list, Config: cfg, ListForm: true}
}
