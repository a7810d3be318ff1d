package sim_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/gorilla/websocket"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden compares a JSON body, with ids and times replaced by
// placeholders, to testdata/golden/<name>.json. The golden files pin the
// shapes of shared/COMFYUI-API.md; review a diff against that document
// before accepting it with -update.
func golden(t *testing.T, name string, body []byte, ids map[string]string) {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, body)
	}
	v = normalize(v, ids)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	got := buf.Bytes()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./comfy/sim -run Golden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func normalize(v any, ids map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			key := k
			if p, ok := ids[k]; ok {
				key = p
			}
			switch k {
			case "timestamp", "create_time":
				out[key] = "<time>"
			default:
				out[key] = normalize(val, ids)
			}
		}
		return out
	case []any:
		for i := range x {
			x[i] = normalize(x[i], ids)
		}
		return x
	case string:
		if p, ok := ids[x]; ok {
			return p
		}
	}
	return v
}

func TestGoldenShapes(t *testing.T) {
	e := start(t, sim.Config{Faults: sim.Faults{HangNode: "9"}, Steps: 1})

	// First socket message: status with sid.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.hs.URL, "http")+"/ws?clientId=golden-client", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, first, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ws_first_status", first, nil)

	// A finished prompt's history entry.
	done := e.queue(emptyImageGraph(0xabcdef, "golden"), "golden-client", map[string]any{"extra_pnginfo": map[string]any{"workflow": map[string]any{"id": "wf"}}})
	e.sim.WaitIdle(ctx(t))
	_, _, body := get(t, e.hs.URL+"/history/"+done)
	golden(t, "history_entry", body, map[string]string{done: "<prompt_id>"})

	// A running and a pending queue item.
	f := e.follow("golden-client")
	running := e.queue(txt2imgGraph(42, "golden", 1), "golden-client", nil)
	e.waitEvent(f, func(ev comfy.Event) bool {
		m, ok := ev.Msg.(*comfy.Executing)
		return ok && m.Node != nil && *m.Node == "9"
	})
	pending := e.queue(emptyImageGraph(1, "pending"), "other-client", nil)
	_, _, body = get(t, e.hs.URL+"/queue")
	golden(t, "queue", body, map[string]string{running: "<running_id>", pending: "<pending_id>"})
	e.c.ClearQueue(ctx(t))
	e.c.Interrupt(ctx(t), running)
	e.collect(f, running)

	// Error bodies.
	post := func(body string) []byte {
		resp, err := http.Post(e.hs.URL+"/prompt", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d for %s", resp.StatusCode, body)
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return buf.Bytes()
	}
	golden(t, "error_no_prompt", post(`{"client_id":"x"}`), nil)
	golden(t, "error_unknown_node", post(`{"prompt":{"1":{"class_type":"Nope","inputs":{}}}}`), nil)
	bad := emptyImageGraph(0, "bad")
	bad["1"].Inputs["width"] = 0
	delete(bad["1"].Inputs, "color")
	golden(t, "error_failed_validation", post(`{"prompt":`+mustJSON(bad)+`}`), nil)
	bad["2"].Inputs["images"] = comfy.Link("1", 3)
	golden(t, "error_bad_link_index", post(`{"prompt":`+mustJSON(bad)+`}`), nil)
	bad = txt2imgGraph(1, "x", 1)
	bad["4"].Inputs["ckpt_name"] = "nope.safetensors"
	bad["8"].Inputs["vae"] = comfy.Link("4", 1)
	golden(t, "error_not_in_list_and_mismatch", post(`{"prompt":`+mustJSON(bad)+`}`), nil)

	// A node definition, new-style and old-style.
	_, _, body = get(t, e.hs.URL+"/object_info/EmptyImage")
	golden(t, "object_info_EmptyImage", body, nil)
	_, _, body = get(t, e.hs.URL+"/object_info/SaveVideo")
	golden(t, "object_info_SaveVideo", body, nil)
}
