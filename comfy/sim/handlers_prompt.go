package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/google/uuid"
)

func (s *Server) handleGetPrompt(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.queueInfo())
}

type promptBody struct {
	Prompt                  json.RawMessage `json:"prompt"`
	ClientID                json.RawMessage `json:"client_id"`
	PromptID                json.RawMessage `json:"prompt_id"`
	ExtraData               json.RawMessage `json:"extra_data"`
	Number                  *json.Number    `json:"number"`
	Front                   any             `json:"front"`
	PartialExecutionTargets []string        `json:"partial_execution_targets"`
}

// handlePostPrompt is POST /prompt, step for step as server.py does it.
func (s *Server) handlePostPrompt(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadSize)
	var body promptBody
	if err := readJSON(r, &body); err != nil {
		internalError(w) // request.json() raising in aiohttp
		return
	}
	// The number is taken (and the counter moves) before validation.
	var number json.Number
	if body.Number != nil {
		f, err := body.Number.Float64()
		if err != nil {
			internalError(w)
			return
		}
		number = json.Number(pyFloatString(f))
	} else {
		n := s.number.Add(1) - 1
		if truthy(body.Front) {
			n = -n
		}
		number = json.Number(strconv.FormatInt(n, 10))
	}
	if len(body.Prompt) == 0 || string(body.Prompt) == "null" {
		s.stats.rejected.Add(1)
		if s.cfg.Legacy {
			writeJSON(w, http.StatusBadRequest, jsonobj.Of("error", "no prompt", "node_errors", []any{}))
			return
		}
		writeJSON(w, http.StatusBadRequest, jsonobj.Of("error", jsonobj.Of(
			"type", comfy.ErrNoPrompt, "message", "No prompt provided", "details", "No prompt provided", "extra_info", jsonobj.Object{},
		), "node_errors", jsonobj.Object{}))
		return
	}
	promptID, errBody := s.choosePromptID(body.PromptID)
	if errBody != nil {
		s.stats.rejected.Add(1)
		writeJSON(w, http.StatusBadRequest, errBody)
		return
	}
	prompt, err := comfy.ParsePrompt(body.Prompt)
	if err != nil {
		internalError(w) // a prompt that is not an object breaks ComfyUI too
		return
	}
	outputs, nodeErrors, perr := comfy.ValidatePrompt(prompt, s.objectInfoFor(prompt), comfy.ValidateOptions{
		PartialExecutionTargets: body.PartialExecutionTargets,
		Custom:                  s.customValidate,
		MissingNodeType:         s.cfg.MissingNodeType,
		Legacy:                  s.cfg.Legacy,
	})
	// extra_data as posted, in its order, with the client_id set in it.
	extraObj, err := jsonobj.Parse(body.ExtraData)
	if err != nil {
		extraObj = jsonobj.Object{}
	}
	if len(body.ClientID) > 0 {
		extraObj.Set("client_id", body.ClientID)
	}
	if perr != nil {
		s.stats.rejected.Add(1)
		s.log.Warn("invalid prompt", "type", perr.Info.Type, "message", perr.Info.Message, "details", perr.Info.Details)
		writeJSON(w, http.StatusBadRequest, jsonobj.Of("error", perr.Info, "node_errors", s.nodeErrors(perr.NodeErrors)))
		return
	}
	if !s.cfg.Legacy {
		extraObj.Set("create_time", jsonobj.Raw(time.Now().UnixMilli()))
	}
	extraRaw, _ := extraObj.MarshalJSON()
	var extra map[string]any
	dec := json.NewDecoder(bytes.NewReader(extraRaw))
	dec.UseNumber()
	_ = dec.Decode(&extra)
	// The prompt as posted: ComfyUI keeps its key order.
	var raw bytes.Buffer
	if json.Compact(&raw, body.Prompt) != nil {
		b, _ := json.Marshal(prompt)
		raw.Write(b)
	}
	j := &job{number: number, id: promptID, prompt: prompt, raw: raw.Bytes(), extra: extra, extraRaw: extraRaw, outputs: outputs, ended: make(chan struct{})}
	j.priority, _ = number.Float64()
	if f, ok := extra["sim"]; ok {
		b, _ := json.Marshal(f)
		_ = json.Unmarshal(b, &j.faults)
	}
	s.queue.put(j)
	s.stats.queued.Add(1)
	s.log.Info("got prompt", "prompt_id", promptID, "number", number, "client_id", extra["client_id"], "outputs", outputs)
	if s.cfg.Instant {
		// As a real ComfyUI may, with a cached graph: the prompt runs to
		// its end, every event sent, before the post is answered.
		select {
		case <-j.ended:
		case <-s.closing:
		case <-r.Context().Done():
		}
	}
	if s.takePromptAnswerDrop() {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				s.log.Warn("fault: dropping the answer to a queued prompt", "prompt_id", promptID)
				c.Close()
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, jsonobj.Of("prompt_id", promptID, "number", number, "node_errors", nonNil(nodeErrors)))
}

func nonNil(m map[string]comfy.NodeError) map[string]comfy.NodeError {
	if m == nil {
		return map[string]comfy.NodeError{}
	}
	return m
}

// nodeErrors is a 400 answer's node_errors: an object, or in the older
// ComfyUI an empty list when there are none.
func (s *Server) nodeErrors(m map[string]comfy.NodeError) any {
	if len(m) == 0 && s.cfg.Legacy {
		return []any{}
	}
	return nonNil(m)
}

// choosePromptID applies the configured ComfyUI generation's rule.
func (s *Server) choosePromptID(raw json.RawMessage) (string, jsonobj.Object) {
	var given any
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &given)
	}
	if given == nil || s.cfg.PromptIDs == PromptIDIgnore || s.cfg.Legacy {
		return uuid.NewString(), nil
	}
	if s.cfg.PromptIDs == PromptIDAny {
		if str, ok := given.(string); ok {
			return str, nil
		}
		return strings.TrimSpace(string(raw)), nil
	}
	str, ok := given.(string)
	if u, err := uuid.Parse(str); ok && err == nil && u.String() == str {
		return str, nil
	}
	return "", jsonobj.Of("error", jsonobj.Of(
		"type", comfy.ErrInvalidPromptID, "message", "prompt_id must be a valid UUID",
		"details", "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one",
		"extra_info", jsonobj.Object{},
	), "node_errors", jsonobj.Object{})
}

// customValidate is the VALIDATE_INPUTS of the nodes that have one.
func (s *Server) customValidate(id string, node comfy.Node, info comfy.NodeInfo) ([]string, map[string]string) {
	if node.ClassType != "LoadImage" {
		return nil, nil
	}
	name, _ := node.Inputs["image"].(string)
	if _, _, isLink := comfy.AsLink(node.Inputs["image"]); isLink {
		return []string{"image"}, nil
	}
	if _, ok := s.annotatedPath(name, "input"); !ok {
		return []string{"image"}, map[string]string{"image": "Invalid image file: " + name}
	}
	return []string{"image"}, nil
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case json.Number:
		f, _ := x.Float64()
		return f != 0
	case string:
		return x != ""
	}
	return true
}

func pyFloatString(f float64) string {
	if f == float64(int64(f)) && f < 1e16 && f > -1e16 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func (s *Server) handleGetQueue(w http.ResponseWriter, r *http.Request) {
	running, pending := s.queue.snapshot()
	writeJSON(w, http.StatusOK, comfy.Queue{Running: running, Pending: pending})
}

// handlePostQueue is POST /queue: clear and delete touch pending prompts only.
func (s *Server) handlePostQueue(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		internalError(w)
		return
	}
	if truthy(body["clear"]) {
		s.queue.wipe()
	}
	if del, ok := body["delete"].([]any); ok {
		for _, id := range del {
			if str, ok := id.(string); ok {
				s.queue.delete(str)
			}
		}
	}
	empty(w, http.StatusOK)
}

// handleInterrupt is POST /interrupt: with a prompt_id, only if that prompt
// is running; without, whatever runs. Always 200.
func (s *Server) handleInterrupt(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if readJSON(r, &body) != nil {
		body = map[string]any{}
	}
	if pid, _ := body["prompt_id"].(string); pid != "" {
		if s.queue.runningID() == pid {
			s.log.Info("interrupting prompt", "prompt_id", pid)
			s.exec.interrupt()
		} else {
			s.log.Info("prompt is not currently running, skipping interrupt", "prompt_id", pid)
		}
	} else {
		s.log.Info("global interrupt (no prompt_id specified)")
		s.exec.interrupt()
	}
	empty(w, http.StatusOK)
}

func (s *Server) handleFree(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		internalError(w)
		return
	}
	if truthy(body["free_memory"]) {
		s.exec.free()
	}
	empty(w, http.StatusOK)
}

func (s *Server) handleGetHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	maxItems, offset := -1, -1
	if v := q.Get("max_items"); q.Has("max_items") {
		n, err := strconv.Atoi(v)
		if err != nil {
			internalError(w) // int() raising
			return
		}
		maxItems = n
	}
	if v := q.Get("offset"); q.Has("offset") {
		n, err := strconv.Atoi(v)
		if err != nil {
			internalError(w)
			return
		}
		offset = n
	}
	ids, entries := s.queue.historyPage(maxItems, offset)
	writeRawJSON(w, http.StatusOK, orderedHistory(ids, entries))
}

// orderedHistory writes {id: entry, ...} in the given order; a Go map
// would sort the ids, and ComfyUI clients rely on oldest-first.
func orderedHistory(ids []string, entries []*historyEntry) []byte {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(id)
		buf.Write(k)
		buf.WriteByte(':')
		e, _ := json.Marshal(entries[i])
		buf.Write(e)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

func (s *Server) handleGetHistoryID(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("prompt_id")
	e, ok := s.queue.historyOf(id)
	if !ok {
		writeRawJSON(w, http.StatusOK, []byte("{}"))
		return
	}
	writeRawJSON(w, http.StatusOK, orderedHistory([]string{id}, []*historyEntry{e}))
}

func (s *Server) handlePostHistory(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		internalError(w)
		return
	}
	if truthy(body["clear"]) {
		s.queue.wipeHistory()
	}
	if del, ok := body["delete"].([]any); ok {
		for _, id := range del {
			if str, ok := id.(string); ok {
				s.queue.deleteHistory(str)
			}
		}
	}
	empty(w, http.StatusOK)
}
