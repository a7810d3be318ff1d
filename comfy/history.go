package comfy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// HistoryEntry is one finished prompt in /history.
type HistoryEntry struct {
	// PromptID is the key the entry was listed under.
	PromptID string `json:"-"`
	// Prompt is the queue item the prompt ran as.
	Prompt QueueItem `json:"prompt"`
	// Outputs maps node id -> UI output: key -> JSON value. Files appear
	// as lists of {filename, subfolder, type} under any key ("images",
	// "gifs", "videos", "audio", ...); use Files to collect them.
	Outputs map[string]NodeOutput `json:"outputs"`
	Status  *ExecStatus           `json:"status"`
	// Meta maps node id -> where the output came from (subgraph nodes).
	Meta map[string]OutputMeta `json:"meta,omitempty"`
	// Raw is the entry as the server sent it, in its key order (Outputs
	// and Meta are maps, which lose it).
	Raw json.RawMessage `json:"-"`
}

// NodeOutput is the UI output of one node.
type NodeOutput map[string]json.RawMessage

// OutputMeta is a history entry's "meta" record for a node.
type OutputMeta struct {
	NodeID      string  `json:"node_id"`
	DisplayNode string  `json:"display_node"`
	ParentNode  *string `json:"parent_node"`
	RealNodeID  string  `json:"real_node_id"`
}

// ExecStatus is a history entry's "status".
type ExecStatus struct {
	// StatusStr is "success" or "error" (an interrupt is an error too).
	StatusStr string          `json:"status_str"`
	Completed bool            `json:"completed"`
	Messages  []StatusMessage `json:"messages"`
}

// StatusMessage is one [event, data] pair of ExecStatus.Messages.
type StatusMessage struct {
	Event string
	Data  json.RawMessage
}

// MarshalJSON writes the pair as a two-element array.
func (m StatusMessage) MarshalJSON() ([]byte, error) {
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return json.Marshal([]any{m.Event, data})
}

// UnmarshalJSON reads the two-element array.
func (m *StatusMessage) UnmarshalJSON(b []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != 2 {
		return fmt.Errorf("comfy: status message is not [event, data]: %s", b)
	}
	if err := json.Unmarshal(parts[0], &m.Event); err != nil {
		return err
	}
	m.Data = append(json.RawMessage(nil), parts[1]...)
	return nil
}

// Interrupted reports whether the prompt ended with execution_interrupted.
func (s *ExecStatus) Interrupted() bool {
	if s == nil {
		return false
	}
	for _, m := range s.Messages {
		if m.Event == EventExecutionInterrupted {
			return true
		}
	}
	return false
}

// Succeeded reports whether the prompt completed successfully.
func (e *HistoryEntry) Succeeded() bool {
	return e.Status != nil && e.Status.StatusStr == "success" && e.Status.Completed
}

// FileRef names a file the way /view and the outputs do.
type FileRef struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	// Type is "output", "input" or "temp".
	Type string `json:"type"`
}

// OutputFile is a file found in a node's outputs.
type OutputFile struct {
	FileRef
	NodeID string
	// Key is the output key the file was listed under ("images", "gifs"...).
	Key string
	// Animated is set when the node also reported "animated": [true] (how
	// ComfyUI's own SaveVideo/SaveWEBM/SaveAnimatedWEBP mark video files
	// listed under "images").
	Animated bool
	// Extra holds the other members of the file object (format,
	// frame_rate, fullpath...) as sent.
	Extra map[string]json.RawMessage
}

// Files returns every file in the entry's outputs.
func (e *HistoryEntry) Files() []OutputFile { return OutputFiles(e.Outputs) }

// OutputFiles collects every list of {filename, subfolder, type} objects
// under any key of any node, in node-id then key order. Lists of anything
// else (text, numbers, the "animated" flags) are skipped.
func OutputFiles(outputs map[string]NodeOutput) []OutputFile {
	ids := make([]string, 0, len(outputs))
	for id := range outputs {
		ids = append(ids, id)
	}
	SortNodeIDs(ids)
	var files []OutputFile
	for _, id := range ids {
		files = append(files, nodeFiles(id, outputs[id])...)
	}
	return files
}

func nodeFiles(nodeID string, out NodeOutput) []OutputFile {
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	animated := false
	if raw, ok := out["animated"]; ok {
		var flags []any
		if json.Unmarshal(raw, &flags) == nil {
			for _, f := range flags {
				if b, _ := f.(bool); b {
					animated = true
				}
			}
		}
	}
	var files []OutputFile
	for _, k := range keys {
		var items []json.RawMessage
		if json.Unmarshal(out[k], &items) != nil {
			continue
		}
		for _, item := range items {
			f, ok := parseFileObject(item)
			if !ok {
				continue
			}
			f.NodeID, f.Key, f.Animated = nodeID, k, animated
			files = append(files, f)
		}
	}
	return files
}

func parseFileObject(item json.RawMessage) (OutputFile, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(item, &obj) != nil {
		return OutputFile{}, false
	}
	var f OutputFile
	if json.Unmarshal(obj["filename"], &f.Filename) != nil || f.Filename == "" {
		return OutputFile{}, false
	}
	if json.Unmarshal(obj["type"], &f.Type) != nil {
		return OutputFile{}, false
	}
	if raw, ok := obj["subfolder"]; ok {
		if json.Unmarshal(raw, &f.Subfolder) != nil {
			return OutputFile{}, false
		}
	}
	for _, k := range []string{"filename", "subfolder", "type"} {
		delete(obj, k)
	}
	if len(obj) > 0 {
		f.Extra = obj
	}
	return f, true
}

// decodeHistory reads a /history object, keeping the server's key order
// (ComfyUI lists oldest first; a Go map would lose that).
func decodeHistory(data []byte) ([]HistoryEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("comfy: history: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("comfy: history is not an object")
	}
	var entries []HistoryEntry
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("comfy: history: %w", err)
		}
		key, _ := keyTok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("comfy: history entry %s: %w", key, err)
		}
		var e HistoryEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("comfy: history entry %s: %w", key, err)
		}
		e.PromptID, e.Raw = key, raw
		entries = append(entries, e)
	}
	return entries, nil
}
