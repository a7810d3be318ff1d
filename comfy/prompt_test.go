package comfy

import "testing"

func TestCountNodes(t *testing.T) {
	for raw, want := range map[string]int{
		`{}`: 0,
		`{"1":{"class_type":"A","inputs":{"x":["2",0],"s":"a:b"}},"2":{"class_type":"B"}}`: 2,
		`{"1":{"inputs":{"t":"\":{\"x\":"}},"2":{}}`:                                       2,
		` { "a" : [ {"b":1} ] , "c":{"d":{"e":2}} } `:                                      2,
	} {
		if got := CountNodes([]byte(raw), 100); got != want {
			t.Errorf("%s: %d, want %d", raw, got, want)
		}
	}
	if got := CountNodes([]byte(`{"1":{},"2":{},"3":{},"4":{}}`), 2); got != 3 {
		t.Errorf("stops past max: %d", got)
	}
}
