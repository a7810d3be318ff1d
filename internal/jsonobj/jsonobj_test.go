package jsonobj_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

func TestParseKeepsOrderAndBytes(t *testing.T) {
	in := `{"z": 1, "a": {"y": [1, 2.50], "b": null}, "m": "x", "z": 3}`
	o, err := jsonobj.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Keys(); !slices.Equal(got, []string{"z", "a", "m"}) {
		t.Errorf("keys %v", got)
	}
	// Values stay as written (json.Marshal would compact them, keeping
	// their order and number spellings).
	b, _ := o.MarshalJSON()
	if string(b) != `{"z":3,"a":{"y": [1, 2.50], "b": null},"m":"x"}` {
		t.Errorf("written %s", b)
	}
	for _, bad := range []string{`[1]`, `{"a":1} {}`, `{"a":`, ``} {
		if _, err := jsonobj.Parse([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOfSetDelete(t *testing.T) {
	o := jsonobj.Of("type", "status", "data", jsonobj.Of("b", 1, "a", json.RawMessage(`[true]`)))
	o.Set("type", json.RawMessage(`"x"`))
	o.Set("extra", json.RawMessage(`{}`))
	o.Delete("data")
	b, _ := json.Marshal(o)
	if string(b) != `{"type":"x","extra":{}}` {
		t.Errorf("got %s", b)
	}
}

func TestEditTouchesOnlyThePath(t *testing.T) {
	in := `{"B": {"input": {"required": {"image": [["a.png"], {"image_upload": true}], "channel": [["red"]]}}}, "A": {"x": 1}}`
	out, ok, err := jsonobj.Edit([]byte(in), []string{"B", "input", "required", "image"}, func(json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`[["mine.png"], {"image_upload": true}]`), nil
	})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := `{"B":{"input":{"required":{"image":[["mine.png"], {"image_upload": true}],"channel":[["red"]]}}},"A":{"x": 1}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	if _, ok, _ := jsonobj.Edit([]byte(in), []string{"B", "nope"}, nil); ok {
		t.Error("edited a missing path")
	}
}

func TestKeyPathsAndShape(t *testing.T) {
	a := `{"n": {"input": {"required": {"image": [["a", "b"], {"upload": true}], "c": [["x"]]}}}, "list": [{"k": 1}]}`
	b := `{"n": {"input": {"required": {"image": [[], {"upload": false}], "c": [["y", "z"]]}}}, "list": [{"k": 2}]}`
	pa, _ := jsonobj.KeyPaths([]byte(a))
	pb, _ := jsonobj.KeyPaths([]byte(b))
	if !slices.Equal(pa, pb) {
		t.Errorf("%v != %v", pa, pb)
	}
	want := []string{"n", "n.input", "n.input.required", "n.input.required.image", "n.input.required.image[1].upload", "n.input.required.c", "list", "list[0].k"}
	if !slices.Equal(pa, want) {
		t.Errorf("paths %v", pa)
	}
	swapped := `{"n": {"input": {"required": {"c": [["x"]], "image": [[], {}]}}}, "list": []}`
	ps, _ := jsonobj.KeyPaths([]byte(swapped))
	if slices.Equal(pa, ps) {
		t.Error("swapped keys compare equal")
	}
	s, err := jsonobj.Shape([]byte(`{"a": [1, "x"], "b": {"c": null, "d": true}, "e": [], "f": [{"k": 1}, {"k": 2}]}`))
	if err != nil || s != `{a:[number,string],b:{c:null,d:bool},e:[],f:[{k:number}]}` {
		t.Errorf("shape %s %v", s, err)
	}
}
