package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/google/uuid"
)

// env is a simulator on a real loopback socket and a client for it.
type env struct {
	t   *testing.T
	sim *sim.Server
	hs  *httptest.Server
	c   *comfy.Client
}

func start(t *testing.T, cfg sim.Config) *env {
	t.Helper()
	dir := t.TempDir()
	if cfg.OutputDir == "" {
		cfg.OutputDir = dir + "/output"
	}
	if cfg.InputDir == "" {
		cfg.InputDir = dir + "/input"
	}
	if cfg.TempDir == "" {
		cfg.TempDir = dir + "/temp"
	}
	if cfg.UserDir == "" {
		cfg.UserDir = dir + "/user"
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	c, err := comfy.New(hs.URL, comfy.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond), comfy.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = s.Close()
		hs.Close()
	})
	return &env{t: t, sim: s, hs: hs, c: c}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// emptyImageGraph is COMFYUI-API.md's graph that needs no model weights.
func emptyImageGraph(color int, prefix string) comfy.Prompt {
	return comfy.Prompt{
		"1": {ClassType: "EmptyImage", Inputs: map[string]any{"width": 64, "height": 48, "batch_size": 1, "color": color}},
		"2": {ClassType: "SaveImage", Inputs: map[string]any{"images": comfy.Link("1", 0), "filename_prefix": prefix}},
	}
}

// txt2imgGraph is the classic checkpoint -> KSampler -> SaveImage graph.
func txt2imgGraph(seed int, text string, steps int) comfy.Prompt {
	return comfy.Prompt{
		"4": {ClassType: "CheckpointLoaderSimple", Inputs: map[string]any{"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
		"5": {ClassType: "EmptyLatentImage", Inputs: map[string]any{"width": 64, "height": 64, "batch_size": 1}},
		"6": {ClassType: "CLIPTextEncode", Inputs: map[string]any{"text": text, "clip": comfy.Link("4", 1)}},
		"7": {ClassType: "CLIPTextEncode", Inputs: map[string]any{"text": "blurry", "clip": comfy.Link("4", 1)}},
		"3": {ClassType: "KSampler", Inputs: map[string]any{"seed": seed, "steps": steps, "cfg": 7.5, "sampler_name": "euler",
			"scheduler": "normal", "denoise": 1.0, "model": comfy.Link("4", 0), "positive": comfy.Link("6", 0),
			"negative": comfy.Link("7", 0), "latent_image": comfy.Link("5", 0)}},
		"8": {ClassType: "VAEDecode", Inputs: map[string]any{"samples": comfy.Link("3", 0), "vae": comfy.Link("4", 2)}},
		"9": {ClassType: "SaveImage", Inputs: map[string]any{"images": comfy.Link("8", 0), "filename_prefix": "txt2img"}},
	}
}

// follow opens a follower and waits for its first status message (the
// socket is registered then, so no event can be missed).
func (e *env) follow(clientID string, opts ...comfy.FollowOption) *comfy.Follower {
	e.t.Helper()
	f := e.c.Follow(context.Background(), clientID, opts...)
	e.t.Cleanup(f.Close)
	ev := e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventStatus })
	if st := ev.Msg.(*comfy.StatusMsg); st.SID != clientID {
		e.t.Fatalf("first status sid = %q, want %q", st.SID, clientID)
	}
	return f
}

func (e *env) waitEvent(f *comfy.Follower, match func(comfy.Event) bool) comfy.Event {
	e.t.Helper()
	ev, err := f.WaitFor(ctx(e.t), match)
	if err != nil {
		e.t.Fatalf("waiting for event: %v", err)
	}
	return ev
}

// collect reads events until the prompt's "executing null".
func (e *env) collect(f *comfy.Follower, promptID string) []comfy.Event {
	e.t.Helper()
	var evs []comfy.Event
	e.waitEvent(f, func(ev comfy.Event) bool {
		evs = append(evs, ev)
		m, ok := ev.Msg.(*comfy.Executing)
		return ok && m.Node == nil && m.PromptID == promptID
	})
	return evs
}

func (e *env) queue(p comfy.Prompt, clientID string, extra map[string]any) string {
	e.t.Helper()
	resp, err := e.c.QueuePrompt(ctx(e.t), comfy.PromptRequest{Prompt: p, ClientID: clientID, PromptID: uuid.NewString(), ExtraData: extra})
	if err != nil {
		e.t.Fatalf("queue: %v", err)
	}
	return resp.PromptID
}

func (e *env) history(id string) *comfy.HistoryEntry {
	e.t.Helper()
	h, ok, err := e.c.PromptHistory(ctx(e.t), id)
	if err != nil || !ok {
		e.t.Fatalf("history of %s: ok=%v err=%v", id, ok, err)
	}
	return h
}

func (e *env) download(ref comfy.FileRef) []byte {
	e.t.Helper()
	d, err := e.c.View(ctx(e.t), ref)
	if err != nil {
		e.t.Fatalf("view %v: %v", ref, err)
	}
	defer d.Close()
	b, err := io.ReadAll(d)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytesReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return img
}

func types(evs []comfy.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
