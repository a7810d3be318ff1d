package comfy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Needs is what a workflow needs of a ComfyUI instance: node types and
// model files.
type Needs struct {
	Nodes  []string `json:"nodes"`
	Models []string `json:"models"`
}

// frontendOnly are node types the frontend handles itself; they never reach
// the server, so no instance lists them.
var frontendOnly = map[string]bool{"Note": true, "MarkdownNote": true, "Reroute": true, "PrimitiveNode": true}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// modelExts mark widget values that name model files.
var modelExts = []string{".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx"}

func isModel(s string) bool {
	l := strings.ToLower(s)
	for _, e := range modelExts {
		if strings.HasSuffix(l, e) {
			return true
		}
	}
	return false
}

// WorkflowNeeds reads a workflow file, API format or UI format (with
// subgraphs: a node type that is a UUID names a subgraph, whose nodes are
// under definitions.subgraphs), and lists the node types and model files it
// uses.
func WorkflowNeeds(raw []byte) (Needs, error) {
	var ui struct {
		Nodes       []uiNode `json:"nodes"`
		Definitions struct {
			Subgraphs []struct {
				Nodes []uiNode `json:"nodes"`
			} `json:"subgraphs"`
		} `json:"definitions"`
	}
	nodes, models := map[string]bool{}, map[string]bool{}
	if err := json.Unmarshal(raw, &ui); err == nil && ui.Nodes != nil {
		all := ui.Nodes
		for _, sg := range ui.Definitions.Subgraphs {
			all = append(all, sg.Nodes...)
		}
		for _, n := range all {
			if n.Type == "" || frontendOnly[n.Type] || uuidRE.MatchString(n.Type) {
				continue
			}
			nodes[n.Type] = true
			for _, m := range n.Properties.Models {
				if m.Name != "" {
					models[m.Name] = true
				}
			}
			var widgets []any
			json.Unmarshal(n.Widgets, &widgets)
			for _, w := range widgets {
				if s, ok := w.(string); ok && isModel(s) {
					models[s] = true
				}
			}
		}
		return sorted(nodes, models), nil
	}
	p, err := ParsePrompt(raw)
	if err != nil {
		return Needs{}, fmt.Errorf("neither a UI-format nor an API-format workflow: %w", err)
	}
	for _, n := range p {
		nodes[n.ClassType] = true
		for _, v := range n.Inputs {
			if s, ok := v.(string); ok && isModel(s) {
				models[s] = true
			}
		}
	}
	return sorted(nodes, models), nil
}

type uiNode struct {
	Type       string          `json:"type"`
	Widgets    json.RawMessage `json:"widgets_values"`
	Properties struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	} `json:"properties"`
}

func sorted(nodes, models map[string]bool) Needs {
	n := Needs{Nodes: []string{}, Models: []string{}}
	for k := range nodes {
		n.Nodes = append(n.Nodes, k)
	}
	for k := range models {
		n.Models = append(n.Models, k)
	}
	slices.Sort(n.Nodes)
	slices.Sort(n.Models)
	return n
}

// Missing returns what of needs an instance's object_info lacks: node types
// it does not list, and model files no combo of it offers.
func (info ObjectInfo) Missing(needs Needs) (nodes, models []string) {
	offered := map[string]bool{}
	for _, n := range info {
		for _, specs := range []map[string]InputSpec{n.Input.Required, n.Input.Optional} {
			for _, s := range specs {
				for _, o := range s.Options {
					if str, ok := o.(string); ok {
						offered[str] = true
					}
				}
			}
		}
	}
	for _, t := range needs.Nodes {
		if _, ok := info[t]; !ok {
			nodes = append(nodes, t)
		}
	}
	for _, m := range needs.Models {
		if !offered[m] && !offered[strings.ReplaceAll(m, "/", "\\")] {
			models = append(models, m)
		}
	}
	return nodes, models
}
