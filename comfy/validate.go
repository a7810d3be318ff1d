package comfy

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// ValidateOptions tunes ValidatePrompt.
type ValidateOptions struct {
	// PartialExecutionTargets limits the outputs to run (POST /prompt
	// "partial_execution_targets").
	PartialExecutionTargets []string
	// Custom runs a node class's own checks, like ComfyUI's VALIDATE_INPUTS
	// (LoadImage checks that the file exists). It returns the inputs it
	// judged, which skip the generic min/max/list checks as in ComfyUI, and
	// for each failing input the reason ("Invalid image file: x.png").
	Custom func(nodeID string, node Node, info NodeInfo) (judged []string, failed map[string]string)
	// MissingNodeType reports an unknown class as "missing_node_type" (how
	// ComfyUI words it since February 2026) instead of "invalid_prompt".
	MissingNodeType bool
	// Legacy words errors as ComfyUI before 2025 does
	// ("images, SAMPLER != IMAGE" for a type mismatch).
	Legacy bool
}

// ValidatePrompt checks an API-format graph against object_info the way
// ComfyUI's execution.validate_prompt does, with the same error types,
// messages and node_errors shape. It returns the outputs that will run and
// the node errors of outputs that will not; err is the 400 body when no
// output can run. Like ComfyUI it normalises widget values in place
// ("5" -> 5 for an INT input).
func ValidatePrompt(p Prompt, info ObjectInfo, opts ValidateOptions) (outputs []string, nodeErrors map[string]NodeError, err *PromptError) {
	v := &validator{p: p, info: info, opts: opts, validated: map[string]*nodeResult{}, onPath: map[string]bool{}}
	return v.run()
}

// maxDependentOutputs bounds the outputs one node error lists. ComfyUI
// lists every failing output under every failing node, which for a graph
// of thousands of broken outputs is a quadratic answer (88 MB for 5,000);
// real graphs have a handful of outputs.
const maxDependentOutputs = 64

type validator struct {
	p         Prompt
	info      ObjectInfo
	opts      ValidateOptions
	validated map[string]*nodeResult
	order     []string        // validation order of nodes, for stable node_errors
	onPath    map[string]bool // the nodes of the path being validated
}

type nodeResult struct {
	ok      bool
	reasons []errorDraft
}

// errorDraft is an ErrorInfo whose extra_info is still a Go value.
type errorDraft struct {
	Type, Message, Details string
	Extra                  jsonobj.Object // in ComfyUI's key order
}

func (d errorDraft) info() ErrorInfo {
	raw, _ := d.Extra.MarshalJSON()
	return ErrorInfo{Type: d.Type, Message: d.Message, Details: d.Details, ExtraInfo: raw}
}

// pyException stands for a Python exception escaping validate_inputs.
type pyException struct {
	typ, msg string
}

func (v *validator) run() ([]string, map[string]NodeError, *PromptError) {
	var outputs []string
	partial := map[string]bool{}
	for _, id := range v.opts.PartialExecutionTargets {
		partial[id] = true
	}
	for _, id := range v.p.SortedNodeIDs() {
		node := v.p[id]
		if node.ClassType == "" {
			return nil, nil, v.topError(ErrInvalidPrompt, "Cannot execute because a node is missing the class_type property.", fmt.Sprintf("Node ID '#%s'", id), nil)
		}
		ni, ok := v.info[node.ClassType]
		if !ok {
			if v.opts.MissingNodeType {
				title := node.ClassType
				if node.Meta != nil && node.Meta.Title != "" {
					title = node.Meta.Title
				}
				return nil, nil, v.topError(ErrMissingNodeType,
					fmt.Sprintf("Node '%s' not found. The custom node may not be installed.", title),
					fmt.Sprintf("Node ID '#%s'", id),
					jsonobj.Of("node_id", id, "class_type", node.ClassType, "node_title", title))
			}
			return nil, nil, v.topError(ErrInvalidPrompt, fmt.Sprintf("Cannot execute because node %s does not exist.", node.ClassType), fmt.Sprintf("Node ID '#%s'", id), nil)
		}
		if ni.OutputNode && (v.opts.PartialExecutionTargets == nil || partial[id]) {
			outputs = append(outputs, id)
		}
	}
	if len(outputs) == 0 {
		return nil, nil, v.topError(ErrPromptNoOutputs, "Prompt has no outputs", "", nil)
	}

	var good []string
	type failure struct {
		output  string
		reasons []errorDraft
	}
	var failures []failure
	nodeErrors := map[string]NodeError{}
	scanned := 0      // v.order[:scanned] is in open or done with
	var open []string // nodes with reasons whose dependents are not full
	for _, o := range outputs {
		res, exc := v.validateInputs(o, nil)
		if exc != nil {
			res = &nodeResult{reasons: []errorDraft{{
				Type: "exception_during_validation", Message: "Exception when validating node", Details: exc.msg,
				Extra: jsonobj.Of("exception_type", exc.typ, "traceback", fakeTraceback(exc)),
			}}}
			v.setResult(o, res)
		}
		if res.ok {
			good = append(good, o)
			continue
		}
		failures = append(failures, failure{o, res.reasons})
		// Like ComfyUI, every node that has reasons so far gets this output
		// as a dependent, whether or not it feeds it. A node's result does
		// not change once it is in v.order, so each is looked at once and
		// kept in open until its list is full: linear, not outputs × nodes.
		for ; scanned < len(v.order); scanned++ {
			if r := v.validated[v.order[scanned]]; !r.ok && len(r.reasons) > 0 {
				open = append(open, v.order[scanned])
			}
		}
		kept := open[:0]
		for _, id := range open {
			ne, seen := nodeErrors[id]
			if !seen {
				ne = NodeError{ClassType: v.p[id].ClassType, DependentOutputs: []string{}}
				for _, d := range v.validated[id].reasons {
					ne.Errors = append(ne.Errors, d.info())
				}
			}
			ne.DependentOutputs = append(ne.DependentOutputs, o)
			nodeErrors[id] = ne
			if len(ne.DependentOutputs) < maxDependentOutputs {
				kept = append(kept, id)
			}
		}
		open = kept
	}
	if len(good) == 0 {
		var lines []string
		for _, f := range failures {
			for _, r := range f.reasons {
				lines = append(lines, r.Message+": "+r.Details)
			}
		}
		pe := v.topError(ErrOutputsFailedValidation, "Prompt outputs failed validation", strings.Join(lines, "\n"), nil)
		pe.NodeErrors = nodeErrors
		return nil, nodeErrors, pe
	}
	return good, nodeErrors, nil
}

func (v *validator) topError(typ, msg, details string, extra jsonobj.Object) *PromptError {
	return &PromptError{StatusCode: 400, Info: errorDraft{Type: typ, Message: msg, Details: details, Extra: extra}.info(), NodeErrors: map[string]NodeError{}}
}

func (v *validator) setResult(id string, r *nodeResult) {
	if _, seen := v.validated[id]; !seen {
		v.order = append(v.order, id)
	}
	v.validated[id] = r
}

func fakeTraceback(exc *pyException) []string {
	return []string{
		"  File \"/ComfyUI/execution.py\", line 1, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n",
		fmt.Sprintf("%s: %s\n", exc.typ, exc.msg),
	}
}

// validateInputs mirrors execution.validate_inputs for one node.
func (v *validator) validateInputs(id string, visiting []string) (*nodeResult, *pyException) {
	if r, ok := v.validated[id]; ok {
		return r, nil
	}
	// onPath mirrors visiting, so a deep chain costs one lookup per node
	// rather than a walk of the path.
	for i, seen := range visiting {
		if !v.onPath[id] {
			break
		}
		if seen != id {
			continue
		}
		cycle := append(append([]string{}, visiting[i:]...), id)
		var parts []string
		for _, c := range cycle {
			parts = append(parts, fmt.Sprintf("%s (%s)", c, v.p[c].ClassType))
		}
		uniq := cycle[:len(cycle)-1]
		for _, c := range uniq {
			v.setResult(c, &nodeResult{reasons: []errorDraft{{
				Type: ErrDependencyCycle, Message: "Dependency cycle detected", Details: strings.Join(parts, " -> "),
				Extra: jsonobj.Of("node_id", c, "cycle_nodes", uniq),
			}}})
		}
		return v.validated[id], nil
	}

	v.onPath[id] = true
	defer delete(v.onPath, id)
	node := v.p[id]
	ni := v.info[node.ClassType]
	var errs []errorDraft
	valid := true

	var judged map[string]bool
	var customFailed map[string]string
	if v.opts.Custom != nil {
		names, failed := v.opts.Custom(id, node, ni)
		judged = map[string]bool{}
		for _, n := range names {
			judged[n] = true
		}
		customFailed = failed
	}

	for _, x := range ni.InputNames() {
		spec, category, _ := ni.Spec(x)
		cfg := specConfig(spec)
		inputConfig := []any{specFirst(spec), cfg}
		val, present := node.Inputs[x]
		if !present {
			if category == "required" {
				errs = append(errs, errorDraft{Type: ErrRequiredInputMissing, Message: "Required input is missing", Details: x,
					Extra: jsonobj.Of("input_name", x)})
			}
			continue
		}
		if list, isList := val.([]any); isList {
			if len(list) != 2 {
				errs = append(errs, errorDraft{Type: ErrBadLinkedInput, Message: "Bad linked input, must be a length-2 list of [node_id, slot_index]", Details: x,
					Extra: jsonobj.Of("input_name", x, "input_config", inputConfig, "received_value", val)})
				continue
			}
			srcID := fmt.Sprint(list[0])
			if n, ok := list[0].(json.Number); ok {
				srcID = n.String()
			}
			src, ok := v.p[srcID]
			if !ok {
				return nil, &pyException{"KeyError", pyRepr(srcID)}
			}
			srcInfo := v.info[src.ClassType]
			idx, okIdx := toInt64(list[1])
			if !okIdx {
				return nil, &pyException{"TypeError", "list indices must be integers or slices, not " + pyTypeName(list[1])}
			}
			if idx < 0 {
				idx += int64(len(srcInfo.Output))
			}
			if idx < 0 || idx >= int64(len(srcInfo.Output)) {
				return nil, &pyException{"IndexError", "tuple index out of range"}
			}
			received := srcInfo.Output[idx]
			if !typesMatch(received, spec) {
				rName := ioTypeRepr(received)
				details := fmt.Sprintf("%s, received_type(%s) mismatch input_type(%s)", x, rName, specTypeRepr(spec))
				if v.opts.Legacy {
					details = fmt.Sprintf("%s, %s != %s", x, rName, specTypeRepr(spec))
				}
				errs = append(errs, errorDraft{Type: ErrReturnTypeMismatch, Message: "Return type mismatch between linked nodes",
					Details: details,
					Extra:   jsonobj.Of("input_name", x, "input_config", inputConfig, "received_type", received, "linked_node", val)})
				continue
			}
			r, exc := v.validateInputs(srcID, append(visiting, id))
			if exc != nil {
				v.setResult(srcID, &nodeResult{reasons: []errorDraft{{
					Type: "exception_during_inner_validation", Message: "Exception when validating inner node", Details: exc.msg,
					Extra: jsonobj.Of("input_name", x, "input_config", inputConfig, "exception_message", exc.msg, "exception_type", exc.typ, "traceback", fakeTraceback(exc), "linked_node", val),
				}}})
				valid = false
				continue
			}
			if !r.ok {
				valid = false
			}
			continue
		}

		if m, isMap := val.(map[string]any); isMap {
			if inner, ok := m["__value__"]; ok {
				val = inner
				node.Inputs[x] = val
			}
		}
		conv, convErr := convertWidget(spec.Type, val)
		if convErr != "" {
			errs = append(errs, errorDraft{Type: ErrInvalidInputType, Message: fmt.Sprintf("Failed to convert an input value to a %s value", spec.Type),
				Details: fmt.Sprintf("%s, %s, %s", x, pyStr(val), convErr),
				Extra:   jsonobj.Of("input_name", x, "input_config", inputConfig, "received_value", val, "exception_message", convErr)})
			continue
		}
		if conv != nil {
			val = conv
			node.Inputs[x] = val
		}
		if judged[x] {
			continue
		}
		if lo, ok := spec.Min(); ok {
			if f, isNum := toFloat(val); isNum && f < lo {
				errs = append(errs, errorDraft{Type: ErrValueSmallerThanMin, Message: fmt.Sprintf("Value %s smaller than min of %s", pyStr(val), pyStr(spec.Config["min"])),
					Details: x, Extra: jsonobj.Of("input_name", x, "input_config", inputConfig, "received_value", val)})
				continue
			}
		}
		if hi, ok := spec.Max(); ok {
			if f, isNum := toFloat(val); isNum && f > hi {
				errs = append(errs, errorDraft{Type: ErrValueBiggerThanMax, Message: fmt.Sprintf("Value %s bigger than max of %s", pyStr(val), pyStr(spec.Config["max"])),
					Details: x, Extra: jsonobj.Of("input_name", x, "input_config", inputConfig, "received_value", val)})
				continue
			}
		}
		if spec.IsCombo() && !containsPy(spec.Options, val) {
			listInfo := pyStr(spec.Options)
			var cfgOut any = inputConfig
			if len(spec.Options) > 20 {
				listInfo = fmt.Sprintf("(list of length %d)", len(spec.Options))
				cfgOut = nil
			}
			errs = append(errs, errorDraft{Type: ErrValueNotInList, Message: "Value not in list",
				Details: fmt.Sprintf("%s: %s not in %s", x, pyRepr(val), listInfo),
				Extra:   jsonobj.Of("input_name", x, "input_config", cfgOut, "received_value", val)})
			continue
		}
	}

	failedNames := make([]string, 0, len(customFailed))
	for name := range customFailed {
		failedNames = append(failedNames, name)
	}
	sort.Strings(failedNames)
	for _, name := range failedNames {
		errs = append(errs, errorDraft{Type: ErrCustomValidationFailed, Message: "Custom validation failed for node",
			Details: name + " - " + customFailed[name], Extra: jsonobj.Of("input_name", name)})
	}

	prev, had := v.validated[id] // a cycle found below may have marked us
	res := &nodeResult{ok: valid && len(errs) == 0, reasons: errs}
	if had {
		res.ok = res.ok && prev.ok
		res.reasons = append(append([]errorDraft{}, prev.reasons...), errs...)
	}
	v.setResult(id, res)
	return res, nil
}

// typesMatch is comfy_execution.validation.validate_node_input, non-strict.
func typesMatch(received IOType, spec InputSpec) bool {
	if received.List || spec.ListForm {
		return received.List && spec.ListForm && pyStr(received.Options) == pyStr(spec.Options)
	}
	if received.Name == spec.Type || received.Name == "*" || spec.Type == "*" {
		return true
	}
	in := map[string]bool{}
	for _, t := range strings.Split(spec.Type, ",") {
		in[strings.TrimSpace(t)] = true
	}
	for _, t := range strings.Split(received.Name, ",") {
		if in[strings.TrimSpace(t)] {
			return true
		}
	}
	return false
}

func specFirst(s InputSpec) any {
	if s.ListForm {
		return s.Options
	}
	return s.Type
}

// specConfig is the config as ComfyUI echoes it in input_config: in the
// key order it was sent in.
func specConfig(s InputSpec) any {
	switch {
	case s.ConfigRaw != nil:
		return s.ConfigRaw
	case s.Config == nil:
		return map[string]any{}
	}
	return s.Config
}

func specTypeRepr(s InputSpec) string {
	if s.ListForm {
		return pyStr(s.Options)
	}
	return s.Type
}

func ioTypeRepr(t IOType) string {
	if t.List {
		return pyStr(t.Options)
	}
	return t.Name
}

// convertWidget applies Python's int()/float()/str()/bool() as ComfyUI
// does before range checks. It returns the converted value (nil when the
// type needs no conversion) or the Python exception text.
func convertWidget(typ string, val any) (any, string) {
	switch typ {
	case "INT":
		switch x := val.(type) {
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return json.Number(strconv.FormatInt(i, 10)), ""
			}
			if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
				return json.Number(strconv.FormatUint(u, 10)), ""
			}
			f, err := x.Float64()
			if err != nil {
				return nil, err.Error()
			}
			return json.Number(strconv.FormatFloat(math.Trunc(f), 'f', -1, 64)), ""
		case float64:
			return json.Number(strconv.FormatFloat(math.Trunc(x), 'f', -1, 64)), ""
		case bool:
			if x {
				return json.Number("1"), ""
			}
			return json.Number("0"), ""
		case string:
			s := strings.TrimSpace(x)
			if _, err := strconv.ParseInt(s, 10, 64); err != nil {
				return nil, fmt.Sprintf("invalid literal for int() with base 10: %s", pyRepr(x))
			}
			return json.Number(s), ""
		case nil:
			return nil, "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'"
		default:
			return nil, fmt.Sprintf("int() argument must be a string, a bytes-like object or a real number, not '%s'", pyTypeName(val))
		}
	case "FLOAT":
		switch x := val.(type) {
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, err.Error()
			}
			return f, ""
		case float64:
			return x, ""
		case bool:
			if x {
				return 1.0, ""
			}
			return 0.0, ""
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Sprintf("could not convert string to float: %s", pyRepr(x))
			}
			return f, ""
		case nil:
			return nil, "float() argument must be a string or a real number, not 'NoneType'"
		default:
			return nil, fmt.Sprintf("float() argument must be a string or a real number, not '%s'", pyTypeName(val))
		}
	case "STRING":
		if s, ok := val.(string); ok {
			return s, ""
		}
		return pyStr(val), ""
	case "BOOLEAN":
		return pyTruthy(val), ""
	}
	return nil, ""
}

func pyTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case json.Number:
		f, _ := x.Float64()
		return f != 0
	case float64:
		return x != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func containsPy(options []any, val any) bool {
	for _, o := range options {
		if pyEqual(o, val) {
			return true
		}
	}
	return false
}

func pyEqual(a, b any) bool {
	fa, okA := pyNumber(a)
	fb, okB := pyNumber(b)
	if okA && okB {
		return fa == fb
	}
	if okA != okB {
		return false
	}
	sa, okA := a.(string)
	sb, okB := b.(string)
	return okA && okB && sa == sb
}

func pyNumber(v any) (float64, bool) {
	if b, ok := v.(bool); ok {
		if b {
			return 1, true
		}
		return 0, true
	}
	return toFloat(v)
}

func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case string:
		return "str"
	case json.Number, float64:
		return "float"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

// pyStr formats a value like Python's str().
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			f, _ := x.Float64()
			return pyFloat(f)
		}
		return string(x)
	case float64:
		return pyFloat(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = pyRepr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []string:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = pyRepr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyRepr(k) + ": " + pyRepr(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// pyRepr formats a value like Python's repr().
func pyRepr(v any) string {
	s, ok := v.(string)
	if !ok {
		return pyStr(v)
	}
	quote := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, "\"") {
		quote = "\""
	}
	r := strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\t", "\\t", "\r", "\\r", quote, "\\"+quote)
	return quote + r.Replace(s) + quote
}

func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	case f == math.Trunc(f) && math.Abs(f) < 1e16:
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
