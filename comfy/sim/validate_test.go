package sim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
)

func TestValidationErrorsLikeComfyUI(t *testing.T) {
	e := start(t, sim.Config{})
	base := func() comfy.Prompt { return txt2imgGraph(1, "x", 2) }
	cases := []struct {
		name      string
		mutate    func(p comfy.Prompt)
		top       string
		node      string
		nodeError string
	}{
		{"unknown node type", func(p comfy.Prompt) { p["10"] = comfy.Node{ClassType: "NoSuchNode", Inputs: map[string]any{}} }, comfy.ErrInvalidPrompt, "", ""},
		{"missing class_type", func(p comfy.Prompt) { p["10"] = comfy.Node{Inputs: map[string]any{}} }, comfy.ErrInvalidPrompt, "", ""},
		{"no output node", func(p comfy.Prompt) { delete(p, "9") }, comfy.ErrPromptNoOutputs, "", ""},
		{"required input missing", func(p comfy.Prompt) { delete(p["3"].Inputs, "steps") }, comfy.ErrOutputsFailedValidation, "3", comfy.ErrRequiredInputMissing},
		{"value smaller than min", func(p comfy.Prompt) { p["3"].Inputs["steps"] = 0 }, comfy.ErrOutputsFailedValidation, "3", comfy.ErrValueSmallerThanMin},
		{"value bigger than max", func(p comfy.Prompt) { p["3"].Inputs["denoise"] = 1.5 }, comfy.ErrOutputsFailedValidation, "3", comfy.ErrValueBiggerThanMax},
		{"value not in list", func(p comfy.Prompt) { p["4"].Inputs["ckpt_name"] = "missing.safetensors" }, comfy.ErrOutputsFailedValidation, "4", comfy.ErrValueNotInList},
		{"bad linked input", func(p comfy.Prompt) { p["8"].Inputs["vae"] = []any{"4", 2, 0} }, comfy.ErrOutputsFailedValidation, "8", comfy.ErrBadLinkedInput},
		{"return type mismatch", func(p comfy.Prompt) { p["8"].Inputs["vae"] = comfy.Link("4", 0) }, comfy.ErrOutputsFailedValidation, "8", comfy.ErrReturnTypeMismatch},
		{"invalid input type", func(p comfy.Prompt) { p["3"].Inputs["steps"] = "many" }, comfy.ErrOutputsFailedValidation, "3", comfy.ErrInvalidInputType},
		{"link to a missing node", func(p comfy.Prompt) { p["9"].Inputs["images"] = comfy.Link("99", 0) }, comfy.ErrOutputsFailedValidation, "9", "exception_during_validation"},
		{"load image of a missing file", func(p comfy.Prompt) {
			p["20"] = comfy.Node{ClassType: "LoadImage", Inputs: map[string]any{"image": "nope.png"}}
			p["9"].Inputs["images"] = comfy.Link("20", 0)
		}, comfy.ErrOutputsFailedValidation, "20", comfy.ErrCustomValidationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			_, err := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: p})
			var pe *comfy.PromptError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *PromptError", err)
			}
			if pe.StatusCode != http.StatusBadRequest || pe.Info.Type != tc.top {
				t.Fatalf("got %d %s, want 400 %s: %s", pe.StatusCode, pe.Info.Type, tc.top, pe.Body)
			}
			if tc.node == "" {
				if len(pe.NodeErrors) != 0 {
					t.Errorf("node_errors = %v", pe.NodeErrors)
				}
				return
			}
			ne, ok := pe.NodeErrors[tc.node]
			if !ok || len(ne.Errors) == 0 || ne.Errors[0].Type != tc.nodeError || ne.ClassType != p[tc.node].ClassType {
				t.Fatalf("node_errors[%s] = %+v (body %s)", tc.node, ne, pe.Body)
			}
			if len(ne.DependentOutputs) != 1 || ne.DependentOutputs[0] != "9" {
				t.Errorf("dependent_outputs = %v", ne.DependentOutputs)
			}
		})
	}
	// The error text names the problem the way ComfyUI does.
	p := base()
	p["4"].Inputs["ckpt_name"] = "missing.safetensors"
	_, err := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: p})
	var pe *comfy.PromptError
	errors.As(err, &pe)
	if d := pe.NodeErrors["4"].Errors[0].Details; !strings.HasPrefix(d, "ckpt_name: 'missing.safetensors' not in ['ltx-2") {
		t.Errorf("details = %q", d)
	}
	p = base()
	p["3"].Inputs["steps"] = 0
	_, err = e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: p})
	errors.As(err, &pe)
	if m := pe.NodeErrors["3"].Errors[0].Message; m != "Value 0 smaller than min of 1" {
		t.Errorf("message = %q", m)
	}
}

func TestPromptBodyQuirks(t *testing.T) {
	e := start(t, sim.Config{})
	// No Content-Type at all, as some clients send it: parsed anyway.
	body := `{"prompt": ` + mustJSON(emptyImageGraph(0, "q")) + `}`
	resp, err := http.Post(e.hs.URL+"/prompt", "", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var ok struct {
		PromptID   string          `json:"prompt_id"`
		Number     json.Number     `json:"number"`
		NodeErrors json.RawMessage `json:"node_errors"`
	}
	json.NewDecoder(resp.Body).Decode(&ok)
	resp.Body.Close()
	if resp.StatusCode != 200 || ok.PromptID == "" || string(ok.NodeErrors) != "{}" {
		t.Fatalf("%d %+v", resp.StatusCode, ok)
	}
	// No "prompt": no_prompt.
	resp, _ = http.Post(e.hs.URL+"/api/prompt", "application/json", strings.NewReader(`{"client_id":"x"}`))
	var bad struct {
		Error comfy.ErrorInfo `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&bad)
	resp.Body.Close()
	if resp.StatusCode != 400 || bad.Error.Type != comfy.ErrNoPrompt {
		t.Fatalf("%d %+v", resp.StatusCode, bad)
	}
	// front=true queues with a negative number; an explicit number is a float.
	r1, _ := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: emptyImageGraph(1, "q"), Front: true})
	n := 2.5
	r2, _ := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: emptyImageGraph(2, "q"), Number: &n})
	if !strings.HasPrefix(string(r1.Number), "-") || r2.Number != "2.5" {
		t.Errorf("numbers %s %s", r1.Number, r2.Number)
	}
	// Partial execution runs only the listed outputs.
	p := emptyImageGraph(3, "p")
	p["3"] = comfy.Node{ClassType: "PreviewImage", Inputs: map[string]any{"images": comfy.Link("1", 0)}}
	r3, err := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: p, PartialExecutionTargets: []string{"3"}})
	if err != nil {
		t.Fatal(err)
	}
	e.sim.WaitIdle(ctx(t))
	h := e.history(r3.PromptID)
	if files := h.Files(); len(files) != 1 || files[0].NodeID != "3" || files[0].Type != "temp" || !strings.HasPrefix(files[0].Filename, "ComfyUI_temp_") {
		t.Errorf("partial run files %+v", files)
	}
}

func TestValidatesFixtureNodeTypesAndModels(t *testing.T) {
	e := start(t, sim.Config{})
	info, err := e.c.ObjectInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	wfs := fixtureWorkflows(t)
	// Frontend-only nodes never reach the server.
	virtual := map[string]bool{"MarkdownNote": true, "Note": true, "Reroute": true, "PrimitiveNode": true}
	for name, wf := range wfs {
		for _, n := range wf.nodes {
			if virtual[n.Type] || len(n.Type) == 36 && strings.Count(n.Type, "-") == 4 {
				continue
			}
			ni, ok := info[n.Type]
			if !ok {
				t.Errorf("%s: node type %s unknown to the simulator", name, n.Type)
				continue
			}
			for _, m := range n.Models {
				found := false
				for _, in := range ni.InputNames() {
					spec, _, _ := ni.Spec(in)
					for _, o := range spec.Options {
						if o == m {
							found = true
						}
					}
				}
				if !found {
					t.Errorf("%s: %s lists model %s that no combo offers", name, n.Type, m)
				}
			}
		}
	}
}
