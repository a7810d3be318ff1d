package jsonscan_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/comfy-workshop/workshop/internal/jsonscan"
)

var seeds = []string{
	`{}`, `[]`, `""`, `0`, `-0.5e+3`, `true`, `false`, `null`, ` {"a" : [1, "x", {"b":null}] } `,
	`{"1":{"class_type":"KSampler","inputs":{"seed":5,"model":["4",0]}}}`,
	`{"k\u00e9y":"\ud83d\ude00","x\"":"a\\b\/c\n"}`, `"bad\xffutf8"`, `{"\xff":1}`,
	`{"a":1,"a":2}`, `01`, `1.`, `1e`, `-`, `{"a"}`, `{"a":}`, `[1,]`, `{,}`, `"\u12"`, `"\x01"`,
	`tru`, `nul`, `{"a":1}x`, `[[[[`, `9223372036854775808`, `-9223372036854775808`, `1.0`, `"\q"`,
}

// valid is what the package accepts as one whole JSON text.
func valid(b []byte) error {
	r := jsonscan.New(b)
	if err := r.Skip(); err != nil {
		return err
	}
	return r.End()
}

// FuzzAgreesWithEncodingJSON: jsonscan accepts exactly what encoding/json
// accepts and reads the same keys, strings and integers from it.
func FuzzAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := valid(b)
		if want := json.Valid(b); (err == nil) != want {
			t.Fatalf("%q: jsonscan says %v, encoding/json valid=%v", b, err, want)
		}
		if err != nil {
			var se *jsonscan.SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(b) {
				t.Fatalf("%q: error %v has no offset in the input", b, err)
			}
			return
		}
		var compacted bytes.Buffer
		json.Compact(&compacted, b)
		if got, want := jsonscan.Compact(b), bytes.Equal(compacted.Bytes(), b); got != want {
			t.Fatalf("%q: Compact = %v, json.Compact leaves it as it is: %v", b, got, want)
		}
		r := jsonscan.New(b)
		raw, err := r.Raw()
		if err != nil || !bytes.Equal(raw, bytes.TrimSpace(b)) {
			t.Fatalf("%q: Raw = %q, %v", b, raw, err)
		}
		switch bytes.TrimSpace(b)[0] {
		case '{':
			want := map[string]json.RawMessage{}
			json.Unmarshal(b, &want)
			got := map[string]json.RawMessage{}
			r := jsonscan.New(b)
			err := r.Object(func(key []byte) error {
				v, err := r.Raw()
				got[string(key)] = v
				return err
			})
			if err != nil || len(got) != len(want) {
				t.Fatalf("%q: members %q, %v; encoding/json %q", b, got, err, want)
			}
			for k, v := range want {
				if !bytes.Equal(got[k], v) {
					t.Fatalf("%q: member %q is %q, encoding/json %q", b, k, got[k], v)
				}
			}
		case '"':
			var want string
			json.Unmarshal(b, &want)
			if got, err := jsonscan.New(b).String(); err != nil || got != want {
				t.Fatalf("%q: String = %q, %v; encoding/json %q", b, got, err, want)
			}
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			var want int
			werr := json.Unmarshal(b, &want)
			got, err := jsonscan.New(b).Int()
			if (err == nil) != (werr == nil) || got != want {
				t.Fatalf("%q: Int = %d, %v; encoding/json %d, %v", b, got, err, want, werr)
			}
		}
	})
}

func TestErrorsSayWhere(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,}`:  "invalid character '}' looking for beginning of object key string at offset 7",
		`{"a" 1}`:   "invalid character '1' after object key at offset 5",
		`[1 2]`:     "invalid character '2' after array element at offset 3",
		`{"a":tru}`: "invalid character '}' in literal true (expecting 'e') at offset 8",
		`"ab`:       "unexpected end of JSON input at offset 3",
		`"a` + "\n": `invalid character '\n' in string literal at offset 2`,
		`{} {}`:     "invalid character '{' after top-level value at offset 3",
	} {
		if err := valid([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	if err := valid([]byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))); err != nil {
		t.Errorf("10,000 levels, encoding/json's limit: %v", err)
	}
	deep := strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)
	if err := valid([]byte(deep)); err == nil || !strings.Contains(err.Error(), "exceeded max depth") {
		t.Errorf("10,001 levels: %v", err)
	}
}

// TestUnreadValuesAreChecked: a value the caller does not read is still
// checked, so a walk that takes one field cannot accept a broken body.
func TestUnreadValuesAreChecked(t *testing.T) {
	r := jsonscan.New([]byte(`{"skip":[1,{"x":tru}],"take":"v"}`))
	err := r.Object(func([]byte) error { return nil })
	if err == nil {
		t.Fatal("a broken value no one read was accepted")
	}
	r = jsonscan.New([]byte(` {"skip" : [1, {"x": true}], "take": "v"} `))
	var took string
	err = r.Object(func(key []byte) error {
		if string(key) == "take" {
			var err error
			took, err = r.String()
			return err
		}
		r.Peek() // looking does not read
		return nil
	})
	if err != nil || took != "v" || r.End() != nil {
		t.Fatalf("took %q, %v", took, err)
	}
}

func BenchmarkSkip(b *testing.B) {
	body := []byte(`{"user_id":"user001","workflow":{"1":{"class_type":"EmptyImage","inputs":{"width":512,"height":512,"batch_size":1,"color":12345}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"bench"}}}}`)
	b.Run("jsonscan", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			valid(body)
		}
	})
	b.Run("encoding-json-Valid", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			json.Valid(body)
		}
	})
}

// TestKeysOutliveNestedKeys: a key stays as it was while its value's own
// keys are read, escaped ones included.
func TestKeysOutliveNestedKeys(t *testing.T) {
	r := jsonscan.New([]byte(`{"n\u00f61":{"k\u00e9y":1,"x":2}}`))
	err := r.Object(func(outer []byte) error {
		if err := r.Object(func([]byte) error { return r.Skip() }); err != nil {
			return err
		}
		if string(outer) != "nö1" {
			t.Errorf("outer key is %q after its value", outer)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
