package comfy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestCountNodes(t *testing.T) {
	for raw, want := range map[string]int{
		`{}`: 0,
		`{"1":{"class_type":"A","inputs":{"x":["2",0],"s":"a:b"}},"2":{"class_type":"B"}}`: 2,
		`{"1":{"inputs":{"t":"\":{\"x\":"}},"2":{}}`:                                       2,
		` { "a" : [ {"b":1} ] , "c":{"d":{"e":2}} } `:                                      2,
	} {
		if got := CountNodes([]byte(raw), 100); got != want {
			t.Errorf("%s: %d, want %d", raw, got, want)
		}
	}
	if got := CountNodes([]byte(`{"1":{},"2":{},"3":{},"4":{}}`), 2); got != 3 {
		t.Errorf("stops past max: %d", got)
	}
}

// Thousands of broken outputs: ComfyUI would list every one under every
// broken node (quadratic); the lists stop at maxDependentOutputs, the
// first ones kept, in output order.
func TestManyFailingOutputsBoundedAnswer(t *testing.T) {
	var info ObjectInfo
	if err := json.Unmarshal([]byte(`{"SaveImage":{"input":{"required":{"images":["IMAGE"],"filename_prefix":["STRING",{}]}},"output":[],"output_node":true,"name":"SaveImage"}}`), &info); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("{")
	for i := 1; i <= 3000; i++ {
		if i > 1 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"%d":{"class_type":"SaveImage","inputs":{"filename_prefix":"x"}}`, i)
	}
	b.WriteString("}")
	p, err := ParsePrompt([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	_, nodeErrors, perr := ValidatePrompt(p, info, ValidateOptions{})
	if perr == nil || len(nodeErrors) != 3000 {
		t.Fatalf("%v, %d node errors", perr, len(nodeErrors))
	}
	first := nodeErrors["1"].DependentOutputs
	if len(first) != maxDependentOutputs || first[0] != "1" || first[1] != "2" {
		t.Errorf("node 1's dependents: %d %v", len(first), first[:3])
	}
	if last := nodeErrors["3000"].DependentOutputs; len(last) != 1 || last[0] != "3000" {
		t.Errorf("the last node's dependents: %v", last)
	}
}
