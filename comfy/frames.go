package comfy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// DecodeText decodes a text frame {"type", "data"}. Unknown types decode
// with a nil Msg and their Data kept, so they can be passed through.
func DecodeText(frame []byte) (Event, error) {
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(frame, &env); err != nil {
		return Event{}, fmt.Errorf("comfy: bad socket message: %w", err)
	}
	ev := Event{Type: env.Type, Frame: frame, Data: env.Data}
	var msg any
	switch env.Type {
	case EventStatus:
		msg = &StatusMsg{}
	case EventExecutionStart:
		msg = &ExecutionStart{}
	case EventExecutionCached:
		msg = &ExecutionCached{}
	case EventExecuting:
		msg = &Executing{}
	case EventProgress:
		msg = &Progress{}
	case EventProgressState:
		msg = &ProgressState{}
	case EventExecuted:
		msg = &Executed{}
	case EventExecutionSuccess:
		msg = &ExecutionSuccess{}
	case EventExecutionError:
		msg = &ExecutionError{}
	case EventExecutionInterrupted:
		msg = &ExecutionInterrupted{}
	case EventFeatureFlags:
		ff := FeatureFlags{}
		if err := json.Unmarshal(env.Data, &ff); err != nil {
			return ev, fmt.Errorf("comfy: bad %s message: %w", env.Type, err)
		}
		ev.Msg = ff
		return ev, nil
	default:
		return ev, nil
	}
	if len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, msg); err != nil {
			return ev, fmt.Errorf("comfy: bad %s message: %w", env.Type, err)
		}
	}
	ev.Msg = msg
	return ev, nil
}

// DecodeBinary decodes a binary frame: a 4-byte big-endian type, then the
// payload.
func DecodeBinary(frame []byte) (Event, error) {
	ev := Event{Frame: frame, Binary: true, Type: EventBinaryUnknown}
	if len(frame) < 4 {
		return ev, fmt.Errorf("comfy: binary frame of %d bytes", len(frame))
	}
	typ := binary.BigEndian.Uint32(frame)
	payload := frame[4:]
	switch typ {
	case BinaryPreviewImage:
		ev.Type = EventPreviewImage
		if len(payload) < 4 {
			return ev, fmt.Errorf("comfy: short preview frame")
		}
		ev.Msg = &PreviewImage{ImageType: binary.BigEndian.Uint32(payload), Image: payload[4:]}
	case BinaryText:
		ev.Type = EventProgressText
		if len(payload) < 4 {
			return ev, fmt.Errorf("comfy: short progress text frame")
		}
		n := binary.BigEndian.Uint32(payload)
		if uint64(n) > uint64(len(payload)-4) {
			return ev, fmt.Errorf("comfy: progress text node id overruns frame")
		}
		ev.Msg = &ProgressText{NodeID: string(payload[4 : 4+n]), Text: string(payload[4+n:])}
	case BinaryPreviewImageWithMetadata:
		ev.Type = EventPreviewImageWithMetadata
		if len(payload) < 4 {
			return ev, fmt.Errorf("comfy: short preview-with-metadata frame")
		}
		n := binary.BigEndian.Uint32(payload)
		if uint64(n) > uint64(len(payload)-4) {
			return ev, fmt.Errorf("comfy: preview metadata overruns frame")
		}
		raw := json.RawMessage(payload[4 : 4+n])
		m := &PreviewImageWithMetadata{RawMetadata: raw, Image: payload[4+n:]}
		if err := json.Unmarshal(raw, &m.Metadata); err != nil {
			return ev, fmt.Errorf("comfy: preview metadata: %w", err)
		}
		ev.Msg = m
	}
	return ev, nil
}

// EncodeText builds a text frame.
func EncodeText(typ string, data any) ([]byte, error) {
	return json.Marshal(struct {
		Type string `json:"type"`
		Data any    `json:"data"`
	}{typ, data})
}

// EncodePreviewImage builds a type-1 frame.
func EncodePreviewImage(imageType uint32, img []byte) []byte {
	out := make([]byte, 8, 8+len(img))
	binary.BigEndian.PutUint32(out, BinaryPreviewImage)
	binary.BigEndian.PutUint32(out[4:], imageType)
	return append(out, img...)
}

// EncodePreviewImageWithMetadata builds a type-4 frame.
func EncodePreviewImageWithMetadata(meta any, img []byte) ([]byte, error) {
	js, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 8, 8+len(js)+len(img))
	binary.BigEndian.PutUint32(out, BinaryPreviewImageWithMetadata)
	binary.BigEndian.PutUint32(out[4:], uint32(len(js)))
	out = append(out, js...)
	return append(out, img...), nil
}

// EncodeProgressText builds a type-3 frame.
func EncodeProgressText(nodeID, text string) []byte {
	out := make([]byte, 8, 8+len(nodeID)+len(text))
	binary.BigEndian.PutUint32(out, BinaryText)
	binary.BigEndian.PutUint32(out[4:], uint32(len(nodeID)))
	out = append(out, nodeID...)
	return append(out, text...)
}

// RenamePrompt rewrites a frame's prompt id from one id to another,
// changing nothing else (key order, spacing, numbers stay as sent): in a
// text frame every JSON string equal to from, in a type-4 preview its
// metadata's. A frame without from is returned as is.
func RenamePrompt(frame []byte, isBinary bool, from, to string) []byte {
	if from == "" || from == to {
		return frame
	}
	old, _ := json.Marshal(from)
	repl, _ := json.Marshal(to)
	if !isBinary {
		return bytes.ReplaceAll(frame, old, repl)
	}
	if len(frame) < 8 || binary.BigEndian.Uint32(frame) != BinaryPreviewImageWithMetadata {
		return frame
	}
	n := binary.BigEndian.Uint32(frame[4:8])
	if uint64(n) > uint64(len(frame)-8) {
		return frame
	}
	md := bytes.ReplaceAll(frame[8:8+n], old, repl)
	out := make([]byte, 8, 8+len(md)+len(frame)-int(8+n))
	binary.BigEndian.PutUint32(out, BinaryPreviewImageWithMetadata)
	binary.BigEndian.PutUint32(out[4:], uint32(len(md)))
	out = append(out, md...)
	return append(out, frame[8+n:]...)
}
