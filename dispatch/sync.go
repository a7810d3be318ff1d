package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// syncLoop reconciles with the instance whenever its socket (re)connects:
// jobs that finished while we were away are collected, not re-run; running
// ones are followed again; lost ones go back to the queue.
func (w *worker) syncLoop() {
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.sync:
		}
		for attempt := 0; ; attempt++ {
			err := w.reconcile()
			if err == nil {
				// Known before it takes a job, so it gets only jobs it can run.
				w.syncNodes()
				w.mu.Lock()
				w.reconciled, w.synced = true, true
				w.mu.Unlock()
				w.kick(w.wake)
				w.d.changed()
				break
			}
			if w.ctx.Err() != nil {
				return
			}
			w.log.Warn("could not reconcile with the instance; retrying", "err", err)
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(backoff(attempt)):
			}
		}
	}
}

func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 6)
	return min(d, 2*time.Second)
}

func (w *worker) reconcile() error {
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	// No new leases while the instance's state is being read; its events
	// for jobs not tracked yet are kept meanwhile, for the jobs found.
	w.mu.Lock()
	w.reconciled = false
	w.waiting += 1 - w.waitsHeld // the waits of posts whose answer was lost become this one
	w.waitsHeld = 0
	w.mu.Unlock()
	var found []adoption
	learnt := false
	defer func() {
		if !learnt {
			w.answered(nil, func() {})
		}
	}()
	// The leases first, the instance's queue after: a job posted before its
	// lease was listed is then surely in the queue (or its history).
	leased := w.q.LeasedBy(w.id)
	queue, err := w.client.Queue(ctx)
	if err != nil {
		return fmt.Errorf("read queue: %w", err)
	}
	onInstance := map[string]string{} // engine id -> stage
	tagged := map[string]string{}     // job id -> engine id, of the prompts tagged with one
	for stage, items := range map[string][]comfy.QueueItem{stageExecuting: queue.Running, stageQueued: queue.Pending} {
		for _, it := range items {
			onInstance[it.PromptID] = stage
			if job := taggedJob(it.ExtraData); job != "" {
				tagged[job] = it.PromptID
			}
		}
	}
	var recent map[string]*comfy.HistoryEntry // tagged history, read once if needed

	mine := map[string]bool{}       // engine ids of the jobs leased here
	lostAnswer := map[string]bool{} // posted, answer lost, and not on the instance
	var collect, requeue, failedAway []string
	failedEntry := map[string]*comfy.HistoryEntry{}
	for _, job := range leased {
		engineID := job.EngineID
		if engineID == "" {
			engineID = job.ID
		}
		w.mu.Lock()
		t := w.jobs[job.ID]
		if t != nil && t.engineID != job.ID {
			engineID = t.engineID // known, not stored yet
		}
		busy := t != nil && (t.stage == stageCollecting || t.stage == stageSubmitting)
		answerLost := t != nil && t.stage == stageUnknown
		// After the first sync every job this worker leases is tracked, but
		// for the moment between its lease and its hand-over to submit.
		handover := t == nil && w.synced
		w.mu.Unlock()
		if busy || handover {
			mine[engineID] = true
			continue
		}
		entry, ok, err := w.client.PromptHistory(ctx, engineID)
		if err != nil {
			return fmt.Errorf("read history of %s: %w", job.ID, err)
		}
		if !ok && onInstance[engineID] == "" {
			// Not under the id we know it by: the instance may have made
			// its own and the answer naming it was lost. Its tag tells.
			if id, in := tagged[job.ID]; in {
				engineID = id
			} else {
				if recent == nil {
					if recent, err = w.taggedHistory(ctx); err != nil {
						return fmt.Errorf("read history: %w", err)
					}
				}
				if e := recent[job.ID]; e != nil {
					engineID, entry, ok = e.PromptID, e, true
				}
			}
			if engineID != job.ID && engineID != job.EngineID {
				w.log.Info("found a job on the instance by its tag", "job", job.ID, "engine_id", engineID)
				if err := w.q.SetEngineID(ctx, job.ID, w.id, engineID); err != nil && workshop.ErrorCode(err) != workshop.ECONFLICT {
					w.log.Warn("record engine id", "job", job.ID, "err", err)
				}
			}
		}
		mine[engineID] = true
		summary := *job
		summary.Workflow = nil
		switch {
		case ok && entry.Status != nil && entry.Status.StatusStr == "success":
			w.ensureTracked(&summary, engineID, stageCollecting)
			collect = append(collect, job.ID)
		case ok && entry.Status != nil && entry.Status.StatusStr == "error":
			w.untrack(job.ID)
			failedAway = append(failedAway, job.ID)
			failedEntry[job.ID] = entry
		case onInstance[engineID] != "":
			found = append(found, adoption{job: &summary, engineID: engineID, stage: onInstance[engineID]})
		default:
			w.untrack(job.ID)
			requeue = append(requeue, job.ID)
			lostAnswer[job.ID] = answerLost
		}
	}
	// Jobs still queued or running there are followed again, with the
	// events that came for them while the instance was being read.
	known := make([]string, len(found))
	for i, a := range found {
		known[i] = a.engineID
	}
	learnt = true
	w.answered(known, func() {
		for _, a := range found {
			t := w.ensureTracked(a.job, a.engineID, a.stage)
			if a.stage == stageExecuting {
				w.mu.Lock()
				w.executing = a.job.ID
				if t.started.IsZero() {
					t.started = time.Now()
				}
				w.mu.Unlock()
			}
		}
	})
	for _, id := range failedAway {
		w.failedWhileAway(id, failedEntry[id])
	}
	struck := false
	for _, id := range requeue {
		reason := "the GPU instance lost the job (it restarted or was cleared)"
		if lostAnswer[id] {
			reason = "the GPU instance did not take the job"
		}
		w.log.Warn("the instance does not have a job it should hold; requeueing it", "job", id, "reason", reason)
		j, err := w.q.Requeue(context.Background(), id, w.id, reason)
		if err != nil {
			w.log.Warn("requeue", "job", id, "err", err)
			continue
		}
		// A loss of the instance (a crash, a restart) is one strike against
		// it, however many jobs it held; a job out of attempts is forgiven.
		if lostAnswer[id] || (struck && j.Status != workshop.StatusFailed) {
			continue
		}
		w.d.failed(ctx, w, j, workshop.Failure{Reason: sched.FailureLost, Message: reason})
		struck = struck || j.Status != workshop.StatusFailed
	}
	// Forget jobs that were taken from us while we were away.
	w.mu.Lock()
	var stale []string
	for id, t := range w.jobs {
		if !mine[t.engineID] && t.stage != stageSubmitting {
			stale = append(stale, id)
		}
	}
	w.mu.Unlock()
	for _, id := range stale {
		w.letGo(id)
	}
	// Our prompts still on the instance that are no longer ours (cancelled,
	// or requeued elsewhere after the grace) must not run twice.
	ours := map[string]string{} // engine id -> job id
	for job, engineID := range tagged {
		ours[engineID] = job
	}
	for engineID, stage := range onInstance {
		job := ours[engineID]
		if job == "" {
			job = engineID
		}
		if mine[engineID] {
			continue
		}
		if j, err := w.q.Get(job); err != nil || j.Status == workshop.StatusRunning && j.Worker == w.id {
			// Not a workshop job (another client of this ComfyUI), or one
			// leased here since the leases were read, or being posted.
			continue
		}
		w.log.Info("removing a job from the instance that is no longer its own", "job", job, "stage", stage)
		if stage == stageQueued {
			err = w.client.DeleteFromQueue(ctx, engineID)
		} else {
			err = w.client.Interrupt(ctx, engineID)
		}
		if err != nil {
			return err
		}
	}
	for _, id := range collect {
		go w.collect(id)
	}
	return nil
}

// adoption is a leased job found queued or running on the instance.
type adoption struct {
	job      *workshop.Job
	engineID string
	stage    string
}

// taggedHistory is the instance's newest history entries that name a
// workshop job, by job id: where a prompt whose id the worker never
// learned is found once it ran. Those are among the newest: the worker
// posts nothing while it does not know what the instance has, and held at
// most its slots before.
func (w *worker) taggedHistory(ctx context.Context) (map[string]*comfy.HistoryEntry, error) {
	entries, err := w.client.History(ctx, comfy.HistoryQuery{MaxItems: max(64, 4*(1+w.d.cfg.Prefetch))})
	if err != nil {
		return nil, err
	}
	out := map[string]*comfy.HistoryEntry{}
	for i := range entries {
		if job := taggedJob(entries[i].Prompt.ExtraData); job != "" {
			out[job] = &entries[i]
		}
	}
	return out, nil
}

// ensureTracked tracks a job found on the instance under engineID, keeping
// what is known of it.
func (w *worker) ensureTracked(job *workshop.Job, engineID, stage string) *track {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.jobs[job.ID]
	if t == nil {
		t = &track{job: job}
		w.jobs[job.ID] = t
	}
	if t.engineID != engineID && t.engineID != job.ID {
		delete(w.byEngine, t.engineID)
	}
	t.engineID, t.stage = engineID, stage
	if engineID != job.ID {
		w.byEngine[engineID] = job.ID
	}
	return t
}

func historyMessages(e *comfy.HistoryEntry) json.RawMessage {
	if e.Status == nil {
		return nil
	}
	b, _ := json.Marshal(e.Status.Messages)
	return b
}

// failedWhileAway ends a job that failed on the instance while its socket
// was down: ComfyUI's history keeps the execution_error it sent, which
// tells, as a live one does, whether to try another instance.
func (w *worker) failedWhileAway(jobID string, e *comfy.HistoryEntry) {
	var m comfy.ExecutionError
	for _, msg := range e.Status.Messages {
		if msg.Event == comfy.EventExecutionError && json.Unmarshal(msg.Data, &m) == nil {
			// e.PromptID is the instance's id of it; the record carries the job's.
			jerr := executionError(&m, comfy.RenamePrompt(msg.Data, false, e.PromptID, jobID))
			if f, ok := executionFailure(&m); ok {
				w.retryElsewhere(jobID, f, jerr)
			} else {
				w.fail(jobID, jerr)
			}
			return
		}
	}
	w.fail(jobID, &workshop.JobError{Type: "execution_error", Message: "the job failed on the GPU instance",
		Details: comfy.RenamePrompt(historyMessages(e), false, e.PromptID, jobID)})
}

// collectAttempts bounds the tries to bring a job's outputs home while its
// instance stays connected: one that keeps failing then is not a blip.
const collectAttempts = 8

// collect waits for the job's history entry, streams every output file into
// the output store and completes the job. If the instance goes away midway
// it gives up; the next reconcile starts it again (files are written whole
// or not at all, and only the first completion counts). A failure that
// retrying cannot mend (outputs over the caps, a file the instance will not
// give), or one that lasts collectAttempts tries, fails the job with the
// reason: nothing is retried forever.
func (w *worker) collect(jobID string) {
	w.mu.Lock()
	t := w.jobs[jobID]
	w.mu.Unlock()
	if t == nil {
		return
	}
	for attempt := 1; w.ctx.Err() == nil; attempt++ {
		err := w.collectOnce(t)
		if err == nil {
			return
		}
		var final *finalError
		if errors.As(err, &final) || attempt >= collectAttempts {
			if w.ctx.Err() != nil {
				return // the instance went away: the next reconcile collects
			}
			w.log.Warn("collecting outputs failed; failing the job", "job", jobID, "attempts", attempt, "err", err)
			w.untrack(jobID)
			w.d.cfg.Files.RemoveGroup(store.Outputs, t.job.UserID, jobID)
			w.fail(jobID, &workshop.JobError{Type: "output_error", Message: "the job's outputs could not be stored: " + errorText(err)})
			return
		}
		w.log.Warn("collecting outputs failed; retrying", "job", jobID, "attempt", attempt, "err", err)
		select {
		case <-w.ctx.Done():
		case <-time.After(backoff(attempt)):
		}
	}
}

// finalError is a collection failure that retrying cannot mend.
type finalError struct{ msg string }

func (e *finalError) Error() string { return e.msg }

func finalf(format string, args ...any) error { return &finalError{fmt.Sprintf(format, args...)} }

// errorText is err for a job's reason: the workshop's own message when it
// has one.
func errorText(err error) string {
	if m := workshop.ErrorMessage(err); m != "" && workshop.ErrorCode(err) != workshop.EINTERNAL {
		return m
	}
	return err.Error()
}

// errNotYet means ComfyUI has not written the history entry yet: it sends
// execution_success a moment before it stores the history.
var errNotYet = errors.New("history not written yet")

func (w *worker) collectOnce(t *track) error {
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Minute)
	defer cancel()
	job := t.job
	var entry *comfy.HistoryEntry
	for attempt := 0; ; attempt++ {
		e, ok, err := w.client.PromptHistory(ctx, t.engineID)
		if err != nil {
			return err
		}
		if ok && e.Status != nil && e.Status.Completed {
			entry = e
			break
		}
		if attempt > 40 {
			return errNotYet
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff(attempt) / 5):
		}
	}
	files := entry.Files()
	if max := w.d.cfg.MaxOutputs; len(files) > max {
		return finalf("the job made %d output files; the workshop keeps at most %d per job", len(files), max)
	}
	outputs := make([]workshop.Output, 0, len(files))
	used := map[string]bool{}
	budget := w.d.cfg.MaxOutputBytes
	for _, f := range files {
		name := outputName(f, used)
		dl, err := w.client.View(ctx, f.FileRef)
		if err != nil {
			var he *comfy.HTTPError
			if errors.As(err, &he) && he.StatusCode >= 400 && he.StatusCode < 500 {
				return finalf("the GPU host would not give output %q (%d)", f.Filename, he.StatusCode)
			}
			return fmt.Errorf("download %s: %w", f.Filename, err)
		}
		saved, err := w.d.cfg.Files.Save(store.Outputs, job.UserID, job.ID, name, dl, budget)
		dl.Close()
		if workshop.ErrorCode(err) == workshop.ETOOLARGE {
			return finalf("the job's outputs are over %d MB, the most the workshop keeps per job", w.d.cfg.MaxOutputBytes>>20)
		}
		if err != nil {
			return fmt.Errorf("store %s: %w", f.Filename, err)
		}
		budget -= saved.Size
		if budget <= 0 && len(outputs)+1 < len(files) {
			return finalf("the job's outputs are over %d MB, the most the workshop keeps per job", w.d.cfg.MaxOutputBytes>>20)
		}
		outputs = append(outputs, workshop.Output{
			Node: f.NodeID, Name: name, Filename: f.Filename, Subfolder: f.Subfolder, Type: f.Type,
			Size: saved.Size, SHA256: saved.SHA256, URL: w.d.cfg.OutputURL(job.ID, name),
		})
	}
	res := &workshop.Result{Outputs: outputs}
	res.Raw, res.Meta, res.Messages = historyParts(entry, t.engineID, job.ID)
	done, err := w.q.Complete(context.Background(), job.ID, w.id, res)
	w.untrack(job.ID)
	if err != nil {
		if workshop.ErrorCode(err) == workshop.ECONFLICT {
			// Cancelled or given to another worker meanwhile: drop what we
			// wrote, unless an earlier collection already completed it.
			if j, gerr := w.q.Get(job.ID); gerr == nil && j.Status != workshop.StatusCompleted {
				w.d.cfg.Files.RemoveGroup(store.Outputs, job.UserID, job.ID)
			}
			return nil
		}
		return err
	}
	w.d.completed(context.Background(), w.id, done)
	w.log.Info("job completed", "job", job.ID, "user", job.UserID, "outputs", len(outputs))
	return nil
}

// historyParts takes the outputs, meta and status messages of an engine's
// history entry in the engine's own key order (nodes in the order they ran),
// with the engine's prompt id renamed to the job's.
func historyParts(e *comfy.HistoryEntry, engineID, jobID string) (outputs, meta, messages json.RawMessage) {
	entry, err := jsonobj.Parse(e.Raw)
	if err != nil {
		b, _ := json.Marshal(e.Outputs)
		return b, nil, nil
	}
	outputs, _ = entry.Get("outputs")
	meta, _ = entry.Get("meta")
	if status, ok := entry.Get("status"); ok {
		if st, err := jsonobj.Parse(status); err == nil {
			messages, _ = st.Get("messages")
		}
	}
	messages = comfy.RenamePrompt(messages, false, engineID, jobID)
	return outputs, meta, messages
}

// outputName gives a stored output a unique, safe name: StoredName,
// numbered on a clash.
func outputName(f comfy.OutputFile, used map[string]bool) string {
	name := workshop.StoredName(f.Filename, f.Subfolder, f.Type)
	base, n := name, 1
	for used[name] {
		ext := path.Ext(base)
		name = fmt.Sprintf("%s_%d%s", strings.TrimSuffix(base, ext), n, ext)
		n++
	}
	used[name] = true
	return name
}
