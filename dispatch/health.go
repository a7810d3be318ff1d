package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// Reasons a dispatch failed on the instance's side (workshop.Failure.Reason).
const (
	reasonOOM          = "out_of_memory"
	reasonGPU          = "gpu_error"
	reasonMissingNode  = "missing_node"
	reasonMissingModel = "missing_model"
)

// executionFault tells an engine's execution_error that is the instance's
// fault (its GPU ran out of memory or failed: another instance may well
// run the job) from one that is the job's (bad input, a node's own error).
// ComfyUI names the exception by its full type, torch.OutOfMemoryError or
// torch.cuda.OutOfMemoryError for CUDA's, and older torch raised a
// RuntimeError saying "CUDA out of memory".
func executionFault(m *comfy.ExecutionError) (reason string, ok bool) {
	typ, msg := m.ExceptionType, strings.ToLower(m.ExceptionMessage)
	switch {
	case strings.HasSuffix(typ, "OutOfMemoryError"), strings.Contains(msg, "out of memory"):
		return reasonOOM, true
	case typ == "torch.AcceleratorError", strings.Contains(msg, "cuda error"), strings.Contains(msg, "cudnn_status"),
		strings.Contains(msg, "cublas_status"), strings.Contains(msg, "no cuda gpus are available"):
		return reasonGPU, true
	}
	return "", false
}

// executionFailure is the Failure an execution_error that is the
// instance's fault (executionFault) records, live or found in history.
func executionFailure(m *comfy.ExecutionError) (workshop.Failure, bool) {
	reason, ok := executionFault(m)
	return workshop.Failure{Reason: reason, Message: shorten(m.ExceptionType+": "+m.ExceptionMessage, 300)}, ok
}

// promptFault tells a /prompt rejection caused by what this instance lacks
// (a node class, a model file) from one caused by the graph. The server
// validated the graph against another instance's object_info, so the
// missing piece may be there.
func promptFault(pe *comfy.PromptError) (reason, msg string, ok bool) {
	info := pe.Info
	if info.Type == comfy.ErrMissingNodeType || (info.Type == comfy.ErrInvalidPrompt && strings.Contains(info.Message, "does not exist")) {
		return reasonMissingNode, info.Message, true
	}
	if info.Type != comfy.ErrOutputsFailedValidation || len(pe.NodeErrors) == 0 {
		return "", "", false
	}
	var first string
	for _, id := range sortedKeys(pe.NodeErrors) {
		for _, e := range pe.NodeErrors[id].Errors {
			var extra struct {
				InputName string `json:"input_name"`
			}
			json.Unmarshal(e.ExtraInfo, &extra)
			// Model loaders' inputs are named *_name (ckpt_name, lora_name...);
			// sampler_name is a choice of the graph.
			if e.Type != comfy.ErrValueNotInList || !strings.HasSuffix(extra.InputName, "_name") || extra.InputName == "sampler_name" {
				return "", "", false
			}
			if first == "" {
				first = fmt.Sprintf("node %s (%s): %s", id, pe.NodeErrors[id].ClassType, e.Details)
			}
		}
	}
	return reasonMissingModel, shorten(first, 240), true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	comfy.SortNodeIDs(keys)
	return keys
}

// shorten cuts s to its first line and at most n bytes, at the end of a
// sentence where it can, for reasons shown in one line.
func shorten(s string, n int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) <= n {
		return s
	}
	if i := strings.LastIndex(s[:n], ". "); i > n/3 {
		return s[:i+1]
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// strikesAgainst says whether a failure counts towards setting the
// instance aside: a GPU that fails or crashes does; a node or model it
// lacks is how it was set up, not sickness (preflight reports it).
func strikesAgainst(reason string) bool {
	return reason != reasonMissingNode && reason != reasonMissingModel
}

// strike is one instance-side failure of a job on a worker; confirmed
// once the job completed on another instance, which shows it was not the
// job's fault.
type strike struct {
	job       string
	f         workshop.Failure
	confirmed bool
}

// SetAside is why an instance was taken out of service automatically.
type SetAside struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Failures are the failures in a row that led to it, oldest first.
	Failures []workshop.Failure `json:"failures,omitempty"`
}

// settingSetAside is the store setting with the set-aside instances.
const settingSetAside = "set_aside"

// failed records that a job failed on w for a reason of the instance's
// own. A job that failed everywhere it was tried was at fault itself (too
// big a batch): its strikes are withdrawn. An instance with SetAsideAfter
// strikes in a row (no job completed there between), one of them
// confirmed, is set aside.
func (d *Dispatcher) failed(ctx context.Context, w *worker, j *workshop.Job, f workshop.Failure) {
	if j.Status == workshop.StatusFailed {
		d.forgive(j)
		return
	}
	if !strikesAgainst(f.Reason) {
		return
	}
	f.Worker = w.id
	if f.At.IsZero() {
		f.At = time.Now().UTC()
	}
	d.mu.Lock()
	d.strikes[w.id] = append(d.strikes[w.id], strike{job: j.ID, f: f})
	d.mu.Unlock()
	d.maybeSetAside(ctx, w.id)
}

// forgive withdraws the strikes of a job that failed everywhere.
func (d *Dispatcher) forgive(j *workshop.Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range j.Failures {
		d.strikes[f.Worker] = slices.DeleteFunc(d.strikes[f.Worker], func(s strike) bool { return s.job == j.ID })
	}
}

// completed records that worker completed job: its own strikes end, and
// those the job left on other instances are confirmed.
func (d *Dispatcher) completed(ctx context.Context, worker string, j *workshop.Job) {
	d.mu.Lock()
	d.done[worker]++
	delete(d.strikes, worker)
	var others []string
	for _, f := range j.Failures {
		for i, s := range d.strikes[f.Worker] {
			if s.job == j.ID && !s.confirmed {
				d.strikes[f.Worker][i].confirmed = true
				others = append(others, f.Worker)
			}
		}
	}
	d.mu.Unlock()
	for _, id := range others {
		d.maybeSetAside(ctx, id)
	}
}

// maybeSetAside sets an instance aside once its strikes call for it.
func (d *Dispatcher) maybeSetAside(ctx context.Context, id string) {
	d.mu.Lock()
	s := slices.Clone(d.strikes[id])
	w := d.workers[id]
	d.mu.Unlock()
	confirmed := slices.ContainsFunc(s, func(s strike) bool { return s.confirmed })
	if d.cfg.SetAsideAfter <= 0 || len(s) < d.cfg.SetAsideAfter || !confirmed {
		return
	}
	fs := make([]workshop.Failure, len(s))
	for i, st := range s {
		fs[i] = st.f
	}
	last := s[len(s)-1].f
	aside := SetAside{
		Reason:   fmt.Sprintf("%d jobs in a row failed here and ran elsewhere; the last: %s", len(s), shorten(last.Message, 100)),
		At:       time.Now().UTC(),
		Failures: fs,
	}
	changed, err := d.markSetAside(ctx, id, &aside)
	if err != nil {
		d.log.Error("could not store that an instance is set aside; it is set aside until the server restarts", "worker", id, "err", err)
	}
	if !changed {
		return // already set aside
	}
	d.log.Warn("GPU instance set aside: it keeps failing jobs that run elsewhere; put it back from the admin page once it is fixed", "worker", id, "reason", aside.Reason)
	agent, _, _ := strings.Cut(id, "/")
	if w != nil {
		agent = w.agent
	}
	d.publishAgent(agent, "set aside", id+": "+aside.Reason)
}

// markSetAside stores (aside non-nil) or clears an instance's set-aside,
// then applies it to its worker; changed is false when it was already so.
func (d *Dispatcher) markSetAside(ctx context.Context, id string, aside *SetAside) (changed bool, err error) {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	d.mu.Lock()
	_, was := d.setAside[id]
	all := make(map[string]SetAside, len(d.setAside)+1)
	for k, v := range d.setAside {
		all[k] = v
	}
	d.mu.Unlock()
	if was == (aside != nil) {
		return false, nil
	}
	if aside != nil {
		all[id] = *aside
	} else {
		delete(all, id)
	}
	if d.cfg.DB != nil {
		err = d.cfg.DB.Write(ctx, func(tx *store.Tx) error { return tx.PutSetting(settingSetAside, all) })
	}
	// Applied even when storing failed: a sick instance must stop taking
	// jobs now.
	d.mu.Lock()
	if aside != nil {
		d.setAside[id] = *aside
	} else {
		delete(d.setAside, id)
		delete(d.strikes, id)
	}
	w := d.workers[id]
	d.mu.Unlock()
	if w != nil {
		w.setHeld(func() { w.aside = aside != nil })
	}
	d.changed()
	return true, err
}

// PutBack returns an instance that was set aside to service, with a clean
// slate; it works while the instance's agent is away too.
func (d *Dispatcher) PutBack(ctx context.Context, id string) (WorkerStatus, error) {
	d.mu.Lock()
	_, aside := d.setAside[id]
	d.mu.Unlock()
	if !aside {
		if _, known := d.status(id); !known {
			return WorkerStatus{}, workshop.Errorf(workshop.ENOTFOUND, "no GPU instance %q", id)
		}
		return WorkerStatus{}, workshop.Errorf(workshop.ECONFLICT, "GPU instance %s is not set aside", id)
	}
	if _, err := d.markSetAside(ctx, id, nil); err != nil {
		return WorkerStatus{}, err
	}
	d.log.Info("GPU instance put back into service", "worker", id)
	st, _ := d.status(id)
	return st, nil
}

// Forget drops an instance whose agent is gone from the list, with its
// drain and set-aside, and gives the jobs it still holds back to the queue
// now instead of at the end of their grace. A connected one is refused.
func (d *Dispatcher) Forget(ctx context.Context, id string) error {
	st, known := d.status(id)
	switch {
	case !known:
		return workshop.Errorf(workshop.ENOTFOUND, "no GPU instance %q", id)
	case st.State != StateDisconnected:
		return workshop.Errorf(workshop.ECONFLICT, "GPU instance %s is connected: drain it instead, or stop its agent first", id)
	}
	for _, jobID := range st.HeldJobs {
		j, err := d.cfg.Queue.Requeue(ctx, jobID, id, "its GPU instance was removed by the instructor")
		if err == nil && j.Status == workshop.StatusFailed {
			d.forgive(j)
		}
	}
	d.mu.Lock()
	delete(d.gone, id)
	delete(d.strikes, id)
	d.mu.Unlock()
	if _, err := d.Drain(ctx, id, false); err != nil && workshop.ErrorCode(err) != workshop.ENOTFOUND {
		return err
	}
	if _, err := d.markSetAside(ctx, id, nil); err != nil {
		return err
	}
	d.log.Info("GPU instance removed from the list", "worker", id, "jobs_requeued", len(st.HeldJobs))
	return nil
}

// publishAgent writes an agent's news to the activity log.
func (d *Dispatcher) publishAgent(agent, action, detail string) {
	data, _ := json.Marshal(map[string]string{"agent": agent, "action": action, "detail": detail})
	d.cfg.Queue.Events().Publish(sched.Event{Type: sched.EventAgent, Data: data})
}
