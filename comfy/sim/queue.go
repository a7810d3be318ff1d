package sim

import (
	"container/heap"
	"encoding/json"
	"sync"

	"github.com/comfy-workshop/workshop/comfy"
)

// maxHistory is ComfyUI's MAXIMUM_HISTORY_SIZE.
const maxHistory = 10000

// job is one queued prompt (ComfyUI's queue tuple plus what the
// simulator needs to run it).
type job struct {
	number   json.Number // as ComfyUI reports it
	priority float64     // number as a float, for ordering
	seq      int64       // insertion order, to break ties
	id       string
	prompt   comfy.Prompt
	raw      json.RawMessage // the prompt after validation, as stored
	extra    map[string]any
	extraRaw json.RawMessage // extra as ComfyUI keeps it, in its order
	outputs  []string
	faults   Faults // per-prompt faults from extra_data["sim"]
	// ended is closed when the job leaves the queue: run, deleted or
	// cleared (Instant answers the post then).
	ended   chan struct{}
	endOnce sync.Once
}

func (j *job) end() { j.endOnce.Do(func() { close(j.ended) }) }

func (j *job) clientID() (string, bool) {
	id, ok := j.extra["client_id"].(string)
	return id, ok
}

func (j *job) item() comfy.QueueItem {
	return comfy.QueueItem{Number: j.number, PromptID: j.id, Prompt: j.raw, ExtraData: j.extraRaw, OutputsToExecute: j.outputs}
}

// jobHeap orders jobs as ComfyUI's heapq does: by number (then, since
// numbers are unique in practice, by arrival).
type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority < h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	*h = old[:n-1]
	return x
}

type historyEntry struct {
	item    comfy.QueueItem
	outputs map[string]comfy.NodeOutput
	meta    map[string]comfy.OutputMeta
	status  comfy.ExecStatus
}

func (e *historyEntry) MarshalJSON() ([]byte, error) {
	outputs := e.outputs
	if outputs == nil {
		outputs = map[string]comfy.NodeOutput{}
	}
	meta := e.meta
	if meta == nil {
		meta = map[string]comfy.OutputMeta{}
	}
	return json.Marshal(struct {
		Prompt  comfy.QueueItem             `json:"prompt"`
		Outputs map[string]comfy.NodeOutput `json:"outputs"`
		Status  comfy.ExecStatus            `json:"status"`
		Meta    map[string]comfy.OutputMeta `json:"meta"`
	}{e.item, outputs, e.status, meta})
}

// promptQueue is ComfyUI's PromptQueue: pending heap, the running prompt,
// and the history in insertion order.
type promptQueue struct {
	mu       sync.Mutex
	notEmpty *sync.Cond
	pending  jobHeap
	running  *job
	seq      int64
	histIDs  []string
	history  map[string]*historyEntry
	closed   bool
	idle     chan struct{} // closed when the queue next becomes empty
	// onChange is PromptServer.queue_updated: called after every change
	// with the queue's length, the lock held, so the status it sends comes
	// before anything the change lets happen (as in ComfyUI).
	onChange func(remaining int)
}

func newPromptQueue(onChange func(remaining int)) *promptQueue {
	q := &promptQueue{history: map[string]*historyEntry{}, onChange: onChange}
	q.notEmpty = sync.NewCond(&q.mu)
	return q
}

// idleLocked wakes WaitIdle callers when nothing runs or waits.
func (q *promptQueue) idleLocked() {
	if len(q.pending) == 0 && q.running == nil && q.idle != nil {
		close(q.idle)
		q.idle = nil
	}
}

// idleCh returns a channel closed once nothing runs or waits.
func (q *promptQueue) idleCh() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 && q.running == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if q.idle == nil {
		q.idle = make(chan struct{})
	}
	return q.idle
}

func (q *promptQueue) put(j *job) {
	q.mu.Lock()
	q.seq++
	j.seq = q.seq
	heap.Push(&q.pending, j)
	q.onChange(q.remainingLocked())
	q.notEmpty.Signal()
	q.mu.Unlock()
}

// get blocks until a job is pending and marks it running; nil when closed.
func (q *promptQueue) get() *job {
	q.mu.Lock()
	for len(q.pending) == 0 && !q.closed {
		q.notEmpty.Wait()
	}
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	j := heap.Pop(&q.pending).(*job)
	q.running = j
	q.onChange(q.remainingLocked())
	q.mu.Unlock()
	return j
}

func (q *promptQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.mu.Unlock()
}

func (q *promptQueue) done(j *job, e *historyEntry) {
	q.mu.Lock()
	q.running = nil
	if _, exists := q.history[j.id]; exists {
		q.removeHistoryLocked(j.id)
	}
	if len(q.histIDs) > maxHistory {
		q.removeHistoryLocked(q.histIDs[0])
	}
	q.histIDs = append(q.histIDs, j.id)
	q.history[j.id] = e
	q.idleLocked()
	q.onChange(q.remainingLocked())
	q.mu.Unlock()
}

func (q *promptQueue) removeHistoryLocked(id string) {
	delete(q.history, id)
	for i, h := range q.histIDs {
		if h == id {
			q.histIDs = append(q.histIDs[:i], q.histIDs[i+1:]...)
			return
		}
	}
}

func (q *promptQueue) remaining() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.remainingLocked()
}

func (q *promptQueue) remainingLocked() int {
	n := len(q.pending)
	if q.running != nil {
		n++
	}
	return n
}

// snapshot returns the running and pending items; pending in heap order.
func (q *promptQueue) snapshot() (running, pending []comfy.QueueItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	running = []comfy.QueueItem{}
	if q.running != nil {
		running = append(running, q.running.item())
	}
	pending = make([]comfy.QueueItem, 0, len(q.pending))
	for _, j := range q.pending {
		pending = append(pending, j.item())
	}
	return running, pending
}

func (q *promptQueue) runningID() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running == nil {
		return ""
	}
	return q.running.id
}

func (q *promptQueue) wipe() {
	q.mu.Lock()
	for _, j := range q.pending {
		j.end()
	}
	q.pending = nil
	q.idleLocked()
	q.onChange(q.remainingLocked())
	q.mu.Unlock()
}

// delete removes the first pending job with the id, as ComfyUI does.
func (q *promptQueue) delete(id string) bool {
	q.mu.Lock()
	found := false
	for i, j := range q.pending {
		if j.id == id {
			heap.Remove(&q.pending, i)
			j.end()
			found = true
			break
		}
	}
	q.idleLocked()
	if found {
		q.onChange(q.remainingLocked())
	}
	q.mu.Unlock()
	return found
}

// historyPage is get_history: oldest first, max_items/offset as ComfyUI
// reads them (offset -1 with max_items means "the last max_items").
func (q *promptQueue) historyPage(maxItems, offset int) ([]string, []*historyEntry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if offset < 0 && maxItems >= 0 {
		offset = len(q.histIDs) - maxItems
	}
	var ids []string
	var entries []*historyEntry
	for i, id := range q.histIDs {
		if i < offset {
			continue
		}
		ids = append(ids, id)
		entries = append(entries, q.history[id])
		if maxItems >= 0 && len(ids) >= maxItems {
			break
		}
	}
	return ids, entries
}

func (q *promptQueue) historyOf(id string) (*historyEntry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.history[id]
	return e, ok
}

func (q *promptQueue) deleteHistory(id string) {
	q.mu.Lock()
	q.removeHistoryLocked(id)
	q.mu.Unlock()
}

func (q *promptQueue) wipeHistory() {
	q.mu.Lock()
	q.histIDs = nil
	q.history = map[string]*historyEntry{}
	q.mu.Unlock()
}
