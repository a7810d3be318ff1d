package integration

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// Two instances with different node classes on one GPU host (here a newer
// one without a custom node, and an older one with it): participants see
// every class either has, each with the definition of the instance listed
// first, and a job goes straight to an instance that has its nodes. A
// class only an instance that takes no jobs has is not offered. After a
// restart with no GPU host back, the same list is served from disk.
func TestMixedNodeLists(t *testing.T) {
	s := startGPUStack(t, "--seats", "3", "--prefetch", "0")
	newer := startSim(t, "--without-nodes", "VHS_VideoCombine", "--step-ms", "100", "--steps", "20")
	older := startSim(t, "--legacy")
	agent := s.addAgent("gpu-m", "new="+newer.base, "old="+older.base)
	p := s.join(1)

	// The union, in the first instance's order, then the other's class.
	newInfo, oldInfo := objectOf(t, get(t, newer.base+"/object_info")), objectOf(t, get(t, older.base+"/object_info"))
	want := append(newInfo.Keys(), "VHS_VideoCombine")
	got := waitObjectInfo(t, p, "the union of both instances' classes", func(o jsonobj.Object) bool { return slices.Equal(o.Keys(), want) })
	for _, class := range []string{"KSampler", "CLIPLoader", "SaveImage"} { // the first two differ between the versions
		if g, _ := got.Get(class); !bytes.Equal(g, mustGet(t, newInfo, class)) {
			t.Errorf("%s is not the first instance's definition:\n got %s\nwant %s", class, g, mustGet(t, newInfo, class))
		}
	}
	if g, _ := got.Get("VHS_VideoCombine"); !bytes.Equal(g, mustGet(t, oldInfo, "VHS_VideoCombine")) {
		t.Errorf("VHS_VideoCombine is not the older instance's definition: %s", g)
	}

	// A job with the custom node goes to the instance that has it, though
	// the other is free and first in line; a plain one may run on either.
	video := map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 16, "height": 16, "batch_size": 2, "color": 7}},
		"2": map[string]any{"class_type": "VHS_VideoCombine", "inputs": map[string]any{"images": []any{"1", 0}, "frame_rate": 8, "loop_count": 0,
			"filename_prefix": "clip", "format": "image/gif", "pingpong": false, "save_output": true}},
	}
	only(t, s.a, "gpu-m/new")
	busy := s.a.submit("user002", samplerGraph("busy", 1)) // holds the newer instance a while
	s.ev.waitStage(busy.ID, "executing", 30*time.Second)
	only(t, s.a, "")
	id := p.prompt(video)
	s.ev.waitDone(60*time.Second, id, busy.ID)
	if j := s.a.job(id); j.Status != "completed" || j.Worker != "gpu-m/old" || len(j.Failures) != 0 || j.Attempts != 1 {
		t.Errorf("the job with the custom node: %+v", j)
	}
	if st := newer.stats(t); st.PromptsQueued != 1 || st.PromptsRejected != 0 {
		t.Errorf("the instance without the node took %d prompts and refused %d, want the sampler job only", st.PromptsQueued, st.PromptsRejected)
	}

	// Drained, the older instance's own class is no longer offered.
	if st := s.a.do("POST", "/api/workers/gpu-m/old/drain", nil, nil); st != 200 {
		t.Fatalf("drain: %d", st)
	}
	waitObjectInfo(t, p, "the drained instance's class to go", func(o jsonobj.Object) bool { return slices.Equal(o.Keys(), newInfo.Keys()) })
	if st, body := p.do("POST", "/user/1/api/prompt", strings.NewReader(mustJSON(map[string]any{"prompt": video})), "application/json"); st != 400 ||
		!bytes.Contains(body, []byte("VHS_VideoCombine")) {
		t.Errorf("a job with a node no instance taking jobs has: %d %s", st, body)
	}
	if st := s.a.do("POST", "/api/workers/gpu-m/old/undrain", nil, nil); st != 200 {
		t.Fatalf("undrain: %d", st)
	}
	waitObjectInfo(t, p, "the class to come back", func(o jsonobj.Object) bool { return slices.Equal(o.Keys(), want) })

	// No GPU host, a new server process: the same list, from disk.
	agent.kill9()
	s.restart()
	got = waitObjectInfo(t, p, "the list kept on disk", func(o jsonobj.Object) bool { return slices.Equal(o.Keys(), want) })
	if g, _ := got.Get("VHS_VideoCombine"); !bytes.Equal(g, mustGet(t, oldInfo, "VHS_VideoCombine")) {
		t.Errorf("after the restart VHS_VideoCombine is %s", g)
	}
}

// waitObjectInfo reads the participant's object_info until cond holds: the
// server checks the GPU hosts' lists every few seconds.
func waitObjectInfo(t *testing.T, p *participant, what string, cond func(jsonobj.Object) bool) jsonobj.Object {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, body := p.do("GET", "/user/1/api/object_info", nil, "")
		o, err := jsonobj.Parse(body)
		if st == 200 && err == nil && cond(o) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %d, %d classes", what, st, len(o))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func objectOf(t testing.TB, b []byte) jsonobj.Object {
	t.Helper()
	o, err := jsonobj.Parse(b)
	if err != nil {
		t.Fatalf("%v: %.200s", err, b)
	}
	return o
}

func mustGet(t testing.TB, o jsonobj.Object, key string) json.RawMessage {
	t.Helper()
	v, ok := o.Get(key)
	if !ok {
		t.Fatalf("no %s", key)
	}
	return v
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
