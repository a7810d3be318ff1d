package workshop

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/comfy-workshop/workshop/internal/jsonappend"
	"github.com/comfy-workshop/workshop/internal/jsonscan"
)

// MarshalJSON encodes a job exactly as encoding/json encodes its fields
// (same names, omissions and escaping; TestJobJSONMatchesReflection keeps
// the two equal), written out by hand: a job is encoded at every
// submission, status change and read, and reflection was most of that.
func (j *Job) MarshalJSON() ([]byte, error) { return j.AppendJSON(make([]byte, 0, 384)) }

// AppendJSON appends the job's JSON to b. It is MarshalJSON without the
// check and copy that encoding/json makes of a Marshaler's output.
func (j *Job) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = jsonappend.String(b, j.ID)
	b = append(b, `,"number":`...)
	b = strconv.AppendUint(b, j.Seq, 10)
	if j.UserSeq != 0 {
		b = append(b, `,"user_number":`...)
		b = strconv.AppendUint(b, j.UserSeq, 10)
	}
	b = append(b, `,"user_id":`...)
	b = jsonappend.String(b, j.UserID)
	if b, err = appendRaw(b, `,"workflow":`, j.Workflow); err != nil {
		return nil, err
	}
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(j.Priority), 10)
	if j.Top != 0 {
		b = append(b, `,"top":`...)
		b = strconv.AppendInt(b, j.Top, 10)
	}
	b = append(b, `,"status":`...)
	b = jsonappend.String(b, string(j.Status))
	if b, err = appendTime(b, `,"created_at":`, &j.CreatedAt); err != nil {
		return nil, err
	}
	if b, err = appendTime(b, `,"started_at":`, j.StartedAt); err != nil {
		return nil, err
	}
	if b, err = appendTime(b, `,"completed_at":`, j.CompletedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(j.Attempts), 10)
	if len(j.Failures) > 0 {
		if b, err = appendValue(b, `,"failures":`, j.Failures); err != nil {
			return nil, err
		}
	}
	if b, err = appendRaw(b, `,"extra_data":`, j.ExtraData); err != nil {
		return nil, err
	}
	b = appendOptString(b, `,"workflow_id":`, j.WorkflowID)
	if len(j.Inputs) > 0 {
		b = append(b, `,"inputs":[`...)
		for i, in := range j.Inputs {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonappend.String(b, in)
		}
		b = append(b, ']')
	}
	if j.Result != nil {
		if b, err = appendValue(b, `,"result":`, j.Result); err != nil {
			return nil, err
		}
	}
	if j.Error != nil {
		if b, err = appendValue(b, `,"error":`, j.Error); err != nil {
			return nil, err
		}
	}
	if b, err = appendRaw(b, `,"metadata":`, j.Metadata); err != nil {
		return nil, err
	}
	b = appendOptString(b, `,"worker":`, j.Worker)
	if b, err = appendTime(b, `,"lease_expires_at":`, j.LeaseExpires); err != nil {
		return nil, err
	}
	b = appendOptString(b, `,"engine_prompt_id":`, j.EngineID)
	if j.Position != 0 {
		b = append(b, `,"position":`...)
		b = strconv.AppendInt(b, int64(j.Position), 10)
	}
	if j.ETASeconds != nil {
		if b, err = appendValue(b, `,"eta_seconds":`, *j.ETASeconds); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return jsonappend.String(append(b, key...), s)
}

// appendTime appends key and t, unless t is nil.
func appendTime(b []byte, key string, t *time.Time) ([]byte, error) {
	if t == nil {
		return b, nil
	}
	return jsonappend.Time(append(b, key...), *t)
}

// appendRaw appends key and raw, unless raw is empty. encoding/json
// compacts and HTML-escapes a RawMessage; so does this, through it, unless
// raw is valid and already so, as stored graphs mostly are.
func appendRaw(b []byte, key string, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return b, nil
	}
	if compactJSON(raw) && jsonscan.Valid(raw) {
		return append(append(b, key...), raw...), nil
	}
	return appendValue(b, key, raw)
}

// compactJSON reports whether JSON text b has no space outside its strings
// and nothing encoding/json's HTML escaping would change ('<', '>', '&',
// U+2028, U+2029).
func compactJSON(b []byte) bool {
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case c == '<' || c == '>' || c == '&':
			return false
		case c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9):
			return false
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}

// appendValue appends key and v as encoding/json encodes v: for the parts
// of a job that are rare or nested, where a hand-written encoder would be
// code to keep in step for little gain.
func appendValue(b []byte, key string, v any) ([]byte, error) {
	out, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(append(b, key...), out...), nil
}

// DecodeJob reads a job as encoding/json would from what AppendJSON
// writes, in one pass and without reflection (TestDecodeJobMatchesReflection
// keeps the two equal). Keys are matched exactly; unknown ones are
// skipped. Nothing returned aliases b.
func DecodeJob(b []byte) (*Job, error) {
	j := new(Job)
	r := jsonscan.New(b)
	err := r.Object(func(key []byte) error {
		k := string(key)
		if k != "workflow" && k != "extra_data" && k != "metadata" && r.Null() {
			return nil // as encoding/json: the field keeps its zero value
		}
		var err error
		switch k {
		case "id":
			j.ID, err = r.String()
		case "number":
			j.Seq, err = r.Uint64()
		case "user_number":
			j.UserSeq, err = r.Uint64()
		case "user_id":
			j.UserID, err = r.String()
		case "workflow":
			j.Workflow, err = r.RawCopy()
		case "priority":
			j.Priority, err = r.Int()
		case "top":
			j.Top, err = r.Int64()
		case "status":
			var s string
			s, err = r.String()
			j.Status = JobStatus(s)
		case "created_at":
			err = readTime(r, &j.CreatedAt)
		case "started_at":
			j.StartedAt, err = readTimePtr(r)
		case "completed_at":
			j.CompletedAt, err = readTimePtr(r)
		case "attempts":
			j.Attempts, err = r.Int()
		case "failures":
			err = readValue(r, &j.Failures)
		case "extra_data":
			j.ExtraData, err = r.RawCopy()
		case "workflow_id":
			j.WorkflowID, err = r.String()
		case "inputs":
			err = readValue(r, &j.Inputs)
		case "result":
			err = readValue(r, &j.Result)
		case "error":
			err = readValue(r, &j.Error)
		case "metadata":
			j.Metadata, err = r.RawCopy()
		case "worker":
			j.Worker, err = r.String()
		case "lease_expires_at":
			j.LeaseExpires, err = readTimePtr(r)
		case "engine_prompt_id":
			j.EngineID, err = r.String()
		case "position":
			j.Position, err = r.Int()
		case "eta_seconds":
			var f float64
			f, err = r.Float64()
			j.ETASeconds = &f
		}
		return err
	})
	if err == nil {
		err = r.End()
	}
	if err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	return j, nil
}

func readTime(r *jsonscan.Reader, t *time.Time) error {
	b, err := r.Raw()
	if err != nil {
		return err
	}
	return t.UnmarshalJSON(b)
}

func readTimePtr(r *jsonscan.Reader) (*time.Time, error) {
	t := new(time.Time)
	return t, readTime(r, t)
}

// readValue decodes a rare or nested part through encoding/json.
func readValue(r *jsonscan.Reader, v any) error {
	b, err := r.Raw()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
