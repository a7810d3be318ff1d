package dispatch

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/tunnel"
)

// Stages of a job on its instance.
const (
	stageSubmitting = "submitting"
	stageQueued     = "queued" // prefetched: in the instance's queue
	stageExecuting  = "executing"
	stageCollecting = "collecting"
	// stageUnknown: posted, but the answer was lost; reconcile finds out
	// whether the instance has it.
	stageUnknown = "unknown"
)

// worker drives one ComfyUI instance of one agent session.
type worker struct {
	d        *Dispatcher
	q        *sched.Queue
	log      *slog.Logger
	id       string
	agent    string
	instance string
	session  uint64
	client   *comfy.Client
	clientID string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // capacity or connection changed
	sync   chan struct{} // a reconcile with the instance is needed

	// evMu orders event handling: the socket's events, and those replayed
	// once a post's answer or a reconcile names the engine's id for them.
	evMu sync.Mutex

	mu       sync.Mutex
	jobs     map[string]*track // by job id
	byEngine map[string]string // engine prompt id -> job id, where they differ
	// waiting counts what may name the engine's id of a job soon: posts
	// awaiting the instance's answer, reconciles reading its state. While
	// there are some, events for ids the worker does not know are kept.
	waiting    int
	waitsHeld  int          // of those, posts whose answer was lost, for the next reconcile
	early      []earlyEvent // those events, oldest first
	earlyLost  bool         // some fell off the end of early
	executing  string       // job id the instance is executing
	connected  bool         // the instance's socket is up
	reconciled bool         // state matches the instance since it came up
	synced     bool         // the first reconcile (taking over leases) is done
	stopLease  context.CancelFunc
	draining   bool      // the instructor holds new jobs back
	aside      bool      // set aside: it kept failing jobs
	lostAt     time.Time // when its socket went, while it is down
	report     tunnel.InstanceStatus
	version    string // the ComfyUI version report names (comfyVersion), read once per report
	gpus       []tunnel.GPUStats
	models     json.RawMessage
	nodes      *nodeList  // its object_info, once read
	nodesAt    time.Time  // when it was read
	nodesStale bool       // read it again: the instance came back, or lacked a node
	nodesMu    sync.Mutex // one read of the node list at a time
}

// earlyEvent is a socket event for a prompt id the worker does not know
// yet. ComfyUI before mid-2025 makes its own ids, and runs a fully cached
// graph to its end before it answers the post that would name the id; a
// reconcile finds jobs on the instance while their events go on.
type earlyEvent struct {
	promptID string
	ev       comfy.Event
}

// maxEarly bounds the events kept for an answer: a cached graph sends a
// few dozen. Past it the oldest go, and a reconcile finds the job's end.
const maxEarly = 1024

// track is a leased job on this worker.
type track struct {
	job         *workshop.Job // without workflow
	engineID    string
	stage       string
	node        string
	value, max  int
	started     time.Time
	timedOut    bool
	preview     []byte
	previewMIME string
	previewSent time.Time
}

func newWorker(d *Dispatcher, a tunnel.AgentInfo, in tunnel.InstanceStatus) *worker {
	id := WorkerID(a.Name, in.Name)
	base := in.URL
	if base == "" {
		base = "http://comfyui.invalid"
	}
	client, err := comfy.New(base, comfy.WithDialer(d.cfg.Tunnels.Dialer(a.Name, in.Name)), comfy.WithLogger(d.log))
	if err != nil {
		// The agent sent an unusable URL: the host part is only a label
		// here, so fall back to a fixed one.
		client, _ = comfy.New("http://comfyui.invalid", comfy.WithDialer(d.cfg.Tunnels.Dialer(a.Name, in.Name)), comfy.WithLogger(d.log))
	}
	return &worker{
		d: d, q: d.cfg.Queue, log: d.log.With("worker", id),
		id: id, agent: a.Name, instance: in.Name, session: a.SessionID,
		client: client, clientID: "workshop-" + strings.NewReplacer("/", "-", " ", "-").Replace(id),
		wake: make(chan struct{}, 1), sync: make(chan struct{}, 1),
		jobs: map[string]*track{}, byEngine: map[string]string{},
		report: in, version: comfyVersion(in.SystemStats), gpus: a.Report.GPUs, models: a.Report.Models,
	}
}

func (w *worker) start(parent context.Context) {
	w.ctx, w.cancel = context.WithCancel(parent)
	follower := w.client.Follow(w.ctx, w.clientID,
		comfy.WithFeatureFlags(comfy.FeatureFlags{"supports_preview_metadata": true}))
	cancels := w.q.Events().Subscribe(256, func(e sched.Event) bool {
		return e.Type == sched.EventJobUpdated && e.Job != nil && e.Job.Worker == w.id && e.Job.Status == workshop.StatusCancelled
	})
	w.wg.Add(4)
	go func() { defer w.wg.Done(); w.followLoop(follower) }()
	go func() { defer w.wg.Done(); w.syncLoop() }()
	go func() { defer w.wg.Done(); w.leaseLoop() }()
	go func() { defer w.wg.Done(); w.tickLoop(cancels) }()
}

// stop ends the worker. Its jobs keep their leases: a worker for the same
// instance that comes back within the grace period takes them over.
func (w *worker) stop() {
	w.cancel()
	w.wg.Wait()
	w.client.Close()
}

func (w *worker) kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// setHeld changes, with set, whether new jobs are held back (draining,
// aside), and stops a wait for a job in progress.
func (w *worker) setHeld(set func()) {
	w.mu.Lock()
	set()
	w.interruptLease()
	w.mu.Unlock()
	w.kick(w.wake)
}

// interruptLease ends a wait for a job in progress; mu held.
func (w *worker) interruptLease() {
	if w.stopLease != nil {
		w.stopLease()
	}
}

func (w *worker) setReport(st tunnel.InstanceStatus, r tunnel.Report) {
	version := comfyVersion(st.SystemStats)
	w.mu.Lock()
	w.report, w.version, w.gpus, w.models = st, version, r.GPUs, r.Models
	w.mu.Unlock()
}

// usable reports whether the worker can take jobs now.
func (w *worker) usable() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.takesJobs()
}

// takesJobs: connected, and new jobs not held back; mu held.
func (w *worker) takesJobs() bool { return w.connected && !w.draining && !w.aside }

func (w *worker) lostSince() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lostAt
}

// onInstance counts jobs the instance holds (queued or executing); jobs
// whose outputs are being collected no longer take the GPU.
func (w *worker) onInstance() int {
	n := 0
	for _, t := range w.jobs {
		if t.stage != stageCollecting {
			n++
		}
	}
	return n
}

// leaseLoop keeps the instance holding one running job plus Prefetch queued.
func (w *worker) leaseLoop() {
	capacity := 1 + w.d.cfg.Prefetch
	for {
		for {
			w.mu.Lock()
			ready := w.takesJobs() && w.reconciled && w.onInstance() < capacity
			w.mu.Unlock()
			if ready {
				break
			}
			select {
			case <-w.wake:
			case <-w.ctx.Done():
				return
			}
		}
		// A drain or a lost socket stops the wait for a job at once.
		ctx, cancel := context.WithCancel(w.ctx)
		w.mu.Lock()
		w.stopLease = cancel
		w.mu.Unlock()
		job, err := w.q.Lease(ctx, w.id, w.d.cfg.Grace)
		cancel()
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			continue
		}
		if !w.usable() {
			// It came in just as the worker stopped taking jobs.
			if _, err := w.q.Release(context.Background(), job.ID, w.id, "the GPU instance stopped taking jobs"); err != nil {
				w.log.Warn("release", "job", job.ID, "err", err)
			}
			continue
		}
		w.submit(job)
	}
}

// submit hands a leased job to the instance.
func (w *worker) submit(job *workshop.Job) {
	summary := *job
	summary.Workflow = nil
	t := &track{job: &summary, engineID: job.ID, stage: stageSubmitting}
	// Tracked before the post: the instance may report the start before the
	// post returns.
	w.mu.Lock()
	w.jobs[job.ID] = t
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Minute)
	defer cancel()
	err := w.uploadInputs(ctx, job)
	var resp *comfy.PromptResponse
	if err == nil {
		w.mu.Lock()
		w.waiting++
		w.mu.Unlock()
		resp, err = w.client.QueuePrompt(ctx, comfy.PromptRequest{
			Prompt:    json.RawMessage(job.Workflow),
			ClientID:  w.clientID,
			PromptID:  job.ID,
			ExtraData: extraData(job),
		})
		var perr *comfy.PromptError
		switch {
		case err != nil && !errors.As(err, &perr):
			// The answer was lost: the reconcile it calls for finds the
			// job, and takes over this wait, so the job's events until
			// then are kept for it.
			w.mu.Lock()
			w.waitsHeld++
			w.mu.Unlock()
		default:
			var known []string
			if resp != nil && resp.PromptID != "" {
				known = []string{resp.PromptID}
			}
			w.answered(known, func() {
				if len(known) > 0 && known[0] != job.ID {
					w.mu.Lock()
					t.engineID = known[0]
					w.byEngine[known[0]] = job.ID
					w.mu.Unlock()
				}
			})
		}
	}
	var perr *comfy.PromptError
	switch {
	case errors.As(err, &perr):
		w.untrack(job.ID)
		jerr := &workshop.JobError{Type: "validation_error", Message: perr.Info.Message, Details: json.RawMessage(perr.Body)}
		if reason, msg, ok := promptFault(perr); ok {
			// A node or model this instance lacks: another may have it,
			// and its node list may be out of date.
			w.nodesDoubtful()
			w.retryElsewhere(job.ID, workshop.Failure{Reason: reason, Message: msg}, jerr)
			return
		}
		w.fail(job.ID, jerr)
		return
	case err != nil:
		// The instance may have taken the prompt before the answer was lost
		// (the tunnel or the agent went at that moment): keep the lease and
		// let the next reconcile ask the instance. It adopts the job if the
		// instance has it, and requeues it (an attempt) if not, so a long job
		// is not run twice for a lost answer. If the instance never comes
		// back, the lease runs out as for any running job.
		w.log.Warn("lost the instance's answer to a job; asking the instance what it has", "job", job.ID, "err", err)
		w.mu.Lock()
		if t.stage == stageSubmitting {
			t.stage = stageUnknown
		}
		// No new jobs until the instance has answered a reconcile (which
		// retries with backoff): no spinning on a broken instance. Leases
		// are still renewed while its socket is up.
		w.reconciled = false
		w.mu.Unlock()
		w.kick(w.sync)
		return
	}
	w.mu.Lock()
	if t.stage == stageSubmitting {
		t.stage = stageQueued
	}
	engineID := t.engineID
	w.mu.Unlock()
	if engineID != job.ID {
		// A cached job may be done already (ECONFLICT): its id is no longer needed.
		if err := w.q.SetEngineID(context.Background(), job.ID, w.id, engineID); err != nil && workshop.ErrorCode(err) != workshop.ECONFLICT {
			w.log.Warn("record engine id", "job", job.ID, "err", err)
		}
	}
	w.publishProgress(t, false)
}

// answered ends a post or a reconcile, which made the engine ids known
// known: learn maps them to their jobs, and the events that came for them
// before are handled, in order, ahead of any later one (one event lock
// holds from the mapping to the replay).
func (w *worker) answered(known []string, learn func()) {
	w.evMu.Lock()
	defer w.evMu.Unlock()
	learn()
	w.mu.Lock()
	w.waiting--
	var replay []comfy.Event
	kept := w.early[:0]
	for _, e := range w.early {
		if slices.Contains(known, e.promptID) {
			replay = append(replay, e.ev)
		} else {
			kept = append(kept, e)
		}
	}
	w.early = kept
	lost := w.earlyLost && len(replay) > 0
	if w.waiting == 0 {
		w.early, w.earlyLost = nil, false // nobody's: other clients of this ComfyUI
	}
	w.mu.Unlock()
	if lost {
		w.kick(w.sync) // the instance's history has what fell off
	}
	for _, ev := range replay {
		w.handle(ev)
	}
}

// jobTag is the extra_data key that names the workshop's job on the
// instance. ComfyUI keeps extra_data in its queue and history items, so a
// prompt whose id the worker never learned (its answer lost, or made by an
// older ComfyUI) is still found as the job's.
const jobTag = "workshop_job_id"

// taggedJob is the job id an instance's extra_data names, or "".
func taggedJob(extra json.RawMessage) string {
	var tag map[string]json.RawMessage
	var id string
	if json.Unmarshal(extra, &tag) != nil || json.Unmarshal(tag[jobTag], &id) != nil {
		return ""
	}
	return id
}

// extraData passes a ComfyUI client's extra_data on (the UI graph, so the
// images the instance writes embed the workflow), without its client_id
// (events must come to the worker's socket), tagged with the job's id (a
// participant's own tag is overwritten).
func extraData(job *workshop.Job) map[string]any {
	var extra map[string]any
	if len(job.ExtraData) > 0 {
		json.Unmarshal(job.ExtraData, &extra)
	}
	if extra == nil {
		extra = map[string]any{}
	}
	delete(extra, "client_id")
	extra[jobTag] = job.ID
	return extra
}

// uploadInputs ships the participant's files the job uses to the instance,
// under a folder of the participant's own, where the graph (rewritten at
// submission) expects them.
func (w *worker) uploadInputs(ctx context.Context, job *workshop.Job) error {
	for _, in := range job.Inputs {
		group, name := store.InputGroup(in)
		f, _, err := w.d.cfg.Files.Open(store.Inputs, job.UserID, group, name)
		if err != nil {
			return fmt.Errorf("input %s: %w", in, err)
		}
		sub := workshop.InputFolder(job.UserID)
		if group != store.InputRoot {
			sub += "/" + group
		}
		_, err = w.client.UploadImage(ctx, comfy.UploadRequest{Filename: name, Body: f, Subfolder: sub, Type: "input", Overwrite: true})
		f.Close()
		if err != nil {
			return fmt.Errorf("upload %s: %w", in, err)
		}
	}
	return nil
}

func (w *worker) untrack(jobID string) *track {
	w.mu.Lock()
	t := w.jobs[jobID]
	delete(w.jobs, jobID)
	if t != nil && t.engineID != jobID {
		delete(w.byEngine, t.engineID)
	}
	if w.executing == jobID {
		w.executing = ""
	}
	w.mu.Unlock()
	w.kick(w.wake)
	return t
}

func (w *worker) fail(jobID string, jerr *workshop.JobError) {
	if _, err := w.q.Fail(context.Background(), jobID, w.id, jerr); err != nil && workshop.ErrorCode(err) != workshop.ECONFLICT {
		w.log.Error("fail job", "job", jobID, "err", err)
	}
}

// executionError is the job error of an engine's execution_error.
func executionError(m *comfy.ExecutionError, raw json.RawMessage) *workshop.JobError {
	return &workshop.JobError{
		Type:    "execution_error",
		Message: fmt.Sprintf("%s in node %s (%s): %s", m.ExceptionType, m.NodeID, m.NodeType, m.ExceptionMessage),
		Details: append(json.RawMessage(nil), raw...),
	}
}

// retryElsewhere ends a dispatch that failed for the instance's reason:
// the job goes to another instance, or fails with jerr when it has failed
// on every one.
func (w *worker) retryElsewhere(jobID string, f workshop.Failure, jerr *workshop.JobError) {
	ctx := context.Background()
	j, err := w.q.RetryElsewhere(ctx, jobID, w.id, f, jerr)
	if err != nil {
		if workshop.ErrorCode(err) != workshop.ECONFLICT {
			w.log.Error("retry job elsewhere", "job", jobID, "err", err)
		}
		return
	}
	if j.Status == workshop.StatusPending {
		w.log.Warn("a job failed for a reason of this instance's own; it goes to another", "job", jobID, "reason", f.Reason, "err", f.Message)
	}
	w.d.failed(ctx, w, j, f)
}

// lookup finds the tracked job an engine prompt id belongs to; mu held.
func (w *worker) lookup(promptID string) (string, *track) {
	if promptID == "" {
		return "", nil
	}
	id := promptID
	if mapped, ok := w.byEngine[promptID]; ok {
		id = mapped
	}
	return id, w.jobs[id]
}

// followLoop handles the instance's socket events.
func (w *worker) followLoop(f *comfy.Follower) {
	defer f.Close()
	for ev := range f.Events() {
		w.onEvent(ev)
	}
}

func (w *worker) onEvent(ev comfy.Event) {
	w.evMu.Lock()
	defer w.evMu.Unlock()
	w.handle(ev)
}

// handle acts on one socket event; evMu held.
func (w *worker) handle(ev comfy.Event) {
	switch ev.Type {
	case comfy.EventStatus, comfy.EventReconnected:
		w.mu.Lock()
		was := w.connected && w.reconciled
		w.connected, w.lostAt = true, time.Time{}
		if !was {
			w.reconciled = false
		}
		if ev.Type == comfy.EventReconnected {
			w.nodesStale = true // it may be another ComfyUI now, restarted with other nodes
		}
		w.mu.Unlock()
		if !was || ev.Type == comfy.EventReconnected {
			// Events sent while we were away are lost: ask the instance.
			w.kick(w.sync)
			w.d.changed()
		}
		return
	case comfy.EventDisconnected:
		w.mu.Lock()
		w.connected, w.reconciled = false, false
		if w.lostAt.IsZero() {
			w.lostAt = time.Now()
		}
		w.interruptLease()
		w.mu.Unlock()
		w.log.Warn("lost the instance's socket; holding its jobs for the grace period", "grace", w.d.cfg.Grace)
		w.d.changed()
		time.AfterFunc(w.d.cfg.Grace, w.d.changed) // its node list no longer holds jobs
		return
	}

	w.mu.Lock()
	promptID := ev.PromptID()
	if promptID == "" && ev.Type == comfy.EventPreviewImage {
		// Type-1 previews carry no prompt id: they belong to the one running.
		if w.executing != "" {
			promptID = w.jobs[w.executing].engineIDOrEmpty()
		} else if n := len(w.early); n > 0 {
			promptID = w.early[n-1].promptID
		}
	}
	jobID, t := w.lookup(promptID)
	if t == nil {
		if w.waiting > 0 && promptID != "" {
			// Perhaps the job being posted, under an id the answer will
			// name: kept until then.
			if len(w.early) == maxEarly {
				w.early, w.earlyLost = w.early[1:], true
			}
			w.early = append(w.early, earlyEvent{promptID: promptID, ev: ev})
		}
		w.mu.Unlock()
		return // not ours: another client of this ComfyUI, or a job we let go
	}
	user := t.job.UserID
	engineID := t.engineID
	// What the job's owner and history see carries the job's id.
	details := func() json.RawMessage {
		return append(json.RawMessage(nil), comfy.RenamePrompt(ev.Data, false, engineID, jobID)...)
	}
	var publish, withPreview bool
	var before, after func()
	switch m := ev.Msg.(type) {
	case *comfy.ExecutionStart:
		t.stage, t.started, w.executing = stageExecuting, time.Now(), jobID
		publish = true
		// Recorded before the owner hears of it: what they do next (an
		// interrupt, a look at their queue) finds the job started.
		before = func() {
			if err := w.q.Started(context.Background(), jobID, w.id); err != nil && workshop.ErrorCode(err) != workshop.ECONFLICT {
				w.log.Warn("mark started", "job", jobID, "err", err)
			}
		}
	case *comfy.Executing:
		if m.Node == nil {
			if w.executing == jobID {
				w.executing = ""
			}
		} else {
			t.node, t.value, t.max = *m.Node, 0, 0
			publish = true
			// Known to the queue before the owner hears of it: a cancel
			// then says where the job stopped.
			node := t.node
			before = func() { w.q.Executing(jobID, w.id, node) }
		}
	case *comfy.Progress:
		t.node, t.value, t.max = m.Node, int(m.Value), int(m.Max)
		publish = true
	case *comfy.PreviewImage:
		t.preview, t.previewMIME = m.Image, mimeOf(m.ImageType)
		withPreview = time.Since(t.previewSent) > time.Second
		publish = withPreview
	case *comfy.PreviewImageWithMetadata:
		t.preview, t.previewMIME = m.Image, m.Metadata.ImageType
		withPreview = time.Since(t.previewSent) > time.Second
		publish = withPreview
	case *comfy.ExecutionSuccess:
		if w.executing == jobID {
			w.executing = ""
		}
		if t.stage != stageCollecting {
			t.stage = stageCollecting
			publish = true
			after = func() { go w.collect(jobID) }
		}
	case *comfy.ExecutionError:
		// The participant hears of it only if the job fails for good (not
		// retried elsewhere): their socket tells a job's end from its record.
		jerr := executionError(m, details())
		f, instanceSide := executionFailure(m)
		after = func() {
			if instanceSide {
				// Still tracked meanwhile, so the worker takes no new job
				// before it knows whether it is set aside.
				w.retryElsewhere(jobID, f, jerr)
				w.untrack(jobID)
				return
			}
			w.untrack(jobID)
			w.fail(jobID, jerr)
		}
	case *comfy.ExecutionInterrupted:
		timedOut := t.timedOut
		after = func() {
			w.untrack(jobID)
			if !timedOut {
				// Not ours to interrupt (we only interrupt cancelled or timed
				// out jobs): someone stopped it on the host.
				w.fail(jobID, &workshop.JobError{Type: "interrupted", Message: "the job was interrupted on the GPU host", Details: details()})
			}
		}
	}
	w.mu.Unlock()

	if before != nil {
		before()
	}
	// Relay the frame to the job's owner, under the job's id: the owner
	// never sees the id an older ComfyUI made up.
	if ev.Frame != nil && w.q.Events().HasSubscribers() {
		frame := comfy.RenamePrompt(ev.Frame, ev.Binary, engineID, jobID)
		w.q.Events().Publish(sched.Event{Type: sched.EventEngine, UserID: user, JobID: jobID, Frame: frame, Binary: ev.Binary})
	}
	if publish {
		w.publishProgress(t, withPreview)
	}
	if after != nil {
		after()
	}
}

func (t *track) engineIDOrEmpty() string {
	if t == nil {
		return ""
	}
	return t.engineID
}

func mimeOf(imageType uint32) string {
	if imageType == comfy.ImagePNG {
		return "image/png"
	}
	return "image/jpeg"
}

// publishProgress sends the admin a job's live state.
func (w *worker) publishProgress(t *track, withPreview bool) {
	if !w.q.Events().HasSubscribers() {
		return
	}
	w.mu.Lock()
	p := &sched.Progress{JobID: t.job.ID, UserID: t.job.UserID, Worker: w.id, Stage: t.stage, Node: t.node, Value: t.value, Max: t.max}
	if withPreview && len(t.preview) > 0 {
		p.Preview = "data:" + t.previewMIME + ";base64," + base64.StdEncoding.EncodeToString(t.preview)
		t.previewSent = time.Now()
	}
	w.mu.Unlock()
	w.q.Events().Publish(sched.Event{Type: sched.EventJobProgress, Progress: p})
}

// tickLoop renews leases while the instance is reachable, enforces the job
// timeout, and lets go of jobs that were cancelled.
func (w *worker) tickLoop(cancels *sched.Subscription) {
	defer func() { cancels.Close() }()
	// Renewing is cheap (memory only); ticking often keeps timeouts prompt.
	every := max(min(w.d.cfg.Grace/4, time.Second), 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case e, ok := <-cancels.C:
			if !ok {
				// Fell behind; the lease renewal below still notices.
				cancels = w.q.Events().Subscribe(256, func(e sched.Event) bool {
					return e.Type == sched.EventJobUpdated && e.Job != nil && e.Job.Worker == w.id && e.Job.Status == workshop.StatusCancelled
				})
				continue
			}
			w.letGo(e.Job.ID)
		case <-t.C:
			w.renew()
		}
	}
}

func (w *worker) renew() {
	w.mu.Lock()
	if !w.connected {
		w.mu.Unlock()
		return // the lease runs down: after the grace the job is requeued
	}
	var ids, expired []string
	now := time.Now()
	for id, t := range w.jobs {
		ids = append(ids, id)
		if t.stage == stageExecuting && !t.timedOut && now.Sub(t.started) > w.d.cfg.JobTimeout {
			t.timedOut = true
			expired = append(expired, id)
		}
	}
	w.mu.Unlock()
	for _, id := range expired {
		w.log.Warn("job ran past the timeout; interrupting it", "job", id, "timeout", w.d.cfg.JobTimeout)
		w.fail(id, &workshop.JobError{Type: "timeout", Message: fmt.Sprintf("the job ran longer than %s", w.d.cfg.JobTimeout)})
		w.letGo(id)
	}
	for _, id := range ids {
		if err := w.q.Extend(w.ctx, id, w.id, w.d.cfg.Grace); err != nil {
			w.letGo(id) // cancelled or given to another worker
		}
	}
}

// letGo stops tracking a job that is no longer this worker's and takes it
// off the instance: out of its queue if waiting, interrupted if running.
func (w *worker) letGo(jobID string) {
	t := w.untrack(jobID)
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, 15*time.Second)
	defer cancel()
	var err error
	switch t.stage {
	case stageQueued, stageSubmitting:
		err = w.client.DeleteFromQueue(ctx, t.engineID)
	case stageExecuting:
		err = w.client.Interrupt(ctx, t.engineID)
	case stageUnknown:
		if err = w.client.DeleteFromQueue(ctx, t.engineID); err == nil {
			err = w.client.Interrupt(ctx, t.engineID)
		}
	}
	if err != nil {
		w.log.Warn("could not take a job off the instance", "job", jobID, "err", err)
	}
}

func (w *worker) status(done int) WorkerStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := WorkerStatus{
		ID: w.id, Agent: w.agent, Instance: w.instance, URL: w.report.URL,
		Connected: w.connected, Healthy: w.report.Healthy, Draining: w.draining,
		Current: w.executing, Queued: []string{}, JobsDone: done, Error: w.report.Error,
		Stats: w.report.SystemStats, Models: w.models,
	}
	for id, t := range w.jobs {
		if t.stage == stageQueued || t.stage == stageSubmitting {
			st.Queued = append(st.Queued, id)
		}
	}
	switch {
	case !w.connected && w.lostAt.IsZero() && w.report.Healthy:
		st.State = StateConnecting // the agent reaches it; its socket is not up yet
	case !w.connected:
		st.State = StateUnreachable
	case w.executing != "":
		st.State = StateBusy
	case w.aside:
		st.State = StateSetAside
	case w.draining:
		st.State = StateDraining
	default:
		st.State = StateIdle
	}
	st.GPU = gpuOf(w.report.SystemStats, w.gpus, w.instance)
	return st
}

// gpuOf reads the GPU from ComfyUI's system_stats, with utilisation from
// nvidia-smi where the agent has it (matched by index: instance n on GPU n
// is the usual layout, one GPU is the common case).
func gpuOf(stats json.RawMessage, gpus []tunnel.GPUStats, instance string) *GPU {
	var ss comfy.SystemStats
	g := &GPU{UtilizationPct: -1}
	if len(stats) > 0 && json.Unmarshal(stats, &ss) == nil && len(ss.Devices) > 0 {
		d := ss.Devices[0]
		g.Name = d.Name
		g.MemoryTotalMiB = float64(d.VRAMTotal) / (1 << 20)
		g.MemoryUsedMiB = float64(d.VRAMTotal-d.VRAMFree) / (1 << 20)
	}
	var pick *tunnel.GPUStats
	for i := range gpus {
		if fmt.Sprint(gpus[i].Index) == instance || len(gpus) == 1 {
			pick = &gpus[i]
		}
	}
	if pick != nil {
		g.UtilizationPct = pick.UtilizationPct
		if pick.MemoryTotalMiB > 0 {
			g.MemoryTotalMiB, g.MemoryUsedMiB = pick.MemoryTotalMiB, pick.MemoryUsedMiB
		}
		if g.Name == "" {
			g.Name = pick.Name
		}
	}
	if g.Name == "" && g.MemoryTotalMiB == 0 && pick == nil {
		return nil
	}
	return g
}
