package sim_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fixtureNode struct {
	Type   string
	Models []string
}

type fixture struct{ nodes []fixtureNode }

// fixtureWorkflows reads the shared UI-format workflows (node types in
// nodes[].type and definitions.subgraphs[].nodes[].type).
func fixtureWorkflows(t *testing.T) map[string]fixture {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "workflows")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skipf("fixture workflows not found at %s", dir)
	}
	type uiNode struct {
		Type       string `json:"type"`
		Properties struct {
			Models []struct {
				Name string `json:"name"`
			} `json:"models"`
		} `json:"properties"`
	}
	out := map[string]fixture{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			Nodes       []uiNode `json:"nodes"`
			Definitions struct {
				Subgraphs []struct {
					Nodes []uiNode `json:"nodes"`
				} `json:"subgraphs"`
			} `json:"definitions"`
		}
		if json.Unmarshal(b, &wf) != nil || wf.Nodes == nil {
			continue // API-format fixture
		}
		all := wf.Nodes
		for _, sg := range wf.Definitions.Subgraphs {
			all = append(all, sg.Nodes...)
		}
		var fx fixture
		for _, n := range all {
			fn := fixtureNode{Type: n.Type}
			for _, m := range n.Properties.Models {
				fn.Models = append(fn.Models, m.Name)
			}
			fx.nodes = append(fx.nodes, fn)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = fx
	}
	return out
}
