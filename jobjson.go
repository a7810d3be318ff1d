package workshop

import (
	"bytes"
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
	w := &jobWriter{b: append(b, '{')}
	w.str(`"id":`, j.ID)
	w.uint(`,"number":`, j.Seq, true)
	w.uint(`,"user_number":`, j.UserSeq, false)
	w.str(`,"user_id":`, j.UserID)
	w.raw(`,"workflow":`, j.Workflow)
	w.int(`,"priority":`, int64(j.Priority), true)
	w.int(`,"top":`, j.Top, false)
	w.str(`,"status":`, string(j.Status))
	w.time(`,"created_at":`, &j.CreatedAt)
	w.time(`,"started_at":`, j.StartedAt)
	w.time(`,"completed_at":`, j.CompletedAt)
	w.int(`,"attempts":`, int64(j.Attempts), true)
	if len(j.Failures) > 0 {
		w.value(`,"failures":`, j.Failures)
	}
	w.raw(`,"extra_data":`, j.ExtraData)
	w.optStr(`,"workflow_id":`, j.WorkflowID)
	if len(j.Inputs) > 0 {
		w.b = append(w.b, `,"inputs":[`...)
		for i, in := range j.Inputs {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = jsonappend.String(w.b, in)
		}
		w.b = append(w.b, ']')
	}
	if j.Result != nil {
		w.value(`,"result":`, j.Result)
	}
	if j.Error != nil {
		w.value(`,"error":`, j.Error)
	}
	w.raw(`,"metadata":`, j.Metadata)
	w.optStr(`,"worker":`, j.Worker)
	w.time(`,"lease_expires_at":`, j.LeaseExpires)
	w.optStr(`,"engine_prompt_id":`, j.EngineID)
	w.int(`,"position":`, int64(j.Position), false)
	if j.ETASeconds != nil {
		w.value(`,"eta_seconds":`, *j.ETASeconds)
	}
	if w.err != nil {
		return nil, w.err
	}
	return append(w.b, '}'), nil
}

// jobWriter appends a job's members; the first error stops the rest.
type jobWriter struct {
	b   []byte
	err error
}

func (w *jobWriter) str(key, s string) { w.b = jsonappend.String(append(w.b, key...), s) }

// optStr, and uint and int unless always, leave out a zero value
// (omitempty).
func (w *jobWriter) optStr(key, s string) {
	if s != "" {
		w.str(key, s)
	}
}

func (w *jobWriter) uint(key string, n uint64, always bool) {
	if always || n != 0 {
		w.b = strconv.AppendUint(append(w.b, key...), n, 10)
	}
}

func (w *jobWriter) int(key string, n int64, always bool) {
	if always || n != 0 {
		w.b = strconv.AppendInt(append(w.b, key...), n, 10)
	}
}

// time writes t as time.Time's MarshalJSON does, unless t is nil.
func (w *jobWriter) time(key string, t *time.Time) {
	if t != nil && w.err == nil {
		w.b, w.err = jsonappend.Time(append(w.b, key...), *t)
	}
}

// raw writes raw unless it is empty. encoding/json compacts and
// HTML-escapes a RawMessage; so does this, through it, unless raw is valid
// and already so, as stored graphs mostly are.
func (w *jobWriter) raw(key string, raw json.RawMessage) {
	switch {
	case len(raw) == 0:
	case !bytes.ContainsAny(raw, "<>&\u2028\u2029") && jsonscan.Compact(raw):
		w.b = append(append(w.b, key...), raw...)
	default:
		w.value(key, raw)
	}
}

// value writes v as encoding/json encodes it: for the parts of a job that
// are rare or nested, where a hand-written encoder would be code to keep
// in step for little gain.
func (w *jobWriter) value(key string, v any) {
	if w.err != nil {
		return
	}
	out, err := json.Marshal(v)
	if w.err = err; err == nil {
		w.b = append(append(w.b, key...), out...)
	}
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
