package sim_test

import (
	"crypto/sha256"
	"errors"
	"image/color"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/google/uuid"
)

func TestEmptyImageRunsInComfyOrder(t *testing.T) {
	e := start(t, sim.Config{})
	f := e.follow("client-a")
	id := e.queue(emptyImageGraph(0xff0000, "t"), "client-a", nil)
	evs := e.collect(f, id)

	var got []string
	for _, ev := range evs {
		switch m := ev.Msg.(type) {
		case *comfy.Executing:
			if m.Node == nil {
				got = append(got, "executing:null")
			} else {
				got = append(got, "executing:"+*m.Node)
			}
		case *comfy.StatusMsg, *comfy.ProgressState:
		default:
			got = append(got, ev.Type)
		}
	}
	want := []string{"execution_start", "execution_cached", "executing:1", "executing:2", "executed", "execution_success", "executing:null"}
	if !slices.Equal(got, want) {
		t.Fatalf("events = %v\nwant %v", got, want)
	}
	// The queue status broadcast comes between success and executing null.
	i := slices.IndexFunc(evs, func(ev comfy.Event) bool { return ev.Type == comfy.EventExecutionSuccess })
	if evs[i+1].Type != comfy.EventStatus && evs[i+2].Type != comfy.EventStatus {
		t.Errorf("no status after execution_success: %v", types(evs[i:]))
	}

	h := e.history(id)
	if !h.Succeeded() {
		t.Fatalf("status = %+v", h.Status)
	}
	files := h.Files()
	if len(files) != 1 || files[0].Filename != "t_00001_.png" || files[0].Type != "output" || files[0].Key != "images" {
		t.Fatalf("files = %+v", files)
	}
	img := decodePNG(t, e.download(files[0].FileRef))
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("size %v", b)
	}
	if c := color.NRGBAModel.Convert(img.At(3, 3)).(color.NRGBA); c != (color.NRGBA{255, 0, 0, 255}) {
		t.Errorf("pixel = %v, want red", c)
	}
	if st := e.sim.Stats(); st.Executions[id] != 1 || st.PromptsSucceeded != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestSamplerProgressAndPreviews(t *testing.T) {
	for _, withMeta := range []bool{false, true} {
		name := "type1"
		var opts []comfy.FollowOption
		if withMeta {
			name = "type4"
			opts = append(opts, comfy.WithFeatureFlags(comfy.FeatureFlags{"supports_preview_metadata": true}))
		}
		t.Run(name, func(t *testing.T) {
			e := start(t, sim.Config{Steps: 3, Faults: sim.Faults{ProgressText: true}})
			f := e.follow("c1", opts...)
			if withMeta {
				ev := e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventFeatureFlags })
				if ev.Msg.(comfy.FeatureFlags)["supports_preview_metadata"] != true {
					t.Fatalf("server flags = %v", ev.Msg)
				}
			}
			id := e.queue(txt2imgGraph(42, "a red fox", 20), "c1", nil)
			evs := e.collect(f, id)
			var progress []float64
			previews, texts := 0, 0
			for i, ev := range evs {
				switch m := ev.Msg.(type) {
				case *comfy.Progress:
					if m.Node != "3" || m.Max != 3 || m.PromptID != id {
						t.Errorf("progress %+v", m)
					}
					progress = append(progress, m.Value)
				case *comfy.PreviewImage:
					if withMeta {
						t.Error("type-1 preview sent to a client that asked for metadata")
					}
					if m.ImageType != comfy.ImageJPEG || len(m.Image) == 0 || evs[i-1].Type != comfy.EventProgress {
						t.Errorf("bad type-1 preview (after %s)", evs[i-1].Type)
					}
					previews++
				case *comfy.PreviewImageWithMetadata:
					if !withMeta {
						t.Error("type-4 preview sent to a client that did not ask")
					}
					if m.Metadata.PromptID != id || m.Metadata.NodeID != "3" || m.Metadata.ImageType != "image/jpeg" || evs[i+1].Type != comfy.EventProgress {
						t.Errorf("bad type-4 preview %+v", m.Metadata)
					}
					previews++
				case *comfy.ProgressText:
					if m.NodeID != "3" || m.Text == "" {
						t.Errorf("progress text %+v", m)
					}
					texts++
				case *comfy.ProgressState:
					if m.PromptID != id {
						t.Errorf("progress_state %+v", m)
					}
				}
			}
			if !slices.Equal(progress, []float64{1, 2, 3}) || previews != 3 || texts != 1 {
				t.Fatalf("progress %v, previews %d, texts %d", progress, previews, texts)
			}
			files := e.history(id).Files()
			if len(files) != 1 {
				t.Fatalf("files %+v", files)
			}
			decodePNG(t, e.download(files[0].FileRef))
		})
	}
}

func TestOutputsAreDeterministic(t *testing.T) {
	e := start(t, sim.Config{DisableCache: true})
	sum := func(seed int, text string) [32]byte {
		id := e.queue(txt2imgGraph(seed, text, 2), "", nil)
		if err := e.sim.WaitIdle(ctx(t)); err != nil {
			t.Fatal(err)
		}
		files := e.history(id).Files()
		return sha256.Sum256(e.download(files[0].FileRef))
	}
	a, b := sum(1, "cat"), sum(1, "cat")
	c, d := sum(2, "cat"), sum(1, "dog")
	if a != b {
		t.Error("same seed and text gave different files")
	}
	if a == c || a == d {
		t.Error("different seed or text gave the same file")
	}
}

func TestCachedRerunReusesOutputs(t *testing.T) {
	e := start(t, sim.Config{})
	f := e.follow("c")
	g := emptyImageGraph(0x00ff00, "cached")
	first := e.queue(g, "c", nil)
	e.collect(f, first)
	second := e.queue(g, "c", nil)
	evs := e.collect(f, second)
	var cached []string
	for _, ev := range evs {
		if m, ok := ev.Msg.(*comfy.ExecutionCached); ok {
			cached = m.Nodes
		}
		if m, ok := ev.Msg.(*comfy.Executing); ok && m.Node != nil {
			t.Errorf("cached node %s executed again", *m.Node)
		}
	}
	if !slices.Equal(cached, []string{"1", "2"}) {
		t.Errorf("execution_cached nodes = %v", cached)
	}
	if a, b := e.history(first).Files(), e.history(second).Files(); len(b) != 1 || a[0].Filename != b[0].Filename {
		t.Errorf("outputs differ: %v vs %v", a, b)
	}
	if e.sim.Stats().Executions[second] != 1 {
		t.Error("a cached prompt still counts as executed once")
	}
}

func TestFailNodeReportsExecutionError(t *testing.T) {
	e := start(t, sim.Config{})
	f := e.follow("c")
	id := e.queue(txt2imgGraph(7, "x", 2), "c", map[string]any{"sim": map[string]any{"fail_node": "KSampler", "fail_message": "CUDA out of memory"}})
	evs := e.collect(f, id)
	var ee *comfy.ExecutionError
	for _, ev := range evs {
		if m, ok := ev.Msg.(*comfy.ExecutionError); ok {
			ee = m
		}
		if ev.Type == comfy.EventExecutionSuccess {
			t.Error("execution_success after a failure")
		}
	}
	if ee == nil || ee.NodeID != "3" || ee.NodeType != "KSampler" || ee.ExceptionMessage != "CUDA out of memory" ||
		ee.ExceptionType == "" || len(ee.Traceback) == 0 || !slices.Contains(ee.Executed, "4") || ee.PromptID != id {
		t.Fatalf("execution_error = %+v", ee)
	}
	h := e.history(id)
	if h.Status.StatusStr != "error" || h.Status.Completed || len(h.Files()) != 0 {
		t.Fatalf("history = %+v", h.Status)
	}
	if last := h.Status.Messages[len(h.Status.Messages)-1]; last.Event != comfy.EventExecutionError {
		t.Errorf("last status message %s", last.Event)
	}
}

// The out-of-memory fault fails every prompt the way a GPU out of memory
// does on ComfyUI: torch's exception type, its message, ComfyUI's tips.
func TestOOMFaultFailsEveryPrompt(t *testing.T) {
	e := start(t, sim.Config{Faults: sim.Faults{OOMNode: "*"}})
	f := e.follow("c")
	for i := range 2 {
		id := e.queue(emptyImageGraph(i, "oom"), "c", nil)
		var ee *comfy.ExecutionError
		for _, ev := range e.collect(f, id) {
			if m, ok := ev.Msg.(*comfy.ExecutionError); ok {
				ee = m
			}
		}
		if ee == nil || ee.ExceptionType != "torch.OutOfMemoryError" || ee.NodeID != "1" ||
			!strings.HasPrefix(ee.ExceptionMessage, "CUDA out of memory. Tried to allocate") ||
			!strings.Contains(ee.ExceptionMessage, "\nThis error means you ran out of memory on your GPU.") {
			t.Fatalf("prompt %d: execution_error = %+v", i, ee)
		}
		if h := e.history(id); h.Status.StatusStr != "error" {
			t.Errorf("prompt %d: history %+v", i, h.Status)
		}
	}
}

func TestQueueDeleteClearAndInterrupt(t *testing.T) {
	e := start(t, sim.Config{Faults: sim.Faults{HangNode: "EmptyImage"}})
	f := e.follow("c")
	a := e.queue(emptyImageGraph(1, "a"), "c", nil)
	e.waitEvent(f, func(ev comfy.Event) bool {
		m, ok := ev.Msg.(*comfy.Executing)
		return ok && m.Node != nil && *m.Node == "1" && m.PromptID == a
	})
	b := e.queue(emptyImageGraph(2, "b"), "c", nil)
	c := e.queue(emptyImageGraph(3, "c"), "c", nil)
	d := e.queue(emptyImageGraph(4, "d"), "c", nil)

	q, err := e.c.Queue(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Running) != 1 || q.Running[0].PromptID != a || len(q.Pending) != 3 {
		t.Fatalf("queue = %+v", q)
	}
	if q.Running[0].ClientID() != "c" || !slices.Equal(q.Running[0].OutputsToExecute, []string{"2"}) {
		t.Errorf("running item %+v", q.Running[0])
	}
	if n, _ := e.c.QueueRemaining(ctx(t)); n != 4 {
		t.Errorf("queue_remaining = %d", n)
	}
	// Deleting a running prompt from the queue does nothing (pending only).
	if err := e.c.DeleteFromQueue(ctx(t), b, a); err != nil {
		t.Fatal(err)
	}
	q, _ = e.c.Queue(ctx(t))
	if len(q.Running) != 1 || len(q.Pending) != 2 {
		t.Fatalf("after delete: %+v", q)
	}
	// Interrupting a prompt that is not running is a no-op.
	if err := e.c.Interrupt(ctx(t), c); err != nil {
		t.Fatal(err)
	}
	if err := e.c.ClearQueue(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Interrupt(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	ev := e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventExecutionInterrupted })
	if m := ev.Msg.(*comfy.ExecutionInterrupted); m.PromptID != a || m.NodeID != "1" || m.NodeType != "EmptyImage" {
		t.Fatalf("interrupted = %+v", m)
	}
	e.collect(f, a)
	h := e.history(a)
	if h.Status.StatusStr != "error" || !h.Status.Interrupted() {
		t.Fatalf("history status %+v", h.Status)
	}
	for _, id := range []string{b, c, d} {
		if _, ok, _ := e.c.PromptHistory(ctx(t), id); ok {
			t.Errorf("removed prompt %s ran", id)
		}
	}
	if st := e.sim.Stats(); st.Interrupted != 1 || st.QueueRemaining != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestHistoryPagingOldestFirst(t *testing.T) {
	e := start(t, sim.Config{})
	var ids []string
	for i := range 4 {
		ids = append(ids, e.queue(emptyImageGraph(i, "h"), "", nil))
	}
	if err := e.sim.WaitIdle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	page := func(q comfy.HistoryQuery) []string {
		h, err := e.c.History(ctx(t), q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, en := range h {
			out = append(out, en.PromptID)
		}
		return out
	}
	one := 1
	if got := page(comfy.HistoryQuery{}); !slices.Equal(got, ids) {
		t.Errorf("all = %v, want %v", got, ids)
	}
	if got := page(comfy.HistoryQuery{MaxItems: 2}); !slices.Equal(got, ids[2:]) {
		t.Errorf("max_items=2 = %v", got)
	}
	if got := page(comfy.HistoryQuery{MaxItems: 2, Offset: &one}); !slices.Equal(got, ids[1:3]) {
		t.Errorf("max_items=2&offset=1 = %v", got)
	}
	if err := e.c.DeleteHistory(ctx(t), ids[0]); err != nil {
		t.Fatal(err)
	}
	if got := page(comfy.HistoryQuery{}); !slices.Equal(got, ids[1:]) {
		t.Errorf("after delete = %v", got)
	}
	if err := e.c.ClearHistory(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := page(comfy.HistoryQuery{}); len(got) != 0 {
		t.Errorf("after clear = %v", got)
	}
}

func TestDroppedSocketReconnects(t *testing.T) {
	e := start(t, sim.Config{Steps: 4})
	f := e.follow("c")
	// The fault cuts every socket at step 2 of the sampler.
	id := e.queue(txt2imgGraph(3, "drop", 4), "c", map[string]any{"sim": map[string]any{"drop_ws_at_step": 2}})
	e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventDisconnected })
	ev := e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventReconnected })
	if m := ev.Msg.(*comfy.Reconnected); m.Attempts < 1 {
		t.Errorf("reconnected %+v", m)
	}
	st := e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventStatus })
	if st.Msg.(*comfy.StatusMsg).SID != "c" {
		t.Errorf("status after reconnect: %s", st.Frame)
	}
	// The prompt ran on while the socket was down, and may have ended
	// before the client was back: its end is in the history, not
	// necessarily on the socket (as with ComfyUI, whose events to a
	// missing socket are lost).
	if err := e.sim.WaitIdle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if !e.history(id).Succeeded() {
		t.Error("prompt did not finish after the drop")
	}
	// The new socket carries the next prompt's events.
	next := e.queue(emptyImageGraph(7, "after-drop"), "c", nil)
	e.collect(f, next)
	// And the on-demand drop.
	if n := e.sim.DropSockets(); n == 0 {
		t.Error("no socket to drop")
	}
	e.waitEvent(f, func(ev comfy.Event) bool { return ev.Type == comfy.EventReconnected })
}

func TestPromptIDPolicies(t *testing.T) {
	e := start(t, sim.Config{PromptIDs: sim.PromptIDIgnore})
	resp, err := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: emptyImageGraph(0, "x"), PromptID: "my-own-id"})
	if err != nil || resp.PromptID == "my-own-id" || resp.PromptID == "" {
		t.Fatalf("ignore policy: %v %v", resp, err)
	}
	e2 := start(t, sim.Config{})
	_, err = e2.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: emptyImageGraph(0, "x"), PromptID: "not-a-uuid"})
	var pe *comfy.PromptError
	if !errors.As(err, &pe) || pe.Info.Type != comfy.ErrInvalidPromptID {
		t.Fatalf("uuid policy: %v", err)
	}
}

// Instant answers a post only after the prompt has run and every event is
// sent; Legacy then names its own id, as ComfyUI before mid-2025 did. A
// client that waits for the answer before it listens misses the run.
func TestInstantLegacyRunsBeforeTheAnswer(t *testing.T) {
	e := start(t, sim.Config{Instant: true, Legacy: true, StepDelay: time.Second})
	f := e.follow("c")
	resp, err := e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: txt2imgGraph(5, "instant", 3), ClientID: "c", PromptID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	// Done by the time of the answer (a step of a second is not waited for).
	if h, ok, err := e.c.PromptHistory(ctx(t), resp.PromptID); err != nil || !ok || !h.Succeeded() {
		t.Fatalf("history at the answer: %v %v %+v", ok, err, h)
	}
	evs := e.collect(f, resp.PromptID)
	if slices.Contains(types(evs), comfy.EventProgressState) {
		t.Errorf("the older ComfyUI sends no progress_state: %v", types(evs))
	}
	if st := e.sim.Stats(); st.Executions[resp.PromptID] != 1 {
		t.Errorf("executions %v", st.Executions)
	}
	// The older error shapes, which the client still reads.
	_, err = e.c.QueuePrompt(ctx(t), comfy.PromptRequest{})
	var pe *comfy.PromptError
	if !errors.As(err, &pe) || pe.Info.Type != comfy.ErrNoPrompt || string(pe.Body) != `{"error":"no prompt","node_errors":[]}` {
		t.Errorf("no prompt: %v", err)
	}
	_, err = e.c.QueuePrompt(ctx(t), comfy.PromptRequest{Prompt: comfy.Prompt{"1": {ClassType: "EmptyImage", Inputs: map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0}}}})
	if !errors.As(err, &pe) || pe.Info.Type != comfy.ErrPromptNoOutputs || !strings.HasSuffix(string(pe.Body), `"node_errors":[]}`) {
		t.Errorf("no outputs: %v", err)
	}
	if st, _, _ := get(t, e.hs.URL+"/features"); st != 404 {
		t.Errorf("/features: %d", st)
	}
}
