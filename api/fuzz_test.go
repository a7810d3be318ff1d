package api_test

import (
	"encoding/json"
	"testing"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/api"
)

// FuzzDecodeSubmission checks that any body either decodes to a submission
// that satisfies every rule, or is refused with a caller error; never a panic
// and never an internal error.
func FuzzDecodeSubmission(f *testing.F) {
	for _, seed := range []string{
		`{"user_id":"user001","workflow":` + graph + `}`,
		`{"user_id":"u","workflow":` + graph + `,"priority":0,"metadata":{"a":[1,2]}}`,
		`{"user_id":"u","workflow":{"1":{"class_type":"X","inputs":null}}}`,
		`{"user_id":"u","workflow":{"1":{"class_type":"X","inputs":[]}}}`,
		`{"user_id":"..","workflow":{}}`,
		`{"user_id":null}`, `[]`, `""`, `{`, ``, `{"user_id":"u","workflow":"{}"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := api.DecodeSubmission(body)
		if err == nil {
			err = s.Validate()
		}
		if err != nil {
			if c := workshop.ErrorCode(err); c != workshop.EINVALID && c != workshop.ETOOLARGE {
				t.Fatalf("error code %q for %q: %v", c, body, err)
			}
			return
		}
		if !workshop.ValidUserID(s.UserID) {
			t.Fatalf("accepted user id %q", s.UserID)
		}
		if s.Priority != nil && !workshop.ValidPriority(*s.Priority) {
			t.Fatalf("accepted priority %d", *s.Priority)
		}
		// Read as ComfyUI reads it: the key is exactly "class_type".
		var nodes map[string]map[string]json.RawMessage
		if err := json.Unmarshal(s.Workflow, &nodes); err != nil || len(nodes) == 0 {
			t.Fatalf("accepted workflow %q: %v", s.Workflow, err)
		}
		for id, n := range nodes {
			var class string
			if id == "" || json.Unmarshal(n["class_type"], &class) != nil || class == "" {
				t.Fatalf("accepted node %q %s", id, n)
			}
		}
		if len(s.Metadata) > 0 && !json.Valid(s.Metadata) {
			t.Fatalf("accepted metadata %q", s.Metadata)
		}
	})
}
