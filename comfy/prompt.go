package comfy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/comfy-workshop/workshop/internal/jsonscan"
)

// Prompt is an API-format graph: node id -> node. It is what ComfyUI calls
// "prompt" in POST /prompt.
type Prompt map[string]Node

// Node is one node of an API-format graph.
type Node struct {
	ClassType string `json:"class_type"`
	// Inputs maps an input name to a widget value (number, string, bool) or
	// to a link, a two-element list [source_node_id, output_index].
	// ParsePrompt decodes numbers as json.Number so that 64-bit seeds
	// survive the round trip.
	Inputs map[string]any `json:"inputs"`
	Meta   *NodeMeta      `json:"_meta,omitempty"`
}

// NodeMeta is the optional "_meta" member of a node.
type NodeMeta struct {
	Title string `json:"title,omitempty"`
}

// ParsePrompt decodes an API-format graph, keeping numbers exact.
func ParsePrompt(data []byte) (Prompt, error) {
	var p Prompt
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("comfy: parse prompt: %w", err)
	}
	return p, nil
}

// CountNodes counts the members of the JSON object raw (the nodes of an
// API-format graph) without decoding it, and stops counting past max, so
// an oversized graph is turned away in one quick pass. Malformed JSON is
// left for the decoder to report: the count stops where it is.
func CountNodes(raw []byte, max int) int {
	n := 0
	r := jsonscan.New(raw)
	r.Object(func([]byte) error {
		if n++; n > max {
			return errPastMax
		}
		return r.Skip()
	})
	return n
}

var errPastMax = errors.New("past the most nodes")

// Link builds a link value for Node.Inputs.
func Link(nodeID string, output int) []any { return []any{nodeID, output} }

// AsLink reports whether an input value is a well-formed link and returns
// its parts. ComfyUI treats any list as a link attempt; a list that is not
// [string, int] is a bad link (see ValidatePrompt).
func AsLink(v any) (nodeID string, output int, ok bool) {
	l, isList := v.([]any)
	if !isList || len(l) != 2 {
		return "", 0, false
	}
	switch id := l[0].(type) {
	case string:
		nodeID = id
	case json.Number:
		nodeID = id.String()
	case float64:
		nodeID = strconv.FormatFloat(id, 'f', -1, 64)
	default:
		return "", 0, false
	}
	n, okN := toInt64(l[1])
	if !okN || n < 0 {
		return "", 0, false
	}
	return nodeID, int(n), true
}

// SortedNodeIDs returns the graph's node ids in ComfyUI's natural order:
// numeric ids by value, then other ids (e.g. subgraph ids "5:3") as text.
func (p Prompt) SortedNodeIDs() []string {
	ids := make([]string, 0, len(p))
	for id := range p {
		ids = append(ids, id)
	}
	SortNodeIDs(ids)
	return ids
}

// SortNodeIDs sorts node ids numerically where they are numbers.
func SortNodeIDs(ids []string) {
	sort.Slice(ids, func(i, j int) bool { return lessNodeID(ids[i], ids[j]) })
}

func lessNodeID(a, b string) bool {
	na, errA := strconv.ParseInt(a, 10, 64)
	nb, errB := strconv.ParseInt(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		return na < nb
	case errA == nil:
		return true
	case errB == nil:
		return false
	}
	return a < b
}

// toInt64 converts a JSON-decoded number to int64 when it is integral.
func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err == nil {
			return i, true
		}
		f, err := n.Float64()
		if err != nil || f != float64(int64(f)) {
			return 0, false
		}
		return int64(f), true
	case float64:
		if n != float64(int64(n)) {
			return 0, false
		}
		return int64(n), true
	case int:
		return int64(n), true
	case int64:
		return n, true
	}
	return 0, false
}
