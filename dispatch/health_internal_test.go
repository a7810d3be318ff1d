package dispatch

import (
	"encoding/json"
	"testing"

	"github.com/comfy-workshop/workshop/comfy"
)

func TestExecutionFault(t *testing.T) {
	for _, c := range []struct {
		typ, msg, want string
	}{
		{"torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB.\nThis error means you ran out of memory on your GPU.", reasonOOM},
		{"torch.cuda.OutOfMemoryError", "CUDA out of memory.", reasonOOM},
		{"RuntimeError", "CUDA out of memory. Tried to allocate 20.00 MiB", reasonOOM},
		{"RuntimeError", "MPS backend out of memory (MPS allocated: 17.00 GB)", reasonOOM},
		{"torch.AcceleratorError", "CUDA error: an illegal memory access was encountered", reasonGPU},
		{"RuntimeError", "CUDA error: device-side assert triggered", reasonGPU},
		{"RuntimeError", "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR", reasonGPU},
		{"RuntimeError", "mat1 and mat2 shapes cannot be multiplied (77x768 and 1024x320)", ""},
		{"FileNotFoundError", "[Errno 2] No such file or directory: 'input/cat.png'", ""},
		{"Exception", "simulated failure", ""},
	} {
		got, ok := executionFault(&comfy.ExecutionError{ExceptionType: c.typ, ExceptionMessage: c.msg})
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: %q: got %q %v, want %q", c.typ, c.msg, got, ok, c.want)
		}
	}
}

func TestPromptFault(t *testing.T) {
	for _, c := range []struct {
		body, want string
	}{
		// 2024-08-15 and 0.3.64 for a class the instance lacks.
		{`{"error": {"type": "invalid_prompt", "message": "Cannot execute because node ImageFlip does not exist.", "details": "Node ID '#2'", "extra_info": {}}, "node_errors": {}}`, reasonMissingNode},
		// ComfyUI since 2026.
		{`{"error": {"type": "missing_node_type", "message": "Node 'ImageFlip' not found.", "details": "", "extra_info": {}}, "node_errors": {}}`, reasonMissingNode},
		// A model file this instance does not have.
		{`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
		  "node_errors": {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'sdxl.safetensors' not in ['v1-5.safetensors']",
		  "extra_info": {"input_name": "ckpt_name", "received_value": "sdxl.safetensors"}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}}`, reasonMissingModel},
		// The graph's own mistakes.
		{`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
		  "node_errors": {"3": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "sampler_name: 'eulr' not in [...]",
		  "extra_info": {"input_name": "sampler_name"}}], "dependent_outputs": ["9"], "class_type": "KSampler"}}}`, ""},
		{`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
		  "node_errors": {"3": {"errors": [{"type": "value_bigger_than_max", "message": "Value bigger than max", "details": "steps: 100000",
		  "extra_info": {"input_name": "steps"}}], "dependent_outputs": ["9"], "class_type": "KSampler"}}}`, ""},
		{`{"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": []}`, ""},
	} {
		var pe comfy.PromptError
		json.Unmarshal([]byte(c.body), &pe)
		got, msg, ok := promptFault(&pe)
		if got != c.want || ok != (c.want != "") || (ok && msg == "") {
			t.Errorf("%s: got %q %q %v, want %q", c.body, got, msg, ok, c.want)
		}
	}
}

func TestNewestComfyUIServesTheUI(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"0.3.64", "0.3.9", 1}, {"0.3.64", "", 1}, {"", "", 0}, {"0.10.0", "0.9.9", 1}, {"v0.3.64", "0.3.64", 0}, {"0.3", "0.3.1", -1},
	} {
		if got := compareVersions(c.a, c.b); got != c.want {
			t.Errorf("compare %q %q = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	stats := json.RawMessage(`{"system": {"os": "posix", "comfyui_version": "0.3.64"}, "devices": []}`)
	if v := comfyVersion(stats); v != "0.3.64" {
		t.Errorf("version %q", v)
	}
	if v := comfyVersion(json.RawMessage(`{"system": {"os": "posix"}}`)); v != "" {
		t.Errorf("version of an older ComfyUI %q", v)
	}
}
