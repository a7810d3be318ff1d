package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// executor runs one prompt at a time, like ComfyUI's prompt_worker.
type executor struct {
	s *Server

	mu       sync.Mutex
	intr     chan struct{} // closed by an interrupt; new per prompt
	intrOnce *sync.Once
	clientID *string // client of the running prompt
	lastNode *string // node being executed, for reconnecting clients
	dead     bool    // the crash fault fired

	// cache maps a node signature to its result, kept from the previous
	// prompt the way ComfyUI's classic cache keeps what the next prompt
	// can reuse.
	cache     map[string]*cachedNode
	freeCache bool
}

type cachedNode struct {
	outputs []*value
	ui      comfy.NodeOutput
}

// execError is a node failing, reported as execution_error.
type execError struct {
	excType string
	msg     string
	inputs  map[string]any
}

func (e *execError) Error() string { return e.excType + ": " + e.msg }

var errInterrupted = errors.New("interrupted")

// errCrashed stops a prompt whose process "died" (crash fault with a
// non-exiting Exit, as in tests).
var errCrashed = errors.New("crashed")

func newExecutor(s *Server) *executor {
	return &executor{s: s, cache: map[string]*cachedNode{}, intr: make(chan struct{}), intrOnce: &sync.Once{}}
}

func (e *executor) loop() {
	for {
		j := e.s.queue.get()
		if j == nil {
			return
		}
		if !e.run(j) {
			// The process "crashed": run nothing more, like a dead ComfyUI.
			<-e.s.closing
			return
		}
	}
}

// interrupt is nodes.interrupt_processing(): it stops the running prompt at
// its next check. With nothing running it is forgotten at the next start.
func (e *executor) interrupt() {
	e.mu.Lock()
	once, ch := e.intrOnce, e.intr
	e.mu.Unlock()
	once.Do(func() { close(ch) })
}

func (e *executor) interrupted() bool {
	e.mu.Lock()
	ch := e.intr
	e.mu.Unlock()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (e *executor) currentNodeFor(sid string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.clientID != nil && *e.clientID == sid && e.lastNode != nil {
		return *e.lastNode, true
	}
	return "", false
}

func (e *executor) setRunning(sid *string, node *string) {
	e.mu.Lock()
	e.clientID, e.lastNode = sid, node
	e.mu.Unlock()
}

func (e *executor) setLastNode(node *string) {
	e.mu.Lock()
	e.lastNode = node
	e.mu.Unlock()
}

// free is POST /free {"free_memory": true}: forget cached results.
func (e *executor) free() {
	e.mu.Lock()
	e.freeCache = true
	e.mu.Unlock()
}

// run executes one prompt; false when the crash fault ended the "process".
func (e *executor) run(j *job) bool {
	s := e.s
	e.mu.Lock()
	e.intr, e.intrOnce = make(chan struct{}), &sync.Once{}
	freeCache := e.freeCache
	e.freeCache = false
	e.mu.Unlock()

	var sid *string
	if id, ok := j.clientID(); ok {
		sid = &id
	}
	e.setRunning(sid, nil)
	s.stats.executed(j.id)
	faults := s.currentFaults().merged(j.faults)
	r := &runState{e: e, j: j, sid: sid, faults: faults, results: map[string][]*value{}, progress: newProgress(j.id)}
	s.log.Info("executing prompt", "prompt_id", j.id, "client_id", j.extra["client_id"])

	r.add(comfy.EventExecutionStart, jsonobj.Of("prompt_id", j.id), false)

	sigs := map[string]string{}
	for id := range j.prompt {
		r.signature(id, sigs, nil)
	}
	if freeCache || s.cfg.DisableCache {
		e.cache = map[string]*cachedNode{}
	}
	wanted := map[string]bool{}
	for _, sig := range sigs {
		wanted[sig] = true
	}
	for sig := range e.cache {
		if !wanted[sig] {
			delete(e.cache, sig)
		}
	}
	cachedNodes := []string{}
	for _, id := range j.prompt.SortedNodeIDs() {
		if _, ok := e.cache[sigs[id]]; ok {
			cachedNodes = append(cachedNodes, id)
		}
	}
	r.add(comfy.EventExecutionCached, jsonobj.Of("nodes", cachedNodes, "prompt_id", j.id), false)

	var failure error
	var failedNode string
	cached := func(id string) bool { _, ok := e.cache[sigs[id]]; return ok }
	// A cached input is used as it is, without a word on the socket.
	for id := range j.prompt {
		if c, ok := e.cache[sigs[id]]; ok {
			r.results[id] = c.outputs
		}
	}
	for _, id := range executionOrder(j, s, cached) {
		if e.interrupted() {
			failure, failedNode = errInterrupted, id
			break
		}
		if c, ok := e.cache[sigs[id]]; ok {
			r.results[id] = c.outputs
			if c.ui != nil {
				r.recordUI(id, c.ui)
			}
			r.finishProgress(id)
			continue
		}
		res, err := r.execute(id)
		if errors.Is(err, errCrashed) {
			return false
		}
		if err != nil {
			failure, failedNode = err, id
			break
		}
		r.results[id] = res.outputs
		if res.ui != nil {
			r.recordUI(id, res.ui)
		}
		if !s.cfg.DisableCache {
			e.cache[sigs[id]] = &cachedNode{outputs: res.outputs, ui: res.ui}
		}
		r.finishProgress(id)
		r.executed = append(r.executed, id)
	}

	status := comfy.ExecStatus{StatusStr: "success", Completed: true}
	switch {
	case failure == nil:
		r.add(comfy.EventExecutionSuccess, jsonobj.Of("prompt_id", j.id), false)
		s.stats.succeeded.Add(1)
	case errors.Is(failure, errInterrupted):
		status = comfy.ExecStatus{StatusStr: "error"}
		r.add(comfy.EventExecutionInterrupted, jsonobj.Of(
			"prompt_id", j.id, "node_id", failedNode, "node_type", j.prompt[failedNode].ClassType, "executed", r.executedList(),
		), true)
		s.stats.interrupts.Add(1)
		s.log.Info("prompt interrupted", "prompt_id", j.id, "node", failedNode)
	default:
		status = comfy.ExecStatus{StatusStr: "error"}
		var ee *execError
		if !errors.As(failure, &ee) {
			ee = &execError{excType: "Exception", msg: failure.Error()}
		}
		inputs := ee.inputs
		if inputs == nil {
			inputs = map[string]any{}
		}
		r.add(comfy.EventExecutionError, jsonobj.Of(
			"prompt_id", j.id, "node_id", failedNode, "node_type", j.prompt[failedNode].ClassType, "executed", r.executedList(),
			"exception_message", ee.msg, "exception_type", ee.excType,
			"traceback", []string{fmt.Sprintf("  File \"/ComfyUI/execution.py\", line 277, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(...)\n"), fmt.Sprintf("%s: %s\n", ee.excType, ee.msg)},
			"current_inputs", inputs, "current_outputs", cachedNodes,
		), false)
		s.stats.failed.Add(1)
		s.log.Warn("prompt failed", "prompt_id", j.id, "node", failedNode, "err", ee.msg)
	}
	status.Messages = r.messages
	if status.Messages == nil {
		status.Messages = []comfy.StatusMessage{}
	}
	e.setLastNode(nil)
	s.queue.done(j, &historyEntry{item: j.item(), outputs: r.uiOutputs, meta: r.meta, status: status})
	if sid != nil {
		s.hub.sendJSON(sid, comfy.EventExecuting, jsonobj.Of("node", nil, "prompt_id", j.id))
	}
	e.setRunning(nil, nil)
	j.end()
	return true
}

// runState is one prompt's execution.
type runState struct {
	e         *executor
	j         *job
	sid       *string
	faults    Faults
	results   map[string][]*value
	executed  []string
	messages  []comfy.StatusMessage
	uiOutputs map[string]comfy.NodeOutput
	meta      map[string]comfy.OutputMeta
	progress  *progressReg
	dropped   bool
}

// add is PromptExecutor.add_message: remembered for the history status,
// sent to the prompt's client (or, for broadcast ones without a client,
// to everyone).
func (r *runState) add(event string, data jsonobj.Object, broadcast bool) {
	data.Set("timestamp", jsonobj.Raw(time.Now().UnixMilli()))
	raw, _ := json.Marshal(data)
	r.messages = append(r.messages, comfy.StatusMessage{Event: event, Data: raw})
	if r.sid != nil || broadcast {
		r.e.s.hub.sendJSON(r.sid, event, data)
	}
}

func (r *runState) executedList() []string {
	if r.executed == nil {
		return []string{}
	}
	return append([]string{}, r.executed...)
}

func (r *runState) recordUI(id string, ui comfy.NodeOutput) {
	if r.uiOutputs == nil {
		r.uiOutputs, r.meta = map[string]comfy.NodeOutput{}, map[string]comfy.OutputMeta{}
	}
	r.uiOutputs[id] = ui
	r.meta[id] = comfy.OutputMeta{NodeID: id, DisplayNode: id, RealNodeID: id}
	if r.sid != nil {
		r.e.s.hub.sendJSON(r.sid, comfy.EventExecuted, jsonobj.Of("node", id, "display_node", id, "output", ui, "prompt_id", r.j.id))
	}
}

func matches(sel, id, class string) bool {
	return sel == "*" || (sel != "" && (sel == id || sel == class))
}

// oomMessage is what ComfyUI reports for torch's CUDA out-of-memory error:
// torch's text, then ComfyUI's tips (execution.py).
const oomMessage = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.25 GiB is free. " +
	"Including non-PyTorch memory, this process has 77.93 GiB memory in use. Of the allocated memory 75.12 GiB is allocated by PyTorch, " +
	"and 1.99 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting " +
	"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  " +
	"(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)\n" +
	"This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."

// execute runs one node: progress_state, executing, the node's work with
// its faults, as ComfyUI's execution.execute does.
func (r *runState) execute(id string) (*nodeRun, error) {
	s := r.e.s
	node := r.j.prompt[id]
	def := s.byName[node.ClassType]
	r.progress.start(id)
	r.sendProgressState()
	idCopy := id
	r.e.setLastNode(&idCopy)
	if r.sid != nil {
		s.hub.sendJSON(r.sid, comfy.EventExecuting, jsonobj.Of("node", id, "display_node", id, "prompt_id", r.j.id))
	}
	x := &nodeCtx{r: r, id: id, node: node, def: def}
	if matches(r.faults.CrashNode, id, node.ClassType) {
		s.log.Error("crash fault: exiting mid-job", "prompt_id", r.j.id, "node", id)
		s.cfg.Exit(3)
		return nil, errCrashed
	}
	if matches(r.faults.FailNode, id, node.ClassType) {
		msg := r.faults.FailMessage
		if msg == "" {
			msg = "simulated failure"
		}
		return nil, &execError{excType: "RuntimeError", msg: msg, inputs: x.currentInputs()}
	}
	if matches(r.faults.OOMNode, id, node.ClassType) {
		s.log.Warn("oom fault: Got an OOM, unloading all loaded models.", "prompt_id", r.j.id, "node", id)
		return nil, &execError{excType: "torch.OutOfMemoryError", msg: oomMessage, inputs: x.currentInputs()}
	}
	if matches(r.faults.HangNode, id, node.ClassType) {
		s.log.Info("hang fault: node blocks until interrupted", "prompt_id", r.j.id, "node", id)
		if !r.wait(-1) {
			return nil, errInterrupted
		}
	}
	return def.run(x)
}

// wait sleeps d (forever when negative) unless the prompt is interrupted
// or the server closes; false when it was cut short.
func (r *runState) wait(d time.Duration) bool {
	r.e.mu.Lock()
	intr := r.e.intr
	r.e.mu.Unlock()
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
		return true
	case <-intr:
		return false
	case <-r.e.s.closing:
		return false
	}
}

func (r *runState) finishProgress(id string) {
	r.progress.finish(id)
	r.sendProgressState()
}

func (r *runState) sendProgressState() {
	if r.e.s.cfg.Legacy {
		return // ComfyUI reports progress_state since 2025
	}
	r.e.s.hub.sendJSON(r.sid, comfy.EventProgressState, jsonobj.Of("prompt_id", r.j.id, "nodes", r.progress.snapshot()))
}

// signature identifies a node's result: its class, its widget values and
// the signatures of what feeds it (ComfyUI's CacheKeySetInputSignature).
func (r *runState) signature(id string, sigs map[string]string, visiting map[string]bool) string {
	if sig, ok := sigs[id]; ok {
		return sig
	}
	if visiting == nil {
		visiting = map[string]bool{}
	}
	if visiting[id] {
		return "cycle:" + id
	}
	visiting[id] = true
	node := r.j.prompt[id]
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", node.ClassType)
	for _, name := range sortedKeys(node.Inputs) {
		v := node.Inputs[name]
		if src, idx, ok := comfy.AsLink(v); ok {
			if _, exists := r.j.prompt[src]; exists {
				fmt.Fprintf(h, "%s=link(%s,%d)\x00", name, r.signature(src, sigs, visiting), idx)
				continue
			}
		}
		b, _ := json.Marshal(v)
		fmt.Fprintf(h, "%s=%s\x00", name, b)
	}
	// LoadImage's IS_CHANGED hashes the file, so a replaced upload reruns.
	if node.ClassType == "LoadImage" {
		if name, ok := node.Inputs["image"].(string); ok {
			if path, ok := r.e.s.annotatedPath(name, "input"); ok {
				if b, err := os.ReadFile(path); err == nil {
					fmt.Fprintf(h, "file=%x\x00", sha256.Sum256(b))
				}
			}
		}
	}
	sig := hex.EncodeToString(h.Sum(nil))
	sigs[id] = sig
	delete(visiting, id)
	return sig
}

// executionOrder is a depth-first walk from the outputs to run, inputs in
// object_info order: dependencies first, each node once. A cached input is
// not staged (ComfyUI's ExecutionList leaves it out, and so its inputs);
// a cached output is, to report its output again.
func executionOrder(j *job, s *Server, cached func(string) bool) []string {
	var order []string
	seen := map[string]bool{}
	var visit func(id string)
	visit = func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		node, ok := j.prompt[id]
		if !ok {
			return
		}
		if cached(id) {
			if slices.Contains(j.outputs, id) {
				order = append(order, id)
			}
			return
		}
		def := s.byName[node.ClassType]
		var names []string
		if def != nil {
			for _, in := range append(append([]inputDef{}, def.required...), def.optional...) {
				names = append(names, in.name)
			}
		} else {
			names = sortedKeys(node.Inputs)
		}
		for _, name := range names {
			if src, _, ok := comfy.AsLink(node.Inputs[name]); ok {
				visit(src)
			}
		}
		order = append(order, id)
	}
	outs := append([]string{}, j.outputs...)
	comfy.SortNodeIDs(outs)
	for _, o := range outs {
		visit(o)
	}
	return order
}

// progressReg is comfy_execution.progress's registry for one prompt.
type progressReg struct {
	promptID string
	order    []string
	nodes    map[string]*nodeProgress
}

type nodeProgress struct {
	state      string
	value, max float64
}

func newProgress(promptID string) *progressReg {
	return &progressReg{promptID: promptID, nodes: map[string]*nodeProgress{}}
}

func (p *progressReg) entry(id string) *nodeProgress {
	n, ok := p.nodes[id]
	if !ok {
		n = &nodeProgress{state: "pending", max: 1}
		p.nodes[id] = n
		p.order = append(p.order, id)
	}
	return n
}

func (p *progressReg) start(id string) {
	n := p.entry(id)
	n.state, n.value, n.max = "running", 0, 1
}

func (p *progressReg) update(id string, value, max float64) {
	n := p.entry(id)
	n.value, n.max = value, max
}

func (p *progressReg) finish(id string) {
	n := p.entry(id)
	n.state, n.value = "finished", n.max
}

// snapshot is every started node in the order they started.
func (p *progressReg) snapshot() jsonobj.Object {
	out := jsonobj.Object{}
	for _, id := range p.order {
		n := p.nodes[id]
		if n.state == "pending" {
			continue
		}
		out = append(out, jsonobj.Member{Key: id, Value: jsonobj.Raw(jsonobj.Of(
			"value", n.value, "max", n.max, "state", n.state, "node_id", id, "prompt_id", p.promptID,
			"display_node_id", id, "parent_node_id", nil, "real_node_id", id))})
	}
	return out
}
