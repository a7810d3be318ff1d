package sim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// deliberate lists every known, deliberate difference between comfysim and
// a real ComfyUI that the conformance test allows, and why. A check named
// here has the listed key paths taken out of both answers before they are
// compared ("*" matches any one key, "[]" every element of an array); an
// entry without paths allows a different status only.
var deliberate = []struct {
	check    string
	versions []string // nil: every version
	drop     []string
	reason   string
}{
	{"GET /system_stats", nil, []string{"system.*", "devices"},
		"the simulator reports an H100 and its own versions, not this machine"},
	{"history extra_data", nil, []string{"[3].create_time"},
		"newer ComfyUI (around v0.6, with /api/jobs) records create_time, which the simulator's /api/jobs reads"},
	{"GET /history/{id}", nil, []string{"prompt.[3].create_time"}, "as for history extra_data"},
	{"GET /history/{id} of a preview", nil, []string{"prompt.[3].create_time"}, "as for history extra_data"},
	{"GET /history?max_items=1", nil, []string{"prompt.[3].create_time"}, "as for history extra_data"},
}

// unordered are objects whose key order is not ComfyUI's to keep: it lists
// a history entry's outputs and meta in the order of a Python set,
// different in every process.
var unordered = []string{"outputs", "meta"}

// TestConformsToRealComfyUI sends the same requests and socket script to
// comfysim and to each real ComfyUI version, and compares status codes,
// JSON shapes (keys, their order, value types), error bodies and event
// order. comfysim runs in the mode of that version: Legacy for ComfyUI
// that makes its own prompt ids.
func TestConformsToRealComfyUI(t *testing.T) {
	vs := realcomfy.Versions(t)
	ins := realcomfy.StartAll(t, vs, realcomfy.Options{})
	for _, in := range ins {
		t.Run(in.Version.Name, func(t *testing.T) {
			e := start(t, sim.Config{Legacy: !in.Version.AcceptsPromptID})
			real := script(t, in.URL)
			mine := script(t, e.hs.URL)
			for _, name := range real.order {
				r, m := real.seen[name], mine.seen[name]
				if m == nil {
					t.Errorf("%s: the simulator's script has no such step", name)
					continue
				}
				compare(t, in.Version.Name, name, r, m)
			}
		})
	}
}

// observation is what one step of the script saw.
type observation struct {
	status int
	body   []byte // JSON, or nil
	exact  bool   // the bodies must be equal, not just alike
	paths  bool   // compare every key path (object_info)
	seq    bool   // a list of socket messages, compared one by one
}

type transcript struct {
	order []string
	seen  map[string]*observation
}

func (tr *transcript) add(name string, o *observation) {
	tr.order = append(tr.order, name)
	tr.seen[name] = o
}

// script is the conversation, the same for any server.
func script(t *testing.T, base string) *transcript {
	t.Helper()
	tr := &transcript{seen: map[string]*observation{}}
	observe := func(resp *http.Response, err error) *observation {
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		o := &observation{status: resp.StatusCode}
		if json.Valid(b) {
			o.body = b
		}
		return o
	}
	get := func(path string) *observation { return observe(http.Get(base + path)) }
	post := func(path, contentType string, body []byte) *observation {
		return observe(http.Post(base+path, contentType, bytes.NewReader(body)))
	}

	for _, path := range []string{"/prompt", "/queue", "/system_stats", "/features", "/embeddings", "/extensions",
		"/object_info/NoSuchNode", "/history/no-such-prompt", "/api/prompt"} {
		tr.add("GET "+path, get(path))
	}
	info := get("/object_info")
	info.paths = true
	tr.add("GET /object_info", info)

	// Bad graphs: ComfyUI's wording, byte for byte.
	for i, body := range []string{
		`{}`,
		`{"prompt": {}}`,
		`{"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}`,
		`{"prompt": {"1": {"inputs": {}}}}`,
		`{"prompt": {"2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}}`,
		// One error per node: ComfyUI checks a node's inputs in set order,
		// different in every process.
		`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 99999999, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}}`,
		`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 0, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}}`,
		`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": "wide", "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}}`,
		`{"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}}, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}}`,
		`{"prompt": {"1": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "no_such_sampler"}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}}`,
	} {
		o := post("/prompt", "application/json", []byte(body))
		o.exact = true
		tr.add(fmt.Sprintf("POST /prompt bad graph %d %s", i+1, body), o)
	}
	// An exception during validation: the same error, with a traceback
	// of the instance's own files.
	tr.add("POST /prompt bad link", post("/prompt", "application/json", []byte(
		`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 5], "filename_prefix": "x"}}}}`)))

	// The socket script: a graph run twice (the second time fully cached).
	ws := dialWS(t, base, "conformance")
	flags, _ := json.Marshal(map[string]any{"type": "feature_flags", "data": map[string]any{"supports_preview_metadata": false}})
	ws.conn.WriteMessage(websocket.TextMessage, flags)
	first := ws.next(t, "the first status")
	tr.add("socket first message", &observation{body: first})
	// One output each: ComfyUI runs independent outputs in a different
	// order in every process. The third run's image is cached from the
	// first; only its preview runs.
	image := `"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 12345}}`
	save := `{` + image + `, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "conformance"}}}`
	preview := `{` + image + `, "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}`
	var ids []string
	for run, graph := range []string{save, save, preview} {
		run++
		body := fmt.Sprintf(`{"prompt": %s, "client_id": "conformance", "prompt_id": %q, "extra_data": {"extra_pnginfo": {"workflow": {}}}}`, graph, uuid.NewString())
		o := post("/prompt", "application/json", []byte(body))
		tr.add(fmt.Sprintf("POST /prompt run %d", run), o)
		var ans struct {
			PromptID string `json:"prompt_id"`
		}
		json.Unmarshal(o.body, &ans)
		ids = append(ids, ans.PromptID)
		evs := ws.until(t, ans.PromptID)
		tr.add(fmt.Sprintf("socket events of run %d", run), &observation{body: evs, seq: true})
	}
	tr.add("socket feature_flags", &observation{status: boolStatus(ws.flags != nil), body: ws.flags})
	ws.conn.Close()

	h := get("/history/" + ids[1])
	tr.add("GET /history/{id}", &observation{status: h.status, body: historyEntry(t, h.body, ids[1])})
	item := jsonPart(t, historyEntry(t, h.body, ids[1]), "prompt")
	tr.add("history extra_data", &observation{body: item})
	hist := get("/history?max_items=1")
	tr.add("GET /history?max_items=1", &observation{status: hist.status, body: historyEntry(t, hist.body, ids[2])})

	// Files.
	var entry struct {
		Outputs map[string]struct {
			Images []struct{ Filename, Subfolder, Type string } `json:"images"`
		} `json:"outputs"`
	}
	json.Unmarshal(historyEntry(t, h.body, ids[1]), &entry)
	var previewed struct {
		Outputs map[string]struct {
			Images []struct{ Filename, Subfolder, Type string } `json:"images"`
		} `json:"outputs"`
	}
	hp := get("/history/" + ids[2])
	tr.add("GET /history/{id} of a preview", &observation{status: hp.status, body: historyEntry(t, hp.body, ids[2])})
	json.Unmarshal(historyEntry(t, hp.body, ids[2]), &previewed)
	entry.Outputs["3"] = previewed.Outputs["3"]
	for _, node := range []string{"2", "3"} {
		img := entry.Outputs[node].Images
		if len(img) != 1 {
			t.Fatalf("node %s outputs %+v", node, entry.Outputs)
		}
		resp, err := http.Get(fmt.Sprintf("%s/view?filename=%s&subfolder=%s&type=%s", base, img[0].Filename, img[0].Subfolder, img[0].Type))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		tr.add("GET /view of node "+node+" ("+img[0].Type+") "+resp.Header.Get("Content-Type"), &observation{status: resp.StatusCode})
	}
	for _, bad := range []string{"?filename=../x.png&type=output", "?filename=nope.png&type=output", "?filename=x.png&type=elsewhere"} {
		tr.add("GET /view"+bad, get("/view"+bad))
	}
	up := upload(t, base, "conformance.png")
	tr.add("POST /upload/image", up)
	tr.add("POST /upload/image again", upload(t, base, "conformance.png"))

	tr.add("POST /interrupt", post("/interrupt", "application/json", []byte(`{}`)))
	tr.add("POST /queue delete", post("/queue", "application/json", []byte(`{"delete": ["nothing"]}`)))
	tr.add("POST /history delete", post("/history", "application/json", []byte(`{"delete": ["nothing"]}`)))
	return tr
}

func boolStatus(b bool) int {
	if b {
		return 1
	}
	return 0
}

func historyEntry(t *testing.T, body []byte, id string) []byte {
	t.Helper()
	o, err := jsonobj.Parse(body)
	if err != nil {
		t.Fatalf("history %s: %v", body, err)
	}
	e, ok := o.Get(id)
	if !ok {
		t.Fatalf("history has no %s: %s", id, body)
	}
	return e
}

func jsonPart(t *testing.T, b []byte, key string) []byte {
	t.Helper()
	o, err := jsonobj.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := o.Get(key)
	return v
}

func upload(t *testing.T, base, name string) *observation {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	f, _ := w.CreateFormFile("image", name)
	f.Write(pngOf(color.NRGBA{R: 200, G: 10, B: 10, A: 255}))
	w.Close()
	resp, err := http.Post(base+"/upload/image", w.FormDataContentType(), &b)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &observation{status: resp.StatusCode, body: body, exact: true}
}

// wsClient reads a socket, keeping text frames; a feature_flags answer is
// set aside, as it may come at any point.
type wsClient struct {
	conn  *websocket.Conn
	flags []byte
}

func dialWS(t *testing.T, base, clientID string) *wsClient {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?clientId="+clientID, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{conn: conn}
}

func (c *wsClient) next(t *testing.T, what string) []byte {
	t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		kind, msg, err := c.conn.ReadMessage()
		if err != nil {
			t.Fatalf("socket, waiting for %s: %v", what, err)
		}
		if kind != websocket.TextMessage {
			continue
		}
		if bytes.Contains(msg, []byte(`"feature_flags"`)) {
			c.flags = msg
			continue
		}
		return msg
	}
}

// until collects the events of one prompt up to its executing null, as a
// JSON array (status broadcasts, which other prompts cause too, are kept:
// their place in the order matters).
func (c *wsClient) until(t *testing.T, promptID string) []byte {
	t.Helper()
	var evs []json.RawMessage
	started := false
	for {
		msg := c.next(t, "the end of "+promptID)
		var m struct {
			Type string `json:"type"`
			Data struct {
				PromptID string          `json:"prompt_id"`
				Node     json.RawMessage `json:"node"`
			} `json:"data"`
		}
		json.Unmarshal(msg, &m)
		if m.Data.PromptID == promptID {
			started = true
		}
		if started {
			evs = append(evs, msg)
		}
		if m.Type == "executing" && m.Data.PromptID == promptID && string(m.Data.Node) == "null" {
			b, _ := json.Marshal(evs)
			return b
		}
	}
}

// compare checks one step of the two transcripts.
func compare(t *testing.T, version, name string, real, mine *observation) {
	t.Helper()
	var drops []string
	allowed := ""
	for _, d := range deliberate {
		if d.check == name && (d.versions == nil || slices.Contains(d.versions, version)) {
			drops, allowed = d.drop, d.reason
		}
	}
	if real.status != mine.status {
		if allowed != "" && drops == nil {
			t.Logf("%s: status %d, ComfyUI's %d (deliberate: %s)", name, mine.status, real.status, allowed)
			return
		}
		t.Errorf("%s: status %d, ComfyUI %s answers %d", name, mine.status, version, real.status)
		return
	}
	if (real.body == nil) != (mine.body == nil) {
		t.Errorf("%s: body %q, ComfyUI's %q", name, mine.body, real.body)
		return
	}
	if real.body == nil {
		return
	}
	if real.exact {
		if a, b := compactJSON(real.body), compactJSON(mine.body); a != b {
			t.Errorf("%s:\n got  %s\n want %s", name, b, a)
		}
		return
	}
	rb, mb := prune(real.body, drops), prune(mine.body, drops)
	if real.paths {
		comparePaths(t, name, rb, mb)
		return
	}
	if real.seq {
		compareSeq(t, name, rb, mb)
		return
	}
	rs, _ := jsonobj.Shape(rb)
	ms, _ := jsonobj.Shape(mb)
	if rs != ms {
		t.Errorf("%s: shape\n got  %s\n want %s", name, ms, rs)
	}
}

// comparePaths compares object_info class by class, for the classes both
// have: every key path, in order, and the shape of every value.
func comparePaths(t *testing.T, name string, real, mine []byte) {
	t.Helper()
	ro, _ := jsonobj.Parse(real)
	mo, _ := jsonobj.Parse(mine)
	var common []string
	for _, m := range mo {
		rv, ok := ro.Get(m.Key)
		if !ok {
			continue
		}
		common = append(common, m.Key)
		rp, _ := jsonobj.KeyPaths(rv)
		mp, _ := jsonobj.KeyPaths(m.Value)
		if !slices.Equal(rp, mp) {
			t.Errorf("%s %s: key paths\n got  %v\n want %v", name, m.Key, mp, rp)
			continue
		}
		rs, _ := jsonobj.Shape(rv)
		ms, _ := jsonobj.Shape(m.Value)
		if rs != ms {
			t.Errorf("%s %s: shape\n got  %s\n want %s", name, m.Key, ms, rs)
		}
	}
	var realOrder []string
	for _, m := range ro {
		if slices.Contains(common, m.Key) {
			realOrder = append(realOrder, m.Key)
		}
	}
	if !slices.Equal(common, realOrder) {
		t.Errorf("%s: classes in the order %v, ComfyUI's %v", name, common, realOrder)
	}
	if len(common) < 10 {
		t.Errorf("%s: only %d classes in common", name, len(common))
	}
}

// compareSeq compares two lists of socket messages: the same types in the
// same order, each of the same shape.
func compareSeq(t *testing.T, name string, real, mine []byte) {
	t.Helper()
	var rs, ms []json.RawMessage
	json.Unmarshal(real, &rs)
	json.Unmarshal(mine, &ms)
	types := func(evs []json.RawMessage) []string {
		var out []string
		for _, e := range evs {
			var m struct {
				Type string `json:"type"`
			}
			json.Unmarshal(e, &m)
			out = append(out, m.Type)
		}
		return out
	}
	if rt, mt := types(rs), types(ms); !slices.Equal(rt, mt) {
		t.Errorf("%s: events\n got  %v\n want %v", name, mt, rt)
		return
	}
	for i := range rs {
		a, _ := jsonobj.Shape(rs[i])
		b, _ := jsonobj.Shape(ms[i])
		if a != b {
			t.Errorf("%s: event %d\n got  %s\n want %s", name, i, b, a)
		}
	}
}

func compactJSON(b []byte) string {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}

// prune takes the dotted key paths out of a JSON document, sorts the keys
// of the unordered objects, and empties every array of scalars (choices,
// file names: data, not shape).
func prune(b []byte, drops []string) []byte {
	var paths [][]string
	for _, d := range drops {
		paths = append(paths, strings.Split(d, "."))
	}
	for _, u := range unordered {
		paths = append(paths, append(strings.Split(u, "."), "\x00sort"))
	}
	return pruneValue(b, paths)
}

func pruneValue(b []byte, paths [][]string) []byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return b
	}
	switch b[0] {
	case '{':
		o, err := jsonobj.Parse(b)
		if err != nil {
			return b
		}
		if slices.ContainsFunc(paths, func(p []string) bool { return len(p) == 1 && p[0] == "\x00sort" }) {
			slices.SortFunc(o, func(a, b jsonobj.Member) int { return strings.Compare(a.Key, b.Key) })
		}
		out := jsonobj.Object{}
		for _, m := range o {
			var sub [][]string
			dropped := false
			for _, p := range paths {
				if p[0] != m.Key && p[0] != "*" {
					continue
				}
				if len(p) == 1 {
					dropped = true
				} else {
					sub = append(sub, p[1:])
				}
			}
			if !dropped {
				out = append(out, jsonobj.Member{Key: m.Key, Value: pruneValue(m.Value, sub)})
			}
		}
		r, _ := out.MarshalJSON()
		return r
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(b, &items) != nil {
			return b
		}
		var sub [][]string
		for _, p := range paths {
			if strings.HasPrefix(p[0], "[") {
				sub = append(sub, p)
			}
		}
		scalars := true
		for i, it := range items {
			it = bytes.TrimSpace(it)
			if len(it) > 0 && (it[0] == '{' || it[0] == '[') {
				scalars = false
			}
			var inner [][]string
			for _, p := range sub {
				if (p[0] == "[]" || p[0] == fmt.Sprintf("[%d]", i)) && len(p) > 1 {
					inner = append(inner, p[1:])
				}
			}
			items[i] = pruneValue(it, inner)
		}
		if scalars {
			return []byte("[]")
		}
		r, _ := json.Marshal(items)
		return r
	}
	return b
}
