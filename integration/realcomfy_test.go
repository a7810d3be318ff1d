package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/internal/realcomfy"
)

// The real-ComfyUI tier: the real server and gpu-agent binaries in front of
// real ComfyUI processes (every version internal/realcomfy finds: the kit's
// two, or an operator's own checkouts named in COMFYUI_DIRS), first one GPU
// host per instance, then all instances on one host (mixed versions), all
// driven through a participant's /user/1/ as the stock frontend and API
// clients drive it.
func TestRealComfy(t *testing.T) {
	vs := realcomfy.Versions(t)
	ins := realcomfy.StartAll(t, vs, realcomfy.Options{})
	s := startGPUStack(t, "--seats", "3")
	var agents []*proc
	for i, in := range ins {
		agents = append(agents, s.addAgent(hostOf(i), in.URL))
	}
	p := s.join(1)
	ws := p.socket("real-tier")

	t.Run("separate hosts", func(t *testing.T) { spreadJobs(t, s, p, ws, len(ins)) })
	for i, in := range ins {
		t.Run(in.Version.Name, func(t *testing.T) {
			only(t, s.a, hostOf(i)+"/0") // the agent numbers its instances from 0
			t.Run("object_info keeps the instance's key order", func(t *testing.T) { objectInfoOrder(t, p, in.URL) })
			t.Run("identical graphs", func(t *testing.T) { identicalGraphs(t, s, p, ws, in.URL, in.Version.AcceptsPromptID) })
			for _, by := range []string{"participant", "instructor"} {
				t.Run("interrupt by the "+by, func(t *testing.T) {
					interruptRunning(t, s, p, ws, by, longGraph(int(time.Now().UnixNano()%0xffffff)), nil)
				})
			}
			t.Run("errors in the newest shapes", func(t *testing.T) { errorShapes(t, p, ins) })
			t.Run("npm clients", func(t *testing.T) { npmClients(t, s, p) })
		})
	}
	only(t, s.a, "")

	// The same instances behind one agent: two ComfyUI versions on one host.
	for _, a := range agents {
		a.stop(context.Background())
	}
	var urls []string
	for _, in := range ins {
		urls = append(urls, in.URL)
	}
	s.addAgent("gpu-mixed", urls...)
	t.Run("one host, mixed versions", func(t *testing.T) { spreadJobs(t, s, p, ws, len(ins)) })
}

// The same checks, fast and without a real ComfyUI, against comfysim in
// the older version's mode (its own prompt ids, older shapes): one
// instance that finishes every prompt before it answers the post, as a
// real one does with a cached graph, and one that runs at its own pace.
func TestSimulatedOldComfyUI(t *testing.T) {
	s := startGPUStack(t, "--seats", "3")
	instant, legacy := startSim(t, "--legacy", "--instant"), startSim(t, "--legacy")
	s.addAgent("gpu-sim", instant.base, legacy.base)
	p := s.join(1)
	ws := p.socket("sim-tier")
	only(t, s.a, "gpu-sim/0")
	t.Run("object_info keeps the instance's key order", func(t *testing.T) { objectInfoOrder(t, p, instant.base) })
	t.Run("identical graphs, events before the answer", func(t *testing.T) { identicalGraphs(t, s, p, ws, instant.base, false) })
	// The npm clients on the instance that runs at its own pace: on the
	// instant one a job's events reach the participant a few milliseconds
	// after the prompt's answer, and @stable-canvas/comfyui-client's socket
	// mode listens for them only once it has read that answer, so on a
	// busy CI machine it read the events first and waited for them
	// forever. (Its fully cached run polls the history: client.mjs.)
	only(t, s.a, "gpu-sim/1")
	t.Run("npm clients", func(t *testing.T) { npmClients(t, s, p) })
	for i, by := range []string{"participant", "instructor"} {
		t.Run("interrupt by the "+by, func(t *testing.T) {
			only(t, s.a, "gpu-sim/1")
			hang := map[string]any{"sim": map[string]any{"hang_node": "2"}}
			interruptRunning(t, s, p, ws, by, imageGraph("hang", i), hang)
		})
	}
}

// hostOf names the GPU host of the i-th instance in the separate-hosts
// layout (by number: two checkouts in COMFYUI_DIRS may be one version).
func hostOf(i int) string { return fmt.Sprintf("gpu-%d", i+1) }

// only drains every connected worker but id, and undrains id ("" undrains
// all), so the next jobs run on that instance alone.
func only(t *testing.T, a admin, id string) {
	t.Helper()
	for _, w := range a.workers() {
		if !w.Connected {
			continue
		}
		action := "drain"
		if id == "" || w.ID == id {
			action = "undrain"
		}
		if st := a.do("POST", "/api/workers/"+w.ID+"/"+action, nil, nil); st != 200 {
			t.Fatalf("%s %s: %d", action, w.ID, st)
		}
	}
}

// realGraph needs no model weights: an image, saved and previewed.
func realGraph(color int) map[string]any {
	return map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 16, "height": 16, "batch_size": 1, "color": color}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "real"}},
		"3": map[string]any{"class_type": "PreviewImage", "inputs": map[string]any{"images": []any{"1", 0}}},
	}
}

// longGraph runs for a few seconds on the CPU, node after node, so an
// interrupt lands between two of them.
func longGraph(color int) map[string]any {
	g := map[string]any{"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 2048, "height": 2048, "batch_size": 4, "color": color}}}
	for i := 2; i <= 6; i++ {
		g[fmt.Sprint(i)] = map[string]any{"class_type": "ImageInvert", "inputs": map[string]any{"image": []any{fmt.Sprint(i - 1), 0}}}
	}
	g["7"] = map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"6", 0}, "filename_prefix": "long"}}
	return g
}

// spreadJobs queues distinct jobs while the queue is paused, so that on
// resume every instance leases its share at once, and checks they all
// complete on every instance with the workshop's ids on the socket.
func spreadJobs(t *testing.T, s *stack, p *participant, ws *userSocket, instances int) {
	before := s.a.workers()
	// An instance takes jobs once it has read its node list: one that reads
	// it later than another finishes these small jobs would get none (a
	// real ComfyUI's object_info can take 100 ms on a busy machine).
	for _, w := range before {
		if w.Connected {
			s.waitLine(`read the instance's node list.* worker=`+regexp.QuoteMeta(w.ID)+` `, 60*time.Second)
		}
	}
	if st := s.a.do("POST", "/api/queue/pause", nil, nil); st != 200 {
		t.Fatalf("pause: %d", st)
	}
	var ids []string
	for i := 0; i < 4*instances; i++ {
		ids = append(ids, p.prompt(realGraph(1000+len(ids)+int(time.Now().UnixNano()%100000)*10)))
	}
	if st := s.a.do("POST", "/api/queue/resume", nil, nil); st != 200 {
		t.Fatalf("resume: %d", st)
	}
	ws.waitSuccess(t, 120*time.Second, ids...)
	after := s.a.workers()
	done := map[string]int{}
	for _, w := range before {
		done[w.ID] -= w.JobsDone
	}
	used := 0
	for _, w := range after {
		if w.Connected {
			if done[w.ID]+w.JobsDone > 0 {
				used++
			}
		}
	}
	if used != instances {
		t.Errorf("jobs ran on %d of %d instances: %+v", used, instances, after)
	}
	ws.onlyIDs(t, s.allIDs(p))
}

// objectInfoOrder compares /user/1/object_info with the instance's own,
// key by key, at every level of every node class.
func objectInfoOrder(t *testing.T, p *participant, instance string) {
	direct := get(t, instance+"/object_info")
	want, err := jsonobj.KeyPaths(direct)
	if err != nil {
		t.Fatal(err)
	}
	// The server checks object_info with the GPU hosts every few seconds;
	// after the drain it comes from this instance.
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, body := p.do("GET", "/user/1/api/object_info", nil, "")
		if st != 200 {
			t.Fatalf("object_info through the server: %d %s", st, body)
		}
		if got, err = jsonobj.KeyPaths(body); err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("object_info key order differs from the instance's at key %d: got %s, want %s (%d and %d keys)", i, got[i], want[i], len(got), len(want))
			}
		}
		t.Fatalf("object_info has %d keys, the instance %d", len(got), len(want))
	}
	// One class alone, and the widget order the issue saw swapped.
	if o, _ := jsonobj.Parse(direct); !slices.Contains(o.Keys(), "LoadImageMask") {
		return
	}
	st, one := p.do("GET", "/user/1/api/object_info/LoadImageMask", nil, "")
	if st != 200 {
		t.Fatalf("object_info/LoadImageMask: %d", st)
	}
	paths, _ := jsonobj.KeyPaths(one)
	if i, j := slices.Index(paths, "LoadImageMask.input.required.image"), slices.Index(paths, "LoadImageMask.input.required.channel"); i < 0 || j < i {
		t.Errorf("LoadImageMask inputs out of order: %v", paths)
	}
}

// identicalGraphs is the check: twelve identical graphs posted back
// to back (all but the first fully cached, finished in milliseconds, their
// events ahead of ComfyUI's answer) all complete, and everything the
// participant sees carries the workshop's ids. instance is the ComfyUI
// they run on, whose own history entry the participant's must match.
func identicalGraphs(t *testing.T, s *stack, p *participant, ws *userSocket, instance string, acceptsPromptID bool) {
	graph := realGraph(int(time.Now().UnixNano() % 0xffffff))
	var ids []string
	for range 12 {
		ids = append(ids, p.prompt(graph))
	}
	ws.waitSuccess(t, 120*time.Second, ids...)
	ws.onlyIDs(t, s.allIDs(p))
	ws.endsInOrder(t, ids...)
	for _, id := range ids {
		if j := s.a.job(id); j.Status != "completed" {
			t.Errorf("job %s is %s", id, j.Status)
		}
	}
	if st, body := p.do("GET", "/user/1/api/queue", nil, ""); st != 200 || !bytes.Contains(body, []byte(`"queue_running":[]`)) || !bytes.Contains(body, []byte(`"queue_pending":[]`)) {
		t.Errorf("queue after: %d %s", st, body)
	}
	// The history entry has ComfyUI's shape, with the workshop's ids.
	var engineID struct {
		EngineID string `json:"engine_prompt_id"`
	}
	s.a.do("GET", "/api/jobs/"+ids[0], nil, &engineID)
	eid := ids[0]
	if engineID.EngineID != "" {
		eid = engineID.EngineID
	}
	if !acceptsPromptID && eid == ids[0] {
		t.Errorf("the instance kept the workshop's id, so this test does not test the id mapping")
	}
	real := historyOf(t, get(t, instance+"/history/"+eid), eid)
	_, body := p.do("GET", "/user/1/api/history/"+ids[0], nil, "")
	mine := historyOf(t, body, ids[0])
	for _, key := range []string{"outputs", "status", "meta"} {
		rs, _ := jsonobj.Shape(real[key])
		ms, _ := jsonobj.Shape(mine[key])
		if rs != ms {
			t.Errorf("history %s: shape %s, ComfyUI's %s", key, ms, rs)
		}
	}
	if bytes.Contains(body, []byte(eid)) && eid != ids[0] {
		t.Errorf("history carries ComfyUI's own id %s: %s", eid, body)
	}
	var outputs map[string]struct {
		Images []struct {
			Filename  string `json:"filename"`
			Subfolder string `json:"subfolder"`
			Type      string `json:"type"`
		} `json:"images"`
	}
	json.Unmarshal(mine["outputs"], &outputs)
	if len(outputs["2"].Images) != 1 || outputs["2"].Images[0].Type != "output" || len(outputs["3"].Images) != 1 || outputs["3"].Images[0].Type != "temp" {
		t.Errorf("outputs %s", mine["outputs"])
	}
	for _, node := range []string{"2", "3"} {
		img := outputs[node].Images[0]
		st, b := p.do("GET", fmt.Sprintf("/user/1/api/view?filename=%s&subfolder=%s&type=%s", img.Filename, img.Subfolder, img.Type), nil, "")
		if st != 200 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("view of node %s output: %d", node, st)
		}
	}
	if st, body := p.do("GET", "/user/1/api/jobs?limit=12", nil, ""); st != 200 || bytes.Contains(body, []byte(eid)) && eid != ids[0] {
		t.Errorf("/api/jobs: %d %s", st, body)
	}
}

// interruptRunning queues graph (a long one; extra: its extra_data) as the
// participant and, once it executes a node, stops it: the participant
// with an interrupt, or the instructor with a cancel. Either way the
// owner's socket and history tell it as ComfyUI tells an interrupt, naming
// the node it was at.
func interruptRunning(t *testing.T, s *stack, p *participant, ws *userSocket, by string, graph, extra map[string]any) {
	id := p.promptWith(graph, extra)
	ws.waitFor(t, "a node of "+id+" executing", 60*time.Second, func(evs []wsEvent) bool {
		return slices.ContainsFunc(evs, func(e wsEvent) bool { return e.Type == "executing" && e.PromptID == id && e.Node != nil })
	})
	if by == "participant" {
		if st, body := p.do("POST", "/user/1/api/interrupt", strings.NewReader("{}"), "application/json"); st != 200 {
			t.Fatalf("interrupt: %d %s", st, body)
		}
	} else if st := s.a.do("DELETE", "/api/jobs/"+id, nil, nil); st != 200 {
		t.Fatalf("cancel: %d", st)
	}
	var at struct {
		Data struct {
			NodeID   string `json:"node_id"`
			NodeType string `json:"node_type"`
		} `json:"data"`
	}
	ws.waitFor(t, "execution_interrupted of "+id, 60*time.Second, func(evs []wsEvent) bool {
		i := slices.IndexFunc(evs, func(e wsEvent) bool { return e.Type == "execution_interrupted" && e.PromptID == id })
		return i >= 0 && json.Unmarshal(evs[i].Raw, &at) == nil
	})
	if node, _ := graph[at.Data.NodeID].(map[string]any); node == nil || node["class_type"] != at.Data.NodeType {
		t.Errorf("execution_interrupted names node %q (%q), not a node of the graph", at.Data.NodeID, at.Data.NodeType)
	}
	ws.endsInOrder(t, id)
	_, body := p.do("GET", "/user/1/api/history/"+id, nil, "")
	entry := historyOf(t, body, id)
	var status struct {
		StatusStr string              `json:"status_str"`
		Completed bool                `json:"completed"`
		Messages  [][]json.RawMessage `json:"messages"`
	}
	json.Unmarshal(entry["status"], &status)
	interrupted := false
	for _, m := range status.Messages {
		if len(m) == 2 && string(m[0]) == `"execution_interrupted"` && bytes.Contains(m[1], []byte(id)) {
			interrupted = true
		}
	}
	if status.StatusStr != "error" || status.Completed || !interrupted {
		t.Errorf("history of the interrupted job: %s", entry["status"])
	}
	if j := s.a.job(id); j.Status != "cancelled" {
		t.Errorf("job %s is %s", id, j.Status)
	}
}

// errorShapes posts broken graphs through the server and straight to
// ComfyUI 0.3.64: the answers must be the same, byte for byte (key order
// included), whichever version the job would run on.
func errorShapes(t *testing.T, p *participant, ins []*realcomfy.Instance) {
	// The shapes the workshop speaks: those of the kit's newest version.
	i := slices.IndexFunc(ins, func(in *realcomfy.Instance) bool { return in.Version.Name == "0.3.64" })
	if i < 0 {
		t.Skip("ComfyUI 0.3.64, whose error shapes the workshop speaks, is not among the versions here")
	}
	newest := ins[i]
	for _, body := range []string{
		`{}`,
		`{"prompt": {}}`,
		`{"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}`,
		`{"prompt": {"2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}}`,
		`{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 99999999, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}}`,
	} {
		resp, err := http.Post(newest.URL+"/prompt", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		st, got := p.do("POST", "/user/1/api/prompt", strings.NewReader(body), "application/json")
		if st != resp.StatusCode || !bytes.Equal(compact(got), compact(want)) {
			t.Errorf("POST %s:\n got %d %s\nwant %d %s", body, st, got, resp.StatusCode, want)
		}
	}
}

// npmClients runs both third-party npm clients through /user/1/.
func npmClients(t *testing.T, s *stack, p *participant) {
	node, dir := npmClientDir(t)
	run := func(script string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, script, s.base+"/user/1/", p.cookie())
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "MODEL_FREE=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", script, err, stdout.String(), stderr.String())
		}
		return bytes.TrimSpace(stdout.Bytes())
	}
	t.Run("@stable-canvas/comfyui-client", func(t *testing.T) {
		var seen struct {
			Messages map[string]int `json:"messages"`
			Images   []struct {
				Status int  `json:"status"`
				PNG    bool `json:"png"`
			} `json:"images"`
			ErrorStatus int    `json:"errorStatus"`
			ErrorType   string `json:"errorType"`
		}
		if out := run("client.mjs"); json.Unmarshal(out, &seen) != nil {
			t.Fatalf("bad output %s", out)
		}
		if len(seen.Images) != 2 || !seen.Images[0].PNG || !seen.Images[1].PNG {
			t.Errorf("images %+v", seen.Images)
		}
		if seen.ErrorStatus != 400 || seen.ErrorType != "prompt_outputs_failed_validation" {
			t.Errorf("broken graph: %d %s", seen.ErrorStatus, seen.ErrorType)
		}
	})
	t.Run("@saintno/comfyui-sdk", func(t *testing.T) {
		var seen struct {
			Runs []struct {
				PromptID string   `json:"promptId"`
				Keys     []string `json:"keys"`
			} `json:"runs"`
			Images []struct {
				Key    string `json:"key"`
				Type   string `json:"type"`
				Status int    `json:"status"`
				PNG    bool   `json:"png"`
			} `json:"images"`
			PromptIDs   []string `json:"promptIds"`
			ErrorStatus int      `json:"errorStatus"`
			ErrorType   string   `json:"errorType"`
		}
		if out := run("sdk.mjs"); json.Unmarshal(out, &seen) != nil {
			t.Fatalf("bad output %s", out)
		}
		if len(seen.Runs) != 2 || len(seen.Images) != 4 {
			t.Fatalf("runs %+v images %+v", seen.Runs, seen.Images)
		}
		for _, img := range seen.Images {
			if img.Status != 200 || !img.PNG || (img.Key == "preview") != (img.Type == "temp") {
				t.Errorf("image %+v", img)
			}
		}
		for _, id := range seen.PromptIDs {
			if !slices.Contains(s.allIDs(p), id) {
				t.Errorf("the SDK saw prompt id %s, which the server never gave", id)
			}
		}
		if seen.ErrorStatus != 400 || seen.ErrorType != "prompt_outputs_failed_validation" {
			t.Errorf("broken graph: %d %s", seen.ErrorStatus, seen.ErrorType)
		}
	})
}

// npmClientDir finds node and the installed npm clients, or skips (fails
// in CI).
func npmClientDir(t *testing.T) (string, string) {
	t.Helper()
	node, err := exec.LookPath("node")
	dir := filepath.Join("..", "comfy", "sim", "npmclient")
	_, serr := os.Stat(filepath.Join(dir, "node_modules", "@saintno", "comfyui-sdk"))
	if err != nil || serr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node or the npm packages are missing (.ci/run installs them)")
		}
		t.Skip("needs node and `npm ci` in comfy/sim/npmclient")
	}
	return node, dir
}

func get(t testing.TB, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// historyOf is the one entry of a /history/{id} answer, by key.
func historyOf(t *testing.T, body []byte, id string) map[string]json.RawMessage {
	t.Helper()
	o, err := jsonobj.Parse(body)
	if err != nil {
		t.Fatalf("history: %v: %s", err, body)
	}
	raw, ok := o.Get(id)
	if !ok || len(o) != 1 {
		t.Fatalf("history has no entry %s: %s", id, body)
	}
	e, err := jsonobj.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if keys := e.Keys(); !slices.Equal(keys, []string{"prompt", "outputs", "status", "meta"}) {
		t.Errorf("history entry keys %v", keys)
	}
	out := map[string]json.RawMessage{}
	for _, m := range e {
		out[m.Key] = m.Value
	}
	return out
}

// allIDs is every prompt id the server gave seat p (from the admin API,
// which knows nothing of engine ids).
func (s *stack) allIDs(p *participant) []string {
	var r struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	s.a.do("GET", fmt.Sprintf("/api/jobs?user_id=user%03d&limit=500", p.seat), nil, &r)
	var ids []string
	for _, j := range r.Jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

// userSocket is a participant's /user/N/ws, every frame kept.
type userSocket struct {
	conn *websocket.Conn
	mu   sync.Mutex
	evs  []wsEvent
	upd  chan struct{}
	err  error
}

type wsEvent struct {
	Type     string
	PromptID string
	Node     *string
	Raw      []byte
}

func (p *participant) socket(clientID string) *userSocket {
	p.t.Helper()
	u := "ws" + strings.TrimPrefix(p.base, "http") + fmt.Sprintf("/user/%d/ws?clientId=%s", p.seat, clientID)
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {p.cookie()}})
	if err != nil {
		p.t.Fatal(err)
	}
	s := &userSocket{conn: conn, upd: make(chan struct{}, 1)}
	p.t.Cleanup(func() { conn.Close() })
	go func() {
		for {
			kind, msg, err := conn.ReadMessage()
			if err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				s.kick()
				return
			}
			if kind != websocket.TextMessage {
				continue
			}
			var m struct {
				Type string `json:"type"`
				Data struct {
					PromptID string  `json:"prompt_id"`
					Node     *string `json:"node"`
				} `json:"data"`
			}
			json.Unmarshal(msg, &m)
			s.mu.Lock()
			s.evs = append(s.evs, wsEvent{Type: m.Type, PromptID: m.Data.PromptID, Node: m.Data.Node, Raw: msg})
			s.mu.Unlock()
			s.kick()
		}
	}()
	return s
}

func (s *userSocket) kick() {
	select {
	case s.upd <- struct{}{}:
	default:
	}
}

func (s *userSocket) waitFor(t testing.TB, what string, timeout time.Duration, cond func([]wsEvent) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, err, n := cond(s.evs), s.err, len(s.evs)
		s.mu.Unlock()
		if ok {
			return
		}
		if err != nil {
			t.Fatalf("socket closed (%v) waiting for %s", err, what)
		}
		select {
		case <-s.upd:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s (%d frames seen)", what, n)
		}
	}
}

// waitSuccess waits for execution_success of every id.
func (s *userSocket) waitSuccess(t testing.TB, timeout time.Duration, ids ...string) {
	t.Helper()
	s.waitFor(t, fmt.Sprintf("execution_success of %d jobs", len(ids)), timeout, func(evs []wsEvent) bool {
		ok := map[string]bool{}
		for _, e := range evs {
			if e.Type == "execution_success" {
				ok[e.PromptID] = true
			}
		}
		for _, id := range ids {
			if !ok[id] {
				return false
			}
		}
		return true
	})
}

// onlyIDs checks that every prompt id on the socket is one of ids.
func (s *userSocket) onlyIDs(t *testing.T, ids []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.evs {
		if e.PromptID != "" && !slices.Contains(ids, e.PromptID) {
			t.Errorf("socket frame with a prompt id the server never gave: %s", e.Raw)
		}
	}
}

// endsInOrder checks ComfyUI's order at the end of each job: the terminal
// event (success, error or interrupted), then a status, then executing
// with node null, and nothing of the job after that.
func (s *userSocket) endsInOrder(t *testing.T, ids ...string) {
	t.Helper()
	s.waitFor(t, "executing null of every job", 30*time.Second, func(evs []wsEvent) bool {
		for _, id := range ids {
			if !slices.ContainsFunc(evs, func(e wsEvent) bool { return e.Type == "executing" && e.Node == nil && e.PromptID == id }) {
				return false
			}
		}
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	// The workshop's own messages for its extension come between.
	evs := slices.DeleteFunc(slices.Clone(s.evs), func(e wsEvent) bool { return strings.HasPrefix(e.Type, "workshop_") })
	for _, id := range ids {
		end := -1
		for i, e := range evs {
			if e.PromptID == id && (e.Type == "execution_success" || e.Type == "execution_error" || e.Type == "execution_interrupted") {
				end = i
			}
		}
		if end < 0 || end+2 >= len(evs) || evs[end+1].Type != "status" ||
			evs[end+2].Type != "executing" || evs[end+2].Node != nil || evs[end+2].PromptID != id {
			t.Errorf("job %s does not end with its terminal event, status, executing null: %s", id, around(evs, end))
			continue
		}
		for _, e := range evs[end+3:] {
			if e.PromptID == id {
				t.Errorf("job %s: %s after its end", id, e.Raw)
			}
		}
	}
}

func around(evs []wsEvent, i int) string {
	var b strings.Builder
	for j := max(i-2, 0); j < min(i+4, len(evs)); j++ {
		fmt.Fprintf(&b, "\n  %s", evs[j].Raw)
	}
	return b.String()
}
