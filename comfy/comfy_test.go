package comfy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestBinaryFramesRoundTrip(t *testing.T) {
	ev, err := DecodeBinary(EncodePreviewImage(ImagePNG, []byte("img")))
	if err != nil || ev.Type != EventPreviewImage {
		t.Fatal(ev, err)
	}
	if m := ev.Msg.(*PreviewImage); m.ImageType != ImagePNG || string(m.Image) != "img" {
		t.Errorf("%+v", m)
	}
	frame, _ := EncodePreviewImageWithMetadata(PreviewMetadata{NodeID: "3", PromptID: "p", ImageType: "image/jpeg"}, []byte("jpg"))
	ev, err = DecodeBinary(frame)
	if m := ev.Msg.(*PreviewImageWithMetadata); err != nil || m.Metadata.NodeID != "3" || m.Metadata.PromptID != "p" || string(m.Image) != "jpg" || ev.PromptID() != "p" {
		t.Errorf("%+v %v", ev.Msg, err)
	}
	ev, err = DecodeBinary(EncodeProgressText("12", "hello"))
	if m := ev.Msg.(*ProgressText); err != nil || m.NodeID != "12" || m.Text != "hello" {
		t.Errorf("%+v %v", m, err)
	}
	if _, err := DecodeBinary([]byte{0, 0}); err == nil {
		t.Error("short frame accepted")
	}
	if ev, _ := DecodeBinary([]byte{0, 0, 0, 9, 1}); ev.Type != EventBinaryUnknown {
		t.Errorf("unknown type decoded as %s", ev.Type)
	}
}

func TestTextFramesKeepUnknownTypes(t *testing.T) {
	ev, err := DecodeText([]byte(`{"type":"crystools.monitor","data":{"cpu":3}}`))
	if err != nil || ev.Type != "crystools.monitor" || ev.Msg != nil || string(ev.Data) != `{"cpu":3}` {
		t.Errorf("%+v %v", ev, err)
	}
	ev, _ = DecodeText([]byte(`{"type":"executing","data":{"node":null,"prompt_id":"p"}}`))
	if m := ev.Msg.(*Executing); m.Node != nil || m.PromptID != "p" {
		t.Errorf("%+v", m)
	}
}

func TestQueueItemIsAFiveElementArray(t *testing.T) {
	in := `[3,"id",{"1":{}},{"client_id":"c"},["9"],{"secret":1}]`
	var q QueueItem
	if err := json.Unmarshal([]byte(in), &q); err != nil {
		t.Fatal(err)
	}
	if q.Number != "3" || q.PromptID != "id" || q.ClientID() != "c" || !slices.Equal(q.OutputsToExecute, []string{"9"}) {
		t.Errorf("%+v", q)
	}
	out, _ := json.Marshal(q)
	if string(out) != `[3,"id",{"1":{}},{"client_id":"c"},["9"]]` {
		t.Errorf("marshal %s", out)
	}
	if err := json.Unmarshal([]byte(`[1,"x"]`), &q); err == nil {
		t.Error("short item accepted")
	}
}

func TestOutputFilesUnderAnyKey(t *testing.T) {
	var outputs map[string]NodeOutput
	json.Unmarshal([]byte(`{
		"12": {"gifs": [{"filename": "a_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4", "frame_rate": 8}]},
		"9": {"images": [{"filename": "v_00001_.mp4", "subfolder": "video", "type": "output"}], "animated": [true]},
		"3": {"text": ["hello"], "images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]},
		"4": {"audio": [{"filename": "s.flac", "type": "output"}], "result": [1, 2]}
	}`), &outputs)
	files := OutputFiles(outputs)
	var got []string
	for _, f := range files {
		got = append(got, f.NodeID+"/"+f.Key+"/"+f.Subfolder+"/"+f.Filename)
	}
	want := []string{"3/images//p.png", "4/audio//s.flac", "9/images/video/v_00001_.mp4", "12/gifs//a_00001.mp4"}
	if !slices.Equal(got, want) {
		t.Fatalf("files %v\nwant %v", got, want)
	}
	if !files[2].Animated || files[0].Animated || files[3].Extra["format"] == nil {
		t.Errorf("flags %+v", files)
	}
}

func TestHistoryKeepsServerOrder(t *testing.T) {
	entries, err := decodeHistory([]byte(`{"b":{"prompt":[0,"b",{},{},[]],"outputs":{},"status":null},"a":{"prompt":[1,"a",{},{},[]],"outputs":{},"status":{"status_str":"success","completed":true,"messages":[["execution_start",{"prompt_id":"a"}]]}}}`))
	if err != nil || len(entries) != 2 || entries[0].PromptID != "b" || entries[1].PromptID != "a" || !entries[1].Succeeded() {
		t.Fatalf("%+v %v", entries, err)
	}
}

func TestValidateMatchesComfyWording(t *testing.T) {
	info := ObjectInfo{}
	json.Unmarshal([]byte(`{
		"Src": {"input": {"required": {}}, "output": ["IMAGE,MASK"], "output_node": false},
		"Out": {"input": {"required": {"images": ["IMAGE"], "mode": [["a", "b's"], {}], "n": ["FLOAT", {"min": 0.5, "max": 2}],
		        "c": ["COMBO", {"options": [1, 2]}]}, "optional": {"any": ["*"]}}, "input_order": {"required": ["images", "mode", "n", "c"]},
		        "output": [], "output_node": true}
	}`), &info)
	p, _ := ParsePrompt([]byte(`{"1": {"class_type": "Src", "inputs": {}},
		"2": {"class_type": "Out", "inputs": {"images": ["1", 0], "mode": "z", "n": "3", "c": 2.0, "any": ["1", 0]}}}`))
	_, nodeErrs, err := ValidatePrompt(p, info, ValidateOptions{})
	if err == nil {
		t.Fatal("accepted")
	}
	var got []string
	for _, e := range nodeErrs["2"].Errors {
		got = append(got, e.Type+": "+e.Message+": "+e.Details)
	}
	want := []string{
		`value_not_in_list: Value not in list: mode: 'z' not in ['a', "b's"]`,
		"value_bigger_than_max: Value 3.0 bigger than max of 2: n",
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors\n%v\nwant\n%v", got, want)
	}
	if f, _ := p["2"].Inputs["n"].(float64); f != 3 {
		t.Errorf("FLOAT input not normalised: %#v", p["2"].Inputs["n"])
	}
	// A cycle is reported, not followed forever.
	p, _ = ParsePrompt([]byte(`{"1": {"class_type": "Out", "inputs": {"images": ["2", 0], "mode": "a", "n": 1, "c": 1}},
		"2": {"class_type": "Out", "inputs": {"images": ["1", 0], "mode": "a", "n": 1, "c": 1}}}`))
	info["Out"] = func() NodeInfo { ni := info["Out"]; ni.Output = []IOType{{Name: "IMAGE"}}; return ni }()
	_, nodeErrs, err = ValidatePrompt(p, info, ValidateOptions{})
	if err == nil || nodeErrs["1"].Errors[0].Type != ErrDependencyCycle {
		t.Errorf("cycle: %v %+v", err, nodeErrs)
	}
}

// ComfyUI before 2025 answers a rejected prompt with "node_errors": []:
// the rejection is still a PromptError, not a lost answer.
func TestPromptErrorOfOlderComfyUI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, `{"error": {"type": "invalid_prompt", "message": "Cannot execute because node ImageFlip does not exist.", "details": "Node ID '#2'", "extra_info": {}}, "node_errors": []}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.QueuePrompt(context.Background(), PromptRequest{Prompt: json.RawMessage(`{}`)})
	var pe *PromptError
	if !errors.As(err, &pe) || pe.Info.Type != ErrInvalidPrompt || !strings.Contains(pe.Info.Message, "ImageFlip") {
		t.Fatalf("got %T %v", err, err)
	}
}

// A GPU host's answer is read at most MaxJSON bytes far, whatever the
// route: an endless /queue or /prompt answer is an error, not the server's
// memory.
func TestAnswersAreBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"queue_running": [], "prompt_id": "`)
		chunk := strings.Repeat("x", 1<<20)
		for range MaxJSON>>20 + 1 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Queue(context.Background()); err == nil || !strings.Contains(err.Error(), "over 64 MiB") {
		t.Errorf("GET /queue: %v", err)
	}
	if _, err := c.QueuePrompt(context.Background(), PromptRequest{Prompt: json.RawMessage(`{}`)}); err == nil || !strings.Contains(err.Error(), "over 64 MiB") {
		t.Errorf("POST /prompt: %v", err)
	}
}
