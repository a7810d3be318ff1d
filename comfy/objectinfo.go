package comfy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// ObjectInfo is the reply of GET /object_info: class name -> definition.
type ObjectInfo map[string]NodeInfo

// NodeInfo is one node class as /object_info describes it.
type NodeInfo struct {
	Input          NodeInputs          `json:"input"`
	InputOrder     map[string][]string `json:"input_order"`
	IsInputList    bool                `json:"is_input_list,omitempty"`
	Output         []IOType            `json:"output"`
	OutputIsList   []bool              `json:"output_is_list"`
	OutputName     []string            `json:"output_name"`
	Name           string              `json:"name"`
	DisplayName    string              `json:"display_name"`
	Description    string              `json:"description"`
	PythonModule   string              `json:"python_module"`
	Category       string              `json:"category"`
	OutputNode     bool                `json:"output_node"`
	OutputTooltips []*string           `json:"output_tooltips,omitempty"`
	Deprecated     bool                `json:"deprecated,omitempty"`
	Experimental   bool                `json:"experimental,omitempty"`
	APINode        bool                `json:"api_node,omitempty"`
}

// NodeInputs groups a node's inputs the way ComfyUI does.
type NodeInputs struct {
	Required map[string]InputSpec `json:"required"`
	Optional map[string]InputSpec `json:"optional,omitempty"`
	// Hidden maps a name to its kind: "PROMPT" in old-style nodes,
	// ["PROMPT"] in new-style (V3) nodes.
	Hidden map[string]json.RawMessage `json:"hidden,omitempty"`
}

// Spec returns the spec of a required or optional input.
func (n *NodeInfo) Spec(name string) (InputSpec, string, bool) {
	if s, ok := n.Input.Required[name]; ok {
		return s, "required", true
	}
	if s, ok := n.Input.Optional[name]; ok {
		return s, "optional", true
	}
	return InputSpec{}, "", false
}

// InputNames lists required then optional inputs in input_order, falling
// back to sorted names when the order is missing.
func (n *NodeInfo) InputNames() []string {
	var names []string
	for _, cat := range []string{"required", "optional"} {
		specs := n.Input.Required
		if cat == "optional" {
			specs = n.Input.Optional
		}
		order := n.InputOrder[cat]
		seen := map[string]bool{}
		for _, name := range order {
			if _, ok := specs[name]; ok && !seen[name] {
				names = append(names, name)
				seen[name] = true
			}
		}
		var rest []string
		for name := range specs {
			if !seen[name] {
				rest = append(rest, name)
			}
		}
		sort.Strings(rest)
		names = append(names, rest...)
	}
	return names
}

// IOType is a socket type: a name such as "IMAGE" or "INT", or a list of
// options (old-style combo, sent as a JSON array).
type IOType struct {
	Name    string
	Options []any
	// List is set when the type was (or must be) sent as a JSON array.
	List bool
}

// MarshalJSON writes the name or the options list.
func (t IOType) MarshalJSON() ([]byte, error) {
	if t.List {
		opts := t.Options
		if opts == nil {
			opts = []any{}
		}
		return json.Marshal(opts)
	}
	return json.Marshal(t.Name)
}

// UnmarshalJSON reads a name or an options list.
func (t *IOType) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		t.Name, t.List = "COMBO", true
		return decodeNumbers(b, &t.Options)
	}
	return json.Unmarshal(b, &t.Name)
}

// InputSpec is one input definition, sent as [type] or [type, config].
type InputSpec struct {
	// Type is "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", a socket type
	// ("IMAGE", "LATENT", ...), "*" or a comma list.
	Type string
	// Options lists a combo's choices: the array of an old-style combo, or
	// config "options" of a new-style one.
	Options []any
	// Config is the second element (default, min, max, step, tooltip...).
	Config map[string]any
	// ListForm is set for old-style combos, whose first element is the
	// option list itself.
	ListForm bool
	// ConfigRaw is the config as sent, in its key order (Config is a map):
	// ComfyUI echoes it in validation errors as input_config.
	ConfigRaw json.RawMessage
}

// MarshalJSON writes [type-or-options, config].
func (s InputSpec) MarshalJSON() ([]byte, error) {
	var first any = s.Type
	if s.ListForm {
		opts := s.Options
		if opts == nil {
			opts = []any{}
		}
		first = opts
	}
	if s.Config == nil {
		return json.Marshal([]any{first})
	}
	if s.ConfigRaw != nil {
		return json.Marshal([]any{first, s.ConfigRaw})
	}
	return json.Marshal([]any{first, s.Config})
}

// UnmarshalJSON reads [type-or-options] or [type-or-options, config].
func (s *InputSpec) UnmarshalJSON(b []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) == 0 {
		return fmt.Errorf("comfy: input spec is not a non-empty array: %s", b)
	}
	first := bytes.TrimSpace(parts[0])
	if len(first) > 0 && first[0] == '[' {
		s.Type, s.ListForm = "COMBO", true
		if err := decodeNumbers(first, &s.Options); err != nil {
			return err
		}
	} else if err := json.Unmarshal(first, &s.Type); err != nil {
		return fmt.Errorf("comfy: input spec type: %w", err)
	}
	if len(parts) > 1 {
		if err := decodeNumbers(parts[1], &s.Config); err != nil {
			return fmt.Errorf("comfy: input spec config: %w", err)
		}
		s.ConfigRaw = append(json.RawMessage(nil), parts[1]...)
	}
	if !s.ListForm && s.Type == "COMBO" && s.Config != nil {
		if opts, ok := s.Config["options"].([]any); ok {
			s.Options = opts
		}
	}
	return nil
}

// IsCombo reports whether the input is a choice from a list.
func (s InputSpec) IsCombo() bool { return s.ListForm || s.Type == "COMBO" }

// Min returns config "min" when present.
func (s InputSpec) Min() (float64, bool) { return s.number("min") }

// Max returns config "max" when present.
func (s InputSpec) Max() (float64, bool) { return s.number("max") }

// Default returns config "default" when present.
func (s InputSpec) Default() (any, bool) {
	v, ok := s.Config["default"]
	return v, ok
}

func (s InputSpec) number(key string) (float64, bool) {
	v, ok := s.Config[key]
	if !ok {
		return 0, false
	}
	f, ok := toFloat(v)
	return f, ok
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

func decodeNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// ParseObjectInfo decodes an /object_info reply, keeping numbers exact.
func ParseObjectInfo(data []byte) (ObjectInfo, error) {
	var info ObjectInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("comfy: parse object_info: %w", err)
	}
	return info, nil
}
