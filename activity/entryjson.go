package activity

import (
	"strconv"

	"github.com/comfy-workshop/workshop/internal/jsonappend"
)

// AppendJSON appends the entry as encoding/json encodes it
// (TestEntryJSONMatchesReflection keeps the two equal): one is written at
// every submission and completion.
func (e Entry) AppendJSON(b []byte) ([]byte, error) {
	b = jsonappend.String(append(b, `{"id":`...), e.ID)
	b, err := jsonappend.Time(append(b, `,"time":`...), e.Time)
	if err != nil {
		return nil, err
	}
	b = jsonappend.String(append(b, `,"actor":`...), e.Actor)
	b = jsonappend.String(append(b, `,"kind":`...), e.Kind)
	b = jsonappend.String(append(b, `,"action":`...), e.Action)
	for _, f := range [...]struct{ key, v string }{{`,"detail":`, e.Detail}, {`,"job_id":`, e.JobID}, {`,"user_id":`, e.UserID}} {
		if f.v != "" {
			b = jsonappend.String(append(b, f.key...), f.v)
		}
	}
	if e.JobNumber != 0 {
		b = strconv.AppendUint(append(b, `,"job_number":`...), e.JobNumber, 10)
	}
	if e.Worker != "" {
		b = jsonappend.String(append(b, `,"worker":`...), e.Worker)
	}
	return append(b, '}'), nil
}
