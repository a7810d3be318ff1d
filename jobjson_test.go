package workshop

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// plainJob is Job without its methods: what encoding/json makes of the
// fields by reflection.
type plainJob Job

// TestJobJSONMatchesReflection: the hand-written encoder writes the bytes
// encoding/json writes, for jobs with every field set or left out at
// random (so a field added to Job and not to the encoder fails here), and
// strings that need escaping.
func TestJobJSONMatchesReflection(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		j := new(Job)
		fill(reflect.ValueOf(j).Elem(), rnd, 0)
		want, err := json.Marshal((*plainJob)(j))
		if err != nil {
			t.Fatal(err)
		}
		got, err := j.AppendJSON(nil)
		if err != nil || string(got) != string(want) {
			t.Fatalf("job %d:\n got %s (%v)\nwant %s", i, got, err, want)
		}
		if viaMarshal, _ := json.Marshal(j); string(viaMarshal) != string(want) {
			t.Fatalf("job %d through json.Marshal:\n got %s\nwant %s", i, viaMarshal, want)
		}
	}
}

var (
	texts = []string{"", "plain", "user007", `a"b\c`, "<b>&amp;", "Zoë 猫", "\u2028\u2029", "\x00\x1f", "bad\xffutf8", "\u202e"}
	raws  = []string{`{"a": 1, "b": [true, null]}`, `[1, "<x>"]`, `null`, `"s"`, `{"k":"\u2028"}`, ` 42 `, `{"p":"a cat, \"quoted\" \\"}`, "{\"p\":\"\u2028\"}", `{"p":"&"}`}
	zones = []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("W", -8*3600)}
)

// fill sets the fields of v at random, leaving a third of them zero.
func fill(v reflect.Value, rnd *rand.Rand, depth int) {
	if rnd.IntN(3) == 0 && depth > 0 {
		return
	}
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Unix(rnd.Int64N(4e9), rnd.Int64N(1e9)*int64(rnd.IntN(2))).In(zones[rnd.IntN(len(zones))])))
		return
	case reflect.TypeFor[json.RawMessage]():
		v.SetBytes([]byte(raws[rnd.IntN(len(raws))]))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), rnd, depth+1)
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), rnd, depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), rnd.IntN(3), 3)
		for i := range s.Len() {
			fill(s.Index(i), rnd, depth+1)
		}
		v.Set(s)
	case reflect.String:
		v.SetString(texts[rnd.IntN(len(texts))])
	case reflect.Int, reflect.Int64:
		v.SetInt(rnd.Int64N(1<<40) - 1<<39)
	case reflect.Uint64:
		v.SetUint(rnd.Uint64())
	case reflect.Float64:
		v.SetFloat([]float64{0, 1.5, 1e21, 1e-7, 12345.678}[rnd.IntN(5)])
	default:
		panic("fill: a field of kind " + v.Kind().String())
	}
}

func BenchmarkJobJSON(b *testing.B) {
	now := time.Now().UTC()
	j := &Job{ID: "0193a8f2-7c1e-7d3a-9f00-1234567890ab", Seq: 123456, UserSeq: 12, UserID: "user042", Priority: 2, Status: StatusPending, CreatedAt: now, Attempts: 0, Position: 17}
	b.Run("by-hand", func(b *testing.B) {
		for b.Loop() {
			j.AppendJSON(nil)
		}
	})
	b.Run("reflection", func(b *testing.B) {
		for b.Loop() {
			json.Marshal((*plainJob)(j))
		}
	})
}

// TestDecodeJobMatchesReflection: DecodeJob reads back what AppendJSON
// writes as encoding/json reads it, every field set or left out at random.
func TestDecodeJobMatchesReflection(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 5))
	for i := range 3000 {
		j := new(Job)
		fill(reflect.ValueOf(j).Elem(), rnd, 0)
		b, err := j.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		var want plainJob
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeJob(b)
		if err != nil || !reflect.DeepEqual((*plainJob)(got), &want) {
			t.Fatalf("job %d from %s:\n got %+v (%v)\nwant %+v", i, b, got, err, want)
		}
	}
}

func TestDecodeJobAsEncodingJSON(t *testing.T) {
	for _, rec := range []string{
		`{"id":"a","number":1,"user_id":"u","metadata":null,"started_at":null,"failures":null,"worker":null,"old_field":{"x":[1]},"status":"pending","created_at":"2026-12-04T10:00:00Z","attempts":0}`,
		`{"id":"b","number":2}`, // a record from before most fields
		` { "id" : "c\u00e9" , "priority" : 3 } `,
	} {
		var want plainJob
		if err := json.Unmarshal([]byte(rec), &want); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeJob([]byte(rec))
		if err != nil || !reflect.DeepEqual((*plainJob)(got), &want) {
			t.Errorf("%s:\n got %+v (%v)\nwant %+v", rec, got, err, want)
		}
	}
	for _, bad := range []string{`{"id":1}`, `{"number":-1}`, `{"created_at":"yesterday"}`, `{"id":"a"`, `[]`} {
		if _, err := DecodeJob([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
