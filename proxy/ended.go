package proxy

import (
	"bytes"
	"encoding/json"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// A job's end, told as ComfyUI tells it: on the socket its end event
// (execution_success, execution_error or execution_interrupted), then a
// status, then executing with node null; in the history the same events
// among the status messages. The workshop tells it from its own record,
// when the job is done in its queue (outputs home, not retried elsewhere),
// so a client that reads the history or the files on execution_success
// finds them; the instance's own end events are not relayed.

// endEvent is the event a finished job's end is told with. typ is "" for a
// job that never ran (taken out of the queue before it started): it has no
// end to tell.
func endEvent(j *workshop.Job) (typ string, data json.RawMessage) {
	at := millis(j.CompletedAt)
	switch j.Status {
	case workshop.StatusCompleted:
		return "execution_success", raw(jsonobj.Of("prompt_id", j.ID, "timestamp", at))
	case workshop.StatusCancelled:
		if j.StartedAt == nil {
			return "", nil
		}
		var where struct {
			NodeID   string `json:"node_id"`
			NodeType string `json:"node_type"`
		}
		if j.Error != nil {
			json.Unmarshal(j.Error.Details, &where)
		}
		return "execution_interrupted", raw(jsonobj.Of("prompt_id", j.ID, "node_id", where.NodeID, "node_type", where.NodeType,
			"executed", []string{}, "timestamp", at))
	case workshop.StatusFailed:
		// The instance's own words where it sent them (under the job's id).
		if j.Error != nil && bytes.HasPrefix(bytes.TrimSpace(j.Error.Details), []byte("{")) {
			switch j.Error.Type {
			case "execution_error":
				return "execution_error", j.Error.Details
			case "interrupted":
				return "execution_interrupted", j.Error.Details
			}
		}
		msg, typ := "the job failed", "error"
		if j.Error != nil {
			msg, typ = j.Error.Message, j.Error.Type
		}
		return "execution_error", raw(jsonobj.Of("prompt_id", j.ID, "node_id", "", "node_type", "", "executed", []string{},
			"exception_message", msg, "exception_type", typ, "traceback", []string{},
			"current_inputs", jsonobj.Object{}, "current_outputs", []string{}, "timestamp", at))
	}
	return "", nil
}

// historyMessages are a finished job's status messages: the instance's
// own for a completed job, else its start and end as ComfyUI records them.
func historyMessages(j *workshop.Job) json.RawMessage {
	if j.Status == workshop.StatusCompleted && j.Result != nil && len(j.Result.Messages) > 0 {
		return j.Result.Messages
	}
	var msgs []any
	if j.StartedAt != nil {
		at := millis(j.StartedAt)
		msgs = append(msgs,
			[]any{"execution_start", jsonobj.Of("prompt_id", j.ID, "timestamp", at)},
			[]any{"execution_cached", jsonobj.Of("nodes", []string{}, "prompt_id", j.ID, "timestamp", at)})
	}
	if typ, data := endEvent(j); typ != "" {
		msgs = append(msgs, []any{typ, data})
	}
	if msgs == nil {
		return json.RawMessage("[]")
	}
	b, _ := json.Marshal(msgs)
	return b
}

// frame is a socket text message {"type", "data"}.
func frame(typ string, data json.RawMessage) []byte {
	return raw(jsonobj.Of("type", typ, "data", data))
}

// executingDone is "executing" with node null: the prompt is over.
func executingDone(id string) []byte {
	return frame("executing", raw(jsonobj.Of("node", nil, "prompt_id", id)))
}

// metaOf is the history meta of outputs recorded without it: each output
// node is its own display node.
func metaOf(outputs json.RawMessage) json.RawMessage {
	nodes, err := jsonobj.Parse(outputs)
	if err != nil {
		return json.RawMessage("{}")
	}
	meta := make(jsonobj.Object, 0, len(nodes))
	for _, n := range nodes {
		meta = append(meta, jsonobj.Member{Key: n.Key, Value: raw(jsonobj.Of(
			"node_id", n.Key, "display_node", n.Key, "parent_node", nil, "real_node_id", n.Key))})
	}
	return raw(meta)
}

// rewriteOutputs renames every file in a ComfyUI outputs object to where
// this server serves it (subfolder = the job id, filename = its stored
// name), keeping the instance's order of nodes and keys.
func rewriteOutputs(outputs json.RawMessage, jobID string) json.RawMessage {
	nodes, err := jsonobj.Parse(outputs)
	if err != nil {
		return outputs
	}
	for i, n := range nodes {
		nodes[i].Value = rewriteNodeOutput(n.Value, jobID)
	}
	return raw(nodes)
}

// rewriteNodeOutput renames the files of one node's output. A preview
// (type temp) stays a temp file, as ComfyUI lists it; everything else the
// workshop keeps is an output.
func rewriteNodeOutput(out json.RawMessage, jobID string) json.RawMessage {
	keys, err := jsonobj.Parse(out)
	if err != nil {
		return out
	}
	for i, k := range keys {
		var items []json.RawMessage
		if json.Unmarshal(k.Value, &items) != nil || len(items) == 0 {
			continue
		}
		changed := false
		for n, item := range items {
			f, err := jsonobj.Parse(item)
			if err != nil {
				continue
			}
			var name, sub, typ string
			fn, _ := f.Get("filename")
			if json.Unmarshal(fn, &name) != nil || name == "" {
				continue
			}
			if v, ok := f.Get("subfolder"); ok {
				json.Unmarshal(v, &sub)
			}
			if v, ok := f.Get("type"); ok {
				json.Unmarshal(v, &typ)
			}
			f.Set("filename", jsonobj.Raw(workshop.StoredName(name, sub, typ)))
			f.Set("subfolder", jsonobj.Raw(jobID))
			if typ != "temp" {
				f.Set("type", jsonobj.Raw("output"))
			}
			items[n], changed = raw(f), true
		}
		if changed {
			keys[i].Value, _ = json.Marshal(items)
		}
	}
	return raw(keys)
}

func raw(o jsonobj.Object) json.RawMessage {
	b, _ := o.MarshalJSON()
	return b
}

// millis is a time as ComfyUI's timestamps are: milliseconds (now if unset).
func millis(t *time.Time) int64 {
	if t == nil {
		return time.Now().UnixMilli()
	}
	return t.UnixMilli()
}
