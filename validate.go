package workshop

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/comfy-workshop/workshop/internal/jsonscan"
)

// Limits on what a submission may carry.
const (
	MaxUserIDLen    = 64
	MaxMetadataSize = 16 << 10
	MaxWorkflowSize = 8 << 20
	// DefaultMaxNodes caps the nodes of a participant's graph: the
	// workshop's real workflows have tens, ComfyUI's biggest templates a
	// few hundred.
	DefaultMaxNodes = 5000
)

// ValidUserID reports whether id is a usable participant id: 1 to 64 of
// letters, digits, '_', '-' and '.', so ids are safe in paths and keys.
func ValidUserID(id string) bool {
	if id == "" || len(id) > MaxUserIDLen || id == "." || id == ".." {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// ValidateWorkflow checks that raw is a ComfyUI API-format graph: a non-empty
// object whose values are nodes with a class_type and, if present, an inputs
// object. Deeper checks (node types, links, values) need the engine's
// object_info and happen where that is known.
func ValidateWorkflow(raw json.RawMessage) error {
	_, err := WorkflowClasses(raw)
	return err
}

// WorkflowClasses validates raw as ValidateWorkflow does and returns the
// node classes it uses, sorted, each once: what an instance must have to
// run it.
func WorkflowClasses(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, Errorf(EINVALID, "workflow is required")
	}
	if len(raw) > MaxWorkflowSize {
		return nil, Errorf(ETOOLARGE, "workflow is larger than %d bytes", MaxWorkflowSize)
	}
	if raw[0] != '{' {
		return nil, Errorf(EINVALID, "workflow must be a JSON object of nodes (ComfyUI API format)")
	}
	// One pass checks the graph and reads each node's class: the graph is
	// kept as written, so nothing else of it needs decoding.
	r := jsonscan.New(raw)
	classes := make([]string, 0, 16)
	err := r.Object(func(id []byte) error {
		if len(id) == 0 {
			return Errorf(EINVALID, "workflow has a node with an empty id")
		}
		class, err := nodeClass(r, id)
		if err != nil {
			return err
		}
		classes = append(classes, class)
		return nil
	})
	if err == nil {
		err = r.End()
	}
	var syntax *jsonscan.SyntaxError
	if errors.As(err, &syntax) {
		return nil, Errorf(EINVALID, "workflow is not valid JSON: %v", err)
	}
	if err != nil {
		return nil, err
	}
	if len(classes) == 0 {
		return nil, Errorf(EINVALID, "workflow has no nodes")
	}
	slices.Sort(classes)
	return slices.Compact(classes), nil
}

// nodeClass reads one node of a graph and returns its class_type.
func nodeClass(r *jsonscan.Reader, id []byte) (string, error) {
	notNode := func() error {
		return Errorf(EINVALID, "workflow node %q is not an object with a string class_type (is this a UI-format workflow? export it with \"Export (API)\")", id)
	}
	class := ""
	switch r.Peek() {
	case 'n':
		r.Null()
	case '{':
		err := r.Object(func(key []byte) error {
			switch string(key) {
			case "class_type":
				if r.Null() {
					class = ""
					return nil
				}
				if r.Peek() != '"' {
					return notNode()
				}
				var err error
				class, err = r.String()
				return err
			case "inputs":
				if p := r.Peek(); p != '{' && p != 'n' {
					return Errorf(EINVALID, "workflow node %q: inputs must be an object", id)
				}
			}
			return r.Skip()
		})
		if err != nil {
			return "", err
		}
	default:
		return "", notNode()
	}
	if class == "" {
		return "", Errorf(EINVALID, "workflow node %q has no class_type (is this a UI-format workflow? export it with \"Export (API)\")", id)
	}
	return class, nil
}

// ValidateMetadata checks the free-form metadata a job may carry.
func ValidateMetadata(raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > MaxMetadataSize {
		return Errorf(ETOOLARGE, "metadata is larger than %d bytes", MaxMetadataSize)
	}
	if !json.Valid(raw) {
		return Errorf(EINVALID, "metadata is not valid JSON")
	}
	return nil
}

// ValidPriority reports whether p is one of the four priorities.
func ValidPriority(p int) bool { return p >= PriorityInstructor && p <= PriorityLowest }

// SafeText reports whether s can be shown as a name (of a seat, a file, a
// workflow, an output prefix) without changing what is around it: valid
// UTF-8 with no control characters (CR/LF break logs, headers and file
// names) and no bidirectional controls, which can make "gpj.exe" look like
// "exe.jpg" in the instructor's lists.
func SafeText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unsafeRune(r) {
			return false
		}
	}
	return true
}

// unsafeRune reports a rune SafeText refuses in valid UTF-8: a control
// character, or a bidirectional formatting one (marks, embeddings,
// overrides, isolates: Unicode's Bidi_Control property).
func unsafeRune(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }
