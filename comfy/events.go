package comfy

import (
	"encoding/json"
	"time"
)

// Text message types on ComfyUI's /ws socket.
const (
	EventStatus               = "status"
	EventExecutionStart       = "execution_start"
	EventExecutionCached      = "execution_cached"
	EventExecuting            = "executing"
	EventProgress             = "progress"
	EventProgressState        = "progress_state"
	EventExecuted             = "executed"
	EventExecutionSuccess     = "execution_success"
	EventExecutionError       = "execution_error"
	EventExecutionInterrupted = "execution_interrupted"
	EventFeatureFlags         = "feature_flags"
)

// Types of events that come from binary frames, and synthetic ones from
// the Follower. They never appear as a "type" on the wire.
const (
	EventPreviewImage             = "b_preview_image"               // binary type 1
	EventProgressText             = "b_progress_text"               // binary type 3
	EventPreviewImageWithMetadata = "b_preview_image_with_metadata" // binary type 4
	EventBinaryUnknown            = "b_unknown"                     // any other binary type
	EventDisconnected             = "x_disconnected"                // the socket dropped; the Follower is retrying
	EventReconnected              = "x_reconnected"                 // the socket is back after a drop
)

// Binary frame types (protocol.BinaryEventTypes).
const (
	BinaryPreviewImage             uint32 = 1
	BinaryUnencodedPreviewImage    uint32 = 2 // server-internal in ComfyUI; sent as 1
	BinaryText                     uint32 = 3
	BinaryPreviewImageWithMetadata uint32 = 4
)

// Preview image formats in a type-1 frame.
const (
	ImageJPEG uint32 = 1
	ImagePNG  uint32 = 2
)

// Event is one message from the socket (or a synthetic one).
type Event struct {
	// Type is the text message's "type", or one of the b_/x_ types above.
	Type string
	// Frame is the frame exactly as received (nil for synthetic events):
	// relay it unchanged to pass the message on.
	Frame []byte
	// Binary is set for binary frames.
	Binary bool
	// Data is the text message's "data" member as received.
	Data json.RawMessage
	// Msg is the decoded payload: one of *StatusMsg, *ExecutionStart,
	// *ExecutionCached, *Executing, *Progress, *ProgressState, *Executed,
	// *ExecutionSuccess, *ExecutionError, *ExecutionInterrupted,
	// FeatureFlags, *PreviewImage, *PreviewImageWithMetadata,
	// *ProgressText, *Disconnected, *Reconnected; nil for unknown types.
	Msg any
}

// PromptID returns the prompt the event belongs to, or "" (status,
// feature flags, type-1 previews and progress text carry none).
func (e Event) PromptID() string {
	switch m := e.Msg.(type) {
	case *ExecutionStart:
		return m.PromptID
	case *ExecutionCached:
		return m.PromptID
	case *Executing:
		return m.PromptID
	case *Progress:
		return m.PromptID
	case *ProgressState:
		return m.PromptID
	case *Executed:
		return m.PromptID
	case *ExecutionSuccess:
		return m.PromptID
	case *ExecutionError:
		return m.PromptID
	case *ExecutionInterrupted:
		return m.PromptID
	case *PreviewImageWithMetadata:
		return m.Metadata.PromptID
	}
	return ""
}

// StatusMsg is "status". SID is set only in the first message of a
// connection; later status messages are broadcasts without it.
type StatusMsg struct {
	Status QueueStatus `json:"status"`
	SID    string      `json:"sid,omitempty"`
}

// ExecutionStart is "execution_start".
type ExecutionStart struct {
	PromptID  string `json:"prompt_id"`
	Timestamp int64  `json:"timestamp"`
}

// ExecutionCached is "execution_cached": nodes whose results were reused.
type ExecutionCached struct {
	Nodes     []string `json:"nodes"`
	PromptID  string   `json:"prompt_id"`
	Timestamp int64    `json:"timestamp"`
}

// Executing is "executing". Node is nil when the prompt has finished
// (ComfyUI's "executing null").
type Executing struct {
	Node        *string `json:"node"`
	DisplayNode *string `json:"display_node,omitempty"`
	PromptID    string  `json:"prompt_id,omitempty"`
}

// Progress is "progress" (sampler steps and other long nodes).
type Progress struct {
	Value    float64 `json:"value"`
	Max      float64 `json:"max"`
	PromptID string  `json:"prompt_id"`
	Node     string  `json:"node"`
}

// ProgressState is "progress_state": every started node's progress.
type ProgressState struct {
	PromptID string                       `json:"prompt_id"`
	Nodes    map[string]NodeProgressState `json:"nodes"`
}

// NodeProgressState is one node in ProgressState.
type NodeProgressState struct {
	Value         float64 `json:"value"`
	Max           float64 `json:"max"`
	State         string  `json:"state"` // running, finished, error
	NodeID        string  `json:"node_id"`
	PromptID      string  `json:"prompt_id"`
	DisplayNodeID string  `json:"display_node_id"`
	ParentNodeID  *string `json:"parent_node_id"`
	RealNodeID    string  `json:"real_node_id"`
}

// Executed is "executed": a node's UI output.
type Executed struct {
	Node        string     `json:"node"`
	DisplayNode string     `json:"display_node"`
	Output      NodeOutput `json:"output"`
	PromptID    string     `json:"prompt_id"`
}

// ExecutionSuccess is "execution_success".
type ExecutionSuccess struct {
	PromptID  string `json:"prompt_id"`
	Timestamp int64  `json:"timestamp"`
}

// ExecutionError is "execution_error".
type ExecutionError struct {
	PromptID         string          `json:"prompt_id"`
	NodeID           string          `json:"node_id"`
	NodeType         string          `json:"node_type"`
	Executed         []string        `json:"executed"`
	ExceptionMessage string          `json:"exception_message"`
	ExceptionType    string          `json:"exception_type"`
	Traceback        []string        `json:"traceback"`
	CurrentInputs    json.RawMessage `json:"current_inputs"`
	CurrentOutputs   json.RawMessage `json:"current_outputs"`
	Timestamp        int64           `json:"timestamp"`
}

// ExecutionInterrupted is "execution_interrupted".
type ExecutionInterrupted struct {
	PromptID  string   `json:"prompt_id"`
	NodeID    string   `json:"node_id"`
	NodeType  string   `json:"node_type"`
	Executed  []string `json:"executed"`
	Timestamp int64    `json:"timestamp"`
}

// FeatureFlags is "feature_flags" (and GET /features).
type FeatureFlags map[string]any

// PreviewImage is a binary type-1 frame.
type PreviewImage struct {
	ImageType uint32 // ImageJPEG or ImagePNG
	Image     []byte
}

// PreviewMetadata is the JSON of a type-4 frame.
type PreviewMetadata struct {
	NodeID        string  `json:"node_id"`
	PromptID      string  `json:"prompt_id"`
	DisplayNodeID string  `json:"display_node_id"`
	ParentNodeID  *string `json:"parent_node_id"`
	RealNodeID    string  `json:"real_node_id"`
	ImageType     string  `json:"image_type"` // "image/jpeg" or "image/png"
}

// PreviewImageWithMetadata is a binary type-4 frame.
type PreviewImageWithMetadata struct {
	Metadata PreviewMetadata
	// RawMetadata is the metadata JSON as sent (it may carry more keys).
	RawMetadata json.RawMessage
	Image       []byte
}

// ProgressText is a binary type-3 frame.
type ProgressText struct {
	NodeID string
	Text   string
}

// Disconnected is the synthetic event sent when the socket drops (or a
// connection attempt fails while it is down).
type Disconnected struct {
	Err error
}

// Reconnected is the synthetic event sent when the socket is back. Events
// sent while it was down are lost: reconcile with /queue and /history.
type Reconnected struct {
	Attempts int           // connection attempts it took
	Downtime time.Duration // since the drop
}
