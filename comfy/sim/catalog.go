package sim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
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
	outputTooltips                               []string // old-style nodes' OUTPUT_TOOLTIPS
	outputNode                                   bool
	run                                          runFunc
}

type inputDef struct {
	name string
	typ  string
	// cfg is the config as key, value pairs, in ComfyUI's order (the
	// frontend and validation errors show it as sent).
	cfg []any
	// options, when set, makes the input a combo; folder names a model
	// folder whose files are the options (resolved per request).
	options []string
	folder  []string
	inputs  bool // the options are the image files of the input folder
}

type outputDef struct{ typ, name string }

func in(name, typ string, kv ...any) inputDef { return inputDef{name: name, typ: typ, cfg: kv} }

func intIn(name string, def, min, max any, kv ...any) inputDef {
	return inputDef{name: name, typ: "INT", cfg: append([]any{"default", def, "min", min, "max", max}, kv...)}
}

func floatIn(name string, def, min, max, step any, kv ...any) inputDef {
	return inputDef{name: name, typ: "FLOAT", cfg: append([]any{"default", def, "min", min, "max", max, "step", step}, kv...)}
}

func combo(name string, options []string, kv ...any) inputDef {
	return inputDef{name: name, typ: "COMBO", options: options, cfg: kv}
}

func modelCombo(name string, folders []string, kv ...any) inputDef {
	return inputDef{name: name, typ: "COMBO", folder: folders, cfg: kv}
}

func out(typ string, name ...string) outputDef {
	if len(name) > 0 {
		return outputDef{typ, name[0]}
	}
	return outputDef{typ, typ}
}

// config turns key, value pairs into a config: nil values are left out
// (VHS frame_rate has no max, PrimitiveInt no default), a key given twice
// keeps its first place and its last value, floats are written as Python
// writes them (8.0, not 8).
func config(kv []any) jsonobj.Object {
	o := jsonobj.Object{}
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		if v == nil {
			continue
		}
		if f, ok := v.(float64); ok {
			v = json.RawMessage(pyFloatString(f))
		}
		o.Set(kv[i].(string), jsonobj.Raw(v))
	}
	return o
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
				floatIn("cfg", 8.0, 0.0, 100.0, 0.1, "round", 0.01, "tooltip", "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values result in images more closely matching the prompt however too high values will negatively impact quality."),
				combo("sampler_name", samplerNames, "tooltip", "The algorithm used when sampling, this can affect the quality, speed, and style of the generated output."),
				combo("scheduler", schedulerNames, "tooltip", "The scheduler controls how noise is gradually removed to form the image."),
				in("positive", "CONDITIONING", "tooltip", "The conditioning describing the attributes you want to include in the image."),
				in("negative", "CONDITIONING", "tooltip", "The conditioning describing the attributes you want to exclude from the image."),
				in("latent_image", "LATENT", "tooltip", "The latent image to denoise."),
				floatIn("denoise", 1.0, 0.0, 1.0, 0.01, "tooltip", "The amount of denoising applied, lower values will maintain the structure of the initial image allowing for image to image sampling."),
			}, outputs: []outputDef{out("LATENT")}, outputTooltips: []string{"The denoised latent."}},
		{name: "CheckpointLoaderSimple", display: "Load Checkpoint", category: "loaders", run: runLoader,
			description:    "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
			required:       []inputDef{modelCombo("ckpt_name", []string{"checkpoints"}, "tooltip", "The name of the checkpoint (model) to load.")},
			outputs:        []outputDef{out("MODEL"), out("CLIP"), out("VAE")},
			outputTooltips: []string{"The model used for denoising latents.", "The CLIP model used for encoding text prompts.", "The VAE model used for encoding and decoding images to and from latent space."}},
		{name: "CLIPTextEncode", display: "CLIP Text Encode (Prompt)", category: "conditioning", run: runTextEncode,
			description: "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.",
			required: []inputDef{
				in("text", "STRING", "multiline", true, "dynamicPrompts", true, "tooltip", "The text to be encoded."),
				in("clip", "CLIP", "tooltip", "The CLIP model used for encoding the text."),
			}, outputs: []outputDef{out("CONDITIONING")}, outputTooltips: []string{"A conditioning containing the embedded text used to guide the diffusion model."}},
		{name: "VAEDecode", display: "VAE Decode", category: "latent", run: runDecode,
			description: "Decodes latent images back into pixel space images.",
			required:    []inputDef{in("samples", "LATENT", "tooltip", "The latent to be decoded."), in("vae", "VAE", "tooltip", "The VAE model used for decoding the latent.")},
			outputs:     []outputDef{out("IMAGE")}, outputTooltips: []string{"The decoded image."}},
		{name: "VAEEncode", display: "VAE Encode", category: "latent", run: runEncode,
			required: []inputDef{in("pixels", "IMAGE"), in("vae", "VAE")},
			outputs:  []outputDef{out("LATENT")}},
		{name: "VAELoader", display: "Load VAE", category: "loaders", run: runLoader,
			required: []inputDef{modelCombo("vae_name", []string{"vae", "+pixel_space"})},
			outputs:  []outputDef{out("VAE")}},
		{name: "EmptyLatentImage", display: "Empty Latent Image", category: "latent", run: runEmptyLatent,
			description: "Create a new batch of empty latent images to be denoised via sampling.",
			required: []inputDef{
				intIn("width", 512, 16, maxResolution, "step", 8, "tooltip", "The width of the latent images in pixels."),
				intIn("height", 512, 16, maxResolution, "step", 8, "tooltip", "The height of the latent images in pixels."),
				intIn("batch_size", 1, 1, 4096, "tooltip", "The number of latent images in the batch."),
			}, outputs: []outputDef{out("LATENT")}, outputTooltips: []string{"The empty latent image batch."}},
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
			required: []inputDef{{name: "image", typ: "COMBO", inputs: true, cfg: []any{"image_upload", true}}},
			outputs:  []outputDef{out("IMAGE"), out("MASK")}},
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
		{name: "EmptyImage", category: "image", run: runEmptyImage,
			required: []inputDef{
				intIn("width", 512, 1, maxResolution, "step", 1),
				intIn("height", 512, 1, maxResolution, "step", 1),
				intIn("batch_size", 1, 1, 4096),
				intIn("color", 0, 0, 0xFFFFFF, "step", 1, "display", "color"),
			}, outputs: []outputDef{out("IMAGE")}},
		{name: "CLIPLoader", display: "Load CLIP", category: "advanced/loaders", run: runLoader,
			required: []inputDef{modelCombo("clip_name", []string{"text_encoders"}), combo("type", clipTypes)},
			optional: []inputDef{combo("device", []string{"default", "cpu"}, "advanced", true)},
			outputs:  []outputDef{out("CLIP")}},
		{name: "UNETLoader", display: "Load Diffusion Model", category: "advanced/loaders", run: runLoader,
			required: []inputDef{modelCombo("unet_name", []string{"diffusion_models"}), combo("weight_dtype", []string{"default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"})},
			outputs:  []outputDef{out("MODEL")}},
		{name: "VAEDecodeTiled", display: "VAE Decode (Tiled)", category: "_for_testing", run: runDecode,
			required: []inputDef{
				in("samples", "LATENT"), in("vae", "VAE"),
				intIn("tile_size", 512, 64, 4096, "step", 32),
				intIn("overlap", 64, 0, 4096, "step", 32),
				intIn("temporal_size", 64, 8, 4096, "step", 4, "tooltip", "Only used for video VAEs: Amount of frames to decode at a time."),
				intIn("temporal_overlap", 8, 4, 4096, "step", 4, "tooltip", "Only used for video VAEs: Amount of frames to overlap."),
			}, outputs: []outputDef{out("IMAGE")}},
		{name: "ConditioningZeroOut", category: "advanced/conditioning", run: runPassThrough,
			required: []inputDef{in("conditioning", "CONDITIONING")},
			outputs:  []outputDef{out("CONDITIONING")}},
		{name: "LoraLoaderModelOnly", category: "loaders", run: runLoader,
			required: []inputDef{in("model", "MODEL"), modelCombo("lora_name", []string{"loras"}), floatIn("strength_model", 1.0, -100.0, 100.0, 0.01)},
			outputs:  []outputDef{out("MODEL")}, outputTooltips: []string{"The modified diffusion model.", "The modified CLIP model."}},
		{name: "KSamplerSelect", category: "sampling/custom_sampling/samplers", module: "comfy_extras.nodes_custom_sampler", run: runPassThrough,
			required: []inputDef{combo("sampler_name", samplerNames)}, outputs: []outputDef{out("SAMPLER")}},
		{name: "CFGGuider", category: "sampling/custom_sampling/guiders", module: "comfy_extras.nodes_custom_sampler", run: runPassThrough,
			required: []inputDef{in("model", "MODEL"), in("positive", "CONDITIONING"), in("negative", "CONDITIONING"), floatIn("cfg", 8.0, 0.0, 100.0, 0.1, "round", 0.01)},
			outputs:  []outputDef{out("GUIDER")}},
		{name: "RandomNoise", category: "sampling/custom_sampling/noise", module: "comfy_extras.nodes_custom_sampler", run: runPassThrough,
			required: []inputDef{intIn("noise_seed", 0, 0, maxSeed, "control_after_generate", true)}, outputs: []outputDef{out("NOISE")}},
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
				in("stretch", "BOOLEAN", "tooltip", "Stretch the sigmas to be in the range [terminal, 1].", "default", true),
				in("terminal", "FLOAT", "tooltip", "The terminal value of the sigmas after stretching.", "default", 0.1, "min", 0.0, "max", 0.99, "step", 0.01),
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
				{name: "frame_rate", typ: "FLOAT,INT", cfg: []any{"default", 25.0, "min", 1.0, "max", 1000.0, "step", 0.01, "display", "number", "tooltip", "Number of frames per second."}},
				intIn("batch_size", 1, 1, 4096, "display", "number"),
				in("audio_vae", "VAE", "display_name", "Audio VAE"),
			}, outputs: []outputDef{out("LATENT", "Latent")}},
		{name: "LTXAVTextEncoderLoader", display: "Load LTXV Audio Text Encoder", category: "model/loaders", module: "comfy_extras.nodes_lt_audio", v3: true, run: runLoader,
			description: "Recipes:\nltxav: gemma 3 12B or matching gemma 4 model",
			required: []inputDef{
				modelCombo("text_encoder", []string{"text_encoders"}), modelCombo("ckpt_name", []string{"checkpoints"}),
				combo("device", []string{"default", "cpu"}, "advanced", true),
			}, outputs: []outputDef{out("CLIP")}},
		{name: "SaveVideo", display: "Save Video", category: "image/video", module: "comfy_extras.nodes_video", v3: true, outputNode: true, run: runSaveVideo,
			description: "Saves the input images to your ComfyUI output directory.",
			required: []inputDef{
				in("video", "VIDEO", "tooltip", "The video to save."),
				in("filename_prefix", "STRING", "tooltip", tipPrefix, "default", "video/ComfyUI", "multiline", false),
				combo("format", []string{"auto", "mp4"}, "tooltip", "The format to save the video as.", "default", "auto"),
				combo("codec", []string{"auto", "h264"}, "tooltip", "The codec to use for the video.", "default", "auto"),
			}, hidden: []string{"prompt:PROMPT", "extra_pnginfo:EXTRA_PNGINFO"}},
		{name: "CreateVideo", display: "Create Video", category: "image/video", module: "comfy_extras.nodes_video", v3: true, run: runCreateVideo,
			description: "Create a video from images.",
			required:    []inputDef{in("images", "IMAGE", "tooltip", "The images to create a video from."), floatIn("fps", 30.0, 1.0, 120.0, 1.0)},
			optional:    []inputDef{in("audio", "AUDIO", "tooltip", "The audio to add to the video.")},
			outputs:     []outputDef{out("VIDEO")}},
		{name: "PrimitiveString", display: "String", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{in("value", "STRING", "multiline", false)}, outputs: []outputDef{out("STRING")}},
		{name: "PrimitiveStringMultiline", display: "String (Multiline)", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{in("value", "STRING", "multiline", true)}, outputs: []outputDef{out("STRING")}},
		{name: "PrimitiveInt", display: "Int", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{intIn("value", nil, minSize, maxSize, "control_after_generate", true)}, outputs: []outputDef{out("INT")}},
		{name: "PrimitiveFloat", display: "Float", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{{name: "value", typ: "FLOAT", cfg: []any{"min", minSize, "max", maxSize}}}, outputs: []outputDef{out("FLOAT")}},
		{name: "PrimitiveBoolean", display: "Boolean", category: "utils/primitive", module: "comfy_extras.nodes_primitive", v3: true, run: runPrimitive,
			required: []inputDef{in("value", "BOOLEAN")}, outputs: []outputDef{out("BOOLEAN")}},
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

// notYet lists what ComfyUI 2024-08-15 did not have yet, of the nodes the
// simulator knows: Legacy mode leaves it out of object_info. An entry is
// "input" or "input.config_key".
var notYet = map[string][]string{
	"KSampler":       {"seed.control_after_generate"},
	"RandomNoise":    {"noise_seed.control_after_generate"},
	"CLIPLoader":     {"device"},
	"VAEDecodeTiled": {"overlap", "temporal_size", "temporal_overlap"},
}

// nodeInfo renders a definition for validation; dynamic combos get their
// options from opts.
func (d *nodeDef) nodeInfo(opts func(inputDef) []string, legacy bool) comfy.NodeInfo {
	var info comfy.NodeInfo
	if err := json.Unmarshal(d.encode(opts, legacy), &info); err != nil {
		panic(fmt.Sprintf("sim: node %s does not describe itself: %v", d.name, err))
	}
	return info
}

// encode renders a definition as ComfyUI's /object_info does, key for key
// in its order: old-style nodes as nodes.py's, new-style ("V3") as
// comfy_api's, which put output_tooltips after the outputs and end with
// the deprecated, experimental and api_node flags. legacy leaves out what
// the older ComfyUI did not have (notYet).
func (d *nodeDef) encode(opts func(inputDef) []string, legacy bool) []byte {
	var omit []string
	if legacy {
		omit = notYet[d.name]
	}
	inputs, order := jsonobj.Object{}, jsonobj.Object{}
	for _, cat := range []struct {
		name string
		defs []inputDef
	}{{"required", d.required}, {"optional", d.optional}} {
		defs := slices.DeleteFunc(slices.Clone(cat.defs), func(in inputDef) bool { return slices.Contains(omit, in.name) })
		if len(defs) == 0 && cat.name != "required" {
			continue
		}
		specs, names := jsonobj.Object{}, []string{}
		for _, in := range defs {
			for _, o := range omit {
				if key, ok := strings.CutPrefix(o, in.name+"."); ok {
					in.cfg = withoutKey(in.cfg, key)
				}
			}
			specs = append(specs, jsonobj.Member{Key: in.name, Value: d.spec(in, opts)})
			names = append(names, in.name)
		}
		inputs = append(inputs, jsonobj.Member{Key: cat.name, Value: jsonobj.Raw(specs)})
		order = append(order, jsonobj.Member{Key: cat.name, Value: jsonobj.Raw(names)})
	}
	if len(d.hidden) > 0 {
		hidden, names := jsonobj.Object{}, []string{}
		for _, h := range d.hidden {
			name, kind := splitHidden(h)
			var v any = kind
			if d.v3 {
				v = []string{kind}
			}
			hidden = append(hidden, jsonobj.Member{Key: name, Value: jsonobj.Raw(v)})
			names = append(names, name)
		}
		inputs = append(inputs, jsonobj.Member{Key: "hidden", Value: jsonobj.Raw(hidden)})
		order = append(order, jsonobj.Member{Key: "hidden", Value: jsonobj.Raw(names)})
	}
	outputs, isList, names := []string{}, []bool{}, []string{}
	for _, o := range d.outputs {
		outputs, isList, names = append(outputs, o.typ), append(isList, false), append(names, o.name)
	}
	var display any = d.display
	switch {
	case d.display == "" && d.v3:
		display = nil // a V3 node without a display name says null
	case d.display == "":
		display = d.name
	}
	module := d.module
	if module == "" {
		module = "nodes"
	}
	n := jsonobj.Of("input", inputs, "input_order", order, "output", outputs, "output_is_list", isList, "output_name", names)
	if d.v3 {
		n = append(n, jsonobj.Of("output_tooltips", make([]*string, len(d.outputs)))...)
	}
	n = append(n, jsonobj.Of("name", d.name, "display_name", display, "description", d.description,
		"python_module", module, "category", d.category, "output_node", d.outputNode)...)
	switch {
	case d.v3:
		n = append(n, jsonobj.Of("deprecated", false, "experimental", false, "api_node", false)...)
	case d.outputTooltips != nil:
		n = append(n, jsonobj.Of("output_tooltips", d.outputTooltips)...)
	}
	b, _ := n.MarshalJSON()
	return b
}

// withoutKey is a config's pairs less one key.
func withoutKey(kv []any, key string) []any {
	var out []any
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] != key {
			out = append(out, kv[i], kv[i+1])
		}
	}
	return out
}

func splitHidden(h string) (name, kind string) {
	for i := 0; i < len(h); i++ {
		if h[i] == ':' {
			return h[:i], h[i+1:]
		}
	}
	return h, h
}

// spec renders one input: [type] or [type, config]; an old-style combo as
// [[choices], config], a V3 one as ["COMBO", {..., "multiselect", "options"}].
func (d *nodeDef) spec(in inputDef, opts func(inputDef) []string) json.RawMessage {
	cfg := config(in.cfg)
	if in.typ != "COMBO" {
		if len(cfg) == 0 && !d.v3 {
			return jsonobj.Raw([]any{in.typ})
		}
		return jsonobj.Raw([]any{in.typ, cfg})
	}
	options := in.options
	if options == nil {
		options = opts(in)
	}
	if options == nil {
		options = []string{}
	}
	if d.v3 {
		cfg.Set("multiselect", jsonobj.Raw(false))
		cfg.Set("options", jsonobj.Raw(options))
		return jsonobj.Raw([]any{"COMBO", cfg})
	}
	if len(cfg) == 0 {
		return jsonobj.Raw([]any{options})
	}
	return jsonobj.Raw([]any{options, cfg})
}
