package realcomfy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// TestStartAndRun starts every version here, with a custom node of its
// own, and runs the model-free graph on it, so a broken kit or machine
// shows up as one plain failure.
func TestStartAndRun(t *testing.T) {
	for _, v := range realcomfy.Versions(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			in := realcomfy.Start(t, v, realcomfy.Options{CustomNodes: map[string]string{"smoke_node.py": realcomfy.PassThroughNode("SmokeNode")}})
			info, err := http.Get(in.URL + "/object_info/SmokeNode")
			if err != nil {
				t.Fatal(err)
			}
			var node map[string]any
			json.NewDecoder(info.Body).Decode(&node)
			info.Body.Close()
			if node["SmokeNode"] == nil {
				t.Errorf("the custom node did not load: %v", node)
			}
			body := `{"prompt":{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":0}},` +
				`"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"smoke"}}},` +
				`"prompt_id":"00000000-0000-4000-8000-000000000001"}`
			resp, err := http.Post(in.URL+"/prompt", "application/json", bytes.NewBufferString(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				PromptID string `json:"prompt_id"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("POST /prompt: %d %v", resp.StatusCode, err)
			}
			if kept := got.PromptID == "00000000-0000-4000-8000-000000000001"; kept != v.AcceptsPromptID {
				t.Errorf("prompt_id %s kept=%v, but the version says AcceptsPromptID=%v", got.PromptID, kept, v.AcceptsPromptID)
			}
		})
	}
}
