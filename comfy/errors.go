package comfy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Error types ComfyUI puts in ErrorInfo.Type.
const (
	ErrNoPrompt                = "no_prompt"
	ErrInvalidPrompt           = "invalid_prompt"
	ErrMissingNodeType         = "missing_node_type" // ComfyUI after January 2026, instead of invalid_prompt for an unknown class
	ErrInvalidPromptID         = "invalid_prompt_id"
	ErrPromptNoOutputs         = "prompt_no_outputs"
	ErrOutputsFailedValidation = "prompt_outputs_failed_validation"
	ErrRequiredInputMissing    = "required_input_missing"
	ErrBadLinkedInput          = "bad_linked_input"
	ErrReturnTypeMismatch      = "return_type_mismatch"
	ErrInvalidInputType        = "invalid_input_type"
	ErrValueSmallerThanMin     = "value_smaller_than_min"
	ErrValueBiggerThanMax      = "value_bigger_than_max"
	ErrValueNotInList          = "value_not_in_list"
	ErrCustomValidationFailed  = "custom_validation_failed"
	ErrDependencyCycle         = "dependency_cycle"
)

// ErrorInfo is one ComfyUI error object.
type ErrorInfo struct {
	Type      string          `json:"type"`
	Message   string          `json:"message"`
	Details   string          `json:"details"`
	ExtraInfo json.RawMessage `json:"extra_info"`
}

// NodeError collects the validation errors of one node.
type NodeError struct {
	Errors           []ErrorInfo `json:"errors"`
	DependentOutputs []string    `json:"dependent_outputs"`
	ClassType        string      `json:"class_type"`
}

// PromptError is ComfyUI's 400 reply to POST /prompt. It keeps the whole
// body so that callers can hand the details to a user unchanged.
type PromptError struct {
	StatusCode int                  `json:"-"`
	Info       ErrorInfo            `json:"error"`
	NodeErrors map[string]NodeError `json:"node_errors"`
	// Body is the reply exactly as received.
	Body []byte `json:"-"`
}

// UnmarshalJSON reads the 400 body of any ComfyUI version: current ones
// send {"error": {type, message, ...}, "node_errors": {...}}; before 2025
// "no prompt" came as {"error": "no prompt", "node_errors": []}, and
// node_errors without any as [].
func (e *PromptError) UnmarshalJSON(b []byte) error {
	var body struct {
		Error      json.RawMessage `json:"error"`
		NodeErrors json.RawMessage `json:"node_errors"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return err
	}
	var msg string
	if json.Unmarshal(body.Error, &msg) == nil {
		e.Info = ErrorInfo{Type: ErrInvalidPrompt, Message: msg, ExtraInfo: json.RawMessage("{}")}
		if msg == "no prompt" {
			e.Info.Type = ErrNoPrompt
		}
	} else if err := json.Unmarshal(body.Error, &e.Info); err != nil {
		return fmt.Errorf("comfy: prompt error: %w", err)
	}
	e.NodeErrors = map[string]NodeError{}
	if t := bytes.TrimSpace(body.NodeErrors); len(t) > 0 && t[0] == '{' {
		if err := json.Unmarshal(t, &e.NodeErrors); err != nil {
			return fmt.Errorf("comfy: prompt node_errors: %w", err)
		}
	}
	return nil
}

func (e *PromptError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "comfy: prompt rejected (%d %s): %s", e.StatusCode, e.Info.Type, e.Info.Message)
	if e.Info.Details != "" {
		fmt.Fprintf(&b, ": %s", e.Info.Details)
	}
	ids := make([]string, 0, len(e.NodeErrors))
	for id := range e.NodeErrors {
		ids = append(ids, id)
	}
	SortNodeIDs(ids)
	for _, id := range ids {
		ne := e.NodeErrors[id]
		for _, er := range ne.Errors {
			fmt.Fprintf(&b, "; node %s (%s): %s: %s", id, ne.ClassType, er.Type, er.Details)
		}
	}
	return b.String()
}

// UnknownNodeType reports whether the graph was rejected because it uses a
// node class the instance does not have, in either ComfyUI's old
// (invalid_prompt) or new (missing_node_type) wording.
func (e *PromptError) UnknownNodeType() bool {
	return e.Info.Type == ErrMissingNodeType ||
		(e.Info.Type == ErrInvalidPrompt && strings.Contains(e.Info.Message, "does not exist"))
}

// ErrorTypes lists every error type in the reply, the top-level one first,
// then the per-node ones sorted; handy in tests and logs.
func (e *PromptError) ErrorTypes() []string {
	out := []string{e.Info.Type}
	var per []string
	for _, ne := range e.NodeErrors {
		for _, er := range ne.Errors {
			per = append(per, er.Type)
		}
	}
	sort.Strings(per)
	return append(out, per...)
}

// HTTPError is any other non-2xx reply.
type HTTPError struct {
	Method     string
	URL        string
	StatusCode int
	Body       string
}

func (e *HTTPError) Error() string {
	body := e.Body
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("comfy: %s %s: HTTP %d: %s", e.Method, e.URL, e.StatusCode, strings.TrimSpace(body))
}
