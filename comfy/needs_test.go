package comfy_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/comfy-workshop/workshop/comfy"
)

func TestWorkflowNeedsFixtures(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "fixtures", "workflows")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("fixtures not present at ../shared/fixtures/workflows")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "flux2_klein_4b_text_to_image.json"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := comfy.WorkflowNeeds(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UNETLoader", "SamplerCustomAdvanced", "SaveImage", "CLIPLoader"} {
		if !slices.Contains(n.Nodes, want) {
			t.Errorf("nodes lack %s: %v", want, n.Nodes)
		}
	}
	for _, bad := range []string{"MarkdownNote", "7b34ab90-36f9-45ba-a665-71d418f0df18"} {
		if slices.Contains(n.Nodes, bad) {
			t.Errorf("nodes include %s", bad)
		}
	}
	for _, want := range []string{"flux-2-klein-4b.safetensors", "qwen_3_4b.safetensors", "flux2-vae.safetensors"} {
		if !slices.Contains(n.Models, want) {
			t.Errorf("models lack %s: %v", want, n.Models)
		}
	}
	api, _ := comfy.WorkflowNeeds([]byte(`{"1":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"sd15.safetensors"}},"2":{"class_type":"SaveImage","inputs":{}}}`))
	if !slices.Equal(api.Nodes, []string{"CheckpointLoaderSimple", "SaveImage"}) || !slices.Equal(api.Models, []string{"sd15.safetensors"}) {
		t.Errorf("API format: %+v", api)
	}
	if _, err := comfy.WorkflowNeeds([]byte(`[1,2]`)); err == nil {
		t.Error("a JSON list was accepted as a workflow")
	}
}
