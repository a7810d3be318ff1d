package comfy

import (
	"encoding/json"
	"fmt"
)

// PromptRequest is the body of POST /prompt.
type PromptRequest struct {
	// Prompt is the API-format graph: a Prompt, a json.RawMessage, or
	// anything that marshals to the same object.
	Prompt any `json:"prompt"`
	// ClientID routes the prompt's socket events to the /ws connection
	// opened with the same clientId.
	ClientID string `json:"client_id,omitempty"`
	// PromptID asks ComfyUI to use this id. ComfyUI before mid-2025 ignores
	// it and mints its own; current ComfyUI requires a canonical lowercase
	// UUID. Always use the id in PromptResponse.
	PromptID  string         `json:"prompt_id,omitempty"`
	ExtraData map[string]any `json:"extra_data,omitempty"`
	// Number sets the queue priority explicitly (lower runs first).
	Number *float64 `json:"number,omitempty"`
	// Front queues ahead of everything pending (ComfyUI negates its counter).
	Front                   bool     `json:"front,omitempty"`
	PartialExecutionTargets []string `json:"partial_execution_targets,omitempty"`
}

// PromptResponse is the 200 reply of POST /prompt.
type PromptResponse struct {
	PromptID string      `json:"prompt_id"`
	Number   json.Number `json:"number"`
	// NodeErrors lists nodes of outputs that failed validation while other
	// outputs of the same graph passed (the prompt still runs).
	NodeErrors map[string]NodeError `json:"node_errors"`
}

// QueueStatus is the payload of GET /prompt and of the "status" message.
type QueueStatus struct {
	ExecInfo ExecInfo `json:"exec_info"`
}

// ExecInfo counts running plus pending prompts.
type ExecInfo struct {
	QueueRemaining int `json:"queue_remaining"`
}

// Queue is the reply of GET /queue.
type Queue struct {
	Running []QueueItem `json:"queue_running"`
	// Pending is in ComfyUI's heap order, not sorted: sort by Number to get
	// the execution order.
	Pending []QueueItem `json:"queue_pending"`
}

// QueueItem is ComfyUI's queue tuple, sent as a five-element array
// [number, prompt_id, prompt, extra_data, outputs_to_execute].
type QueueItem struct {
	// Number is the priority; an integer from ComfyUI's counter, negative
	// for front, or a float when the client gave "number".
	Number           json.Number
	PromptID         string
	Prompt           json.RawMessage
	ExtraData        json.RawMessage
	OutputsToExecute []string
}

// MarshalJSON writes the five-element array.
func (q QueueItem) MarshalJSON() ([]byte, error) {
	num := q.Number
	if num == "" {
		num = "0"
	}
	prompt, extra := q.Prompt, q.ExtraData
	if len(prompt) == 0 {
		prompt = json.RawMessage("{}")
	}
	if len(extra) == 0 {
		extra = json.RawMessage("{}")
	}
	outs := q.OutputsToExecute
	if outs == nil {
		outs = []string{}
	}
	return json.Marshal([]any{num, q.PromptID, prompt, extra, outs})
}

// UnmarshalJSON reads the array form. Newer ComfyUI strips a sixth
// "sensitive" element before sending; extra elements are ignored anyway.
func (q *QueueItem) UnmarshalJSON(data []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return fmt.Errorf("comfy: queue item is not an array: %w", err)
	}
	if len(parts) < 5 {
		return fmt.Errorf("comfy: queue item has %d elements, want 5", len(parts))
	}
	if err := json.Unmarshal(parts[0], &q.Number); err != nil {
		return fmt.Errorf("comfy: queue item number: %w", err)
	}
	if err := json.Unmarshal(parts[1], &q.PromptID); err != nil {
		return fmt.Errorf("comfy: queue item prompt_id: %w", err)
	}
	q.Prompt = append(json.RawMessage(nil), parts[2]...)
	q.ExtraData = append(json.RawMessage(nil), parts[3]...)
	if err := json.Unmarshal(parts[4], &q.OutputsToExecute); err != nil {
		return fmt.Errorf("comfy: queue item outputs_to_execute: %w", err)
	}
	return nil
}

// ClientID returns extra_data.client_id, or "" when absent.
func (q QueueItem) ClientID() string {
	var ed struct {
		ClientID string `json:"client_id"`
	}
	_ = json.Unmarshal(q.ExtraData, &ed)
	return ed.ClientID
}
