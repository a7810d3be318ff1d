// Package dispatch keeps every connected ComfyUI instance busy with the
// queue's jobs. It is the glue between the queue (sched), the GPU agents'
// tunnels (tunnel) and ComfyUI's protocol (comfy): one worker per instance
// leases jobs, queues them on the instance through the tunnel, follows the
// instance's socket, and brings the outputs home.
package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/tunnel"
)

// Tunnels is what the dispatcher needs of the tunnel server.
type Tunnels interface {
	Subscribe() (<-chan tunnel.Event, func())
	Dialer(agent, instance string) func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Config tunes the dispatcher.
type Config struct {
	Queue   *sched.Queue
	Files   *store.Files
	Tunnels Tunnels
	Log     *slog.Logger
	// DB remembers drained instances across server restarts; nil keeps
	// them in memory only.
	DB *store.DB

	// Prefetch is how many jobs wait in an instance's own queue behind the
	// running one, so the GPU never waits for the next job. 0 turns it off.
	Prefetch int
	// Grace is the lease a worker keeps renewing; a job whose worker is gone
	// (tunnel down, instance dead) goes back to the queue after it.
	Grace time.Duration
	// JobTimeout interrupts and fails a job that runs longer.
	JobTimeout time.Duration
	// OutputURL builds the download URL of a stored output.
	OutputURL func(jobID, name string) string
}

// Dispatcher runs the workers.
type Dispatcher struct {
	cfg Config
	log *slog.Logger

	drainMu  sync.Mutex // one Drain at a time, so stored and live sets agree
	mu       sync.Mutex
	workers  map[string]*worker // by worker id: agent/instance
	drained  map[string]bool    // survives reconnects, and restarts with DB
	sessions map[string]uint64  // agent -> live session id
	done     map[string]int     // jobs completed per worker id
}

// New returns a dispatcher; call Run.
func New(cfg Config) *Dispatcher {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Prefetch < 0 {
		cfg.Prefetch = 0
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 60 * time.Second
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = time.Hour
	}
	if cfg.OutputURL == nil {
		cfg.OutputURL = func(jobID, name string) string { return "/api/jobs/" + jobID + "/outputs/" + name }
	}
	d := &Dispatcher{
		cfg: cfg, log: cfg.Log,
		workers: map[string]*worker{}, drained: map[string]bool{},
		sessions: map[string]uint64{}, done: map[string]int{},
	}
	if cfg.DB != nil {
		var ids []string
		err := cfg.DB.View(func(tx *store.Tx) error {
			_, err := tx.Setting(settingDrained, &ids)
			return err
		})
		if err != nil {
			d.log.Error("reading the drained instances failed; none are drained", "err", err)
		}
		for _, id := range ids {
			d.drained[id] = true
		}
	}
	return d
}

// settingDrained is the store setting that lists drained worker ids.
const settingDrained = "drained"

// WorkerID names an instance of an agent.
func WorkerID(agent, instance string) string { return agent + "/" + instance }

// Run follows agents until ctx ends, starting a worker for each instance of
// each connected agent and stopping them when the agent goes.
func (d *Dispatcher) Run(ctx context.Context) {
	events, unsubscribe := d.cfg.Tunnels.Subscribe()
	defer unsubscribe()
	defer d.stopAll()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			d.handle(ctx, ev)
		}
	}
}

func (d *Dispatcher) handle(ctx context.Context, ev tunnel.Event) {
	a := ev.Agent
	switch ev.Type {
	case tunnel.AgentConnected:
		d.log.Info("GPU agent connected", "agent", a.Name, "instances", len(a.Report.Instances), "remote", a.RemoteAddr)
		d.mu.Lock()
		d.sessions[a.Name] = a.SessionID
		d.mu.Unlock()
		for _, in := range a.Report.Instances {
			d.startWorker(ctx, a, in)
		}
	case tunnel.AgentReported:
		d.mu.Lock()
		for _, w := range d.workers {
			if w.agent == a.Name && w.session == a.SessionID {
				if st, ok := a.Report.Instance(w.instance); ok {
					w.setReport(st, a.Report)
				}
			}
		}
		d.mu.Unlock()
		// An instance that appeared since the hello gets a worker too.
		for _, in := range a.Report.Instances {
			d.mu.Lock()
			_, have := d.workers[WorkerID(a.Name, in.Name)]
			d.mu.Unlock()
			if !have {
				d.startWorker(ctx, a, in)
			}
		}
	case tunnel.AgentDisconnected:
		d.log.Warn("GPU agent disconnected; its jobs keep their leases for the grace period", "agent", a.Name, "err", ev.Err, "grace", d.cfg.Grace)
		d.mu.Lock()
		var gone []*worker
		for id, w := range d.workers {
			if w.agent == a.Name && w.session == a.SessionID {
				gone = append(gone, w)
				delete(d.workers, id)
			}
		}
		if d.sessions[a.Name] == a.SessionID {
			delete(d.sessions, a.Name)
		}
		d.mu.Unlock()
		for _, w := range gone {
			w.stop()
		}
	}
	d.changed()
	if ev.Type != tunnel.AgentReported {
		action, detail := "connected", fmt.Sprintf("%d instance(s) from %s", len(a.Report.Instances), a.RemoteAddr)
		if ev.Type == tunnel.AgentDisconnected {
			action, detail = "disconnected", fmt.Sprint(ev.Err)
		}
		data, _ := json.Marshal(map[string]string{"agent": a.Name, "action": action, "detail": detail})
		d.cfg.Queue.Events().Publish(sched.Event{Type: sched.EventAgent, Data: data})
	}
}

func (d *Dispatcher) startWorker(ctx context.Context, a tunnel.AgentInfo, in tunnel.InstanceStatus) {
	id := WorkerID(a.Name, in.Name)
	d.mu.Lock()
	old := d.workers[id]
	delete(d.workers, id)
	d.mu.Unlock()
	if old != nil {
		old.stop() // a replaced session: the new worker takes over its jobs
	}
	w := newWorker(d, a, in)
	d.mu.Lock()
	w.draining = d.drained[id]
	d.workers[id] = w
	d.mu.Unlock()
	w.start(ctx)
}

func (d *Dispatcher) stopAll() {
	d.mu.Lock()
	ws := make([]*worker, 0, len(d.workers))
	for _, w := range d.workers {
		ws = append(ws, w)
	}
	d.workers = map[string]*worker{}
	d.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
}

// changed tells the queue how many jobs can run at once (for estimates)
// and everyone watching that the instances changed.
func (d *Dispatcher) changed() {
	d.updateSlots()
	d.cfg.Queue.Events().Publish(sched.Event{Type: sched.EventWorkers})
}

// updateSlots tells the queue how many jobs can run at once, for estimates.
func (d *Dispatcher) updateSlots() {
	d.mu.Lock()
	n := 0
	for _, w := range d.workers {
		if w.usable() {
			n++
		}
	}
	d.mu.Unlock()
	d.cfg.Queue.SetSlots(n)
}

func (d *Dispatcher) jobDone(id string) {
	d.mu.Lock()
	d.done[id]++
	d.mu.Unlock()
}

// Drain stops (or, with on false, resumes) giving new jobs to a worker; the
// jobs it holds finish. It is remembered across the agent's reconnects and,
// with a DB, across server restarts; it returns once stored. An instance
// that is drained but not connected can be resumed.
func (d *Dispatcher) Drain(ctx context.Context, id string, on bool) (WorkerStatus, error) {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	d.mu.Lock()
	w := d.workers[id]
	known := d.drained[id]
	ids := make([]string, 0, len(d.drained)+1)
	for other := range d.drained {
		if other != id {
			ids = append(ids, other)
		}
	}
	d.mu.Unlock()
	if w == nil && (on || !known) {
		return WorkerStatus{}, workshop.Errorf(workshop.ENOTFOUND, "no connected GPU instance %q", id)
	}
	if on {
		ids = append(ids, id)
	}
	if d.cfg.DB != nil {
		slices.Sort(ids)
		if err := d.cfg.DB.Write(ctx, func(tx *store.Tx) error { return tx.PutSetting(settingDrained, ids) }); err != nil {
			return WorkerStatus{}, err
		}
	}
	d.mu.Lock()
	if on {
		d.drained[id] = true
	} else {
		delete(d.drained, id)
	}
	d.mu.Unlock()
	if w == nil {
		agent, instance, _ := strings.Cut(id, "/")
		return WorkerStatus{ID: id, Agent: agent, Instance: instance, State: "disconnected", Queued: []string{}}, nil
	}
	w.setDraining(on)
	d.changed()
	return w.status(d.doneCount(id)), nil
}

func (d *Dispatcher) doneCount(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done[id]
}

// WorkerStatus is one instance as the admin sees it.
type WorkerStatus struct {
	ID        string          `json:"id"`
	Agent     string          `json:"agent"`
	Instance  string          `json:"instance"`
	URL       string          `json:"url,omitempty"`
	Connected bool            `json:"connected"` // its socket is up through the tunnel
	Healthy   bool            `json:"healthy"`
	Draining  bool            `json:"draining"`
	State     string          `json:"state"` // idle, busy, draining, unreachable
	Current   string          `json:"current_job,omitempty"`
	Queued    []string        `json:"queued_jobs"`
	JobsDone  int             `json:"jobs_done"`
	GPU       *GPU            `json:"gpu,omitempty"`
	Error     string          `json:"error,omitempty"`
	Stats     json.RawMessage `json:"system_stats,omitempty"`
	Models    json.RawMessage `json:"models,omitempty"` // the agent's model check
}

// GPU is what is known of an instance's GPU.
type GPU struct {
	Name           string  `json:"name,omitempty"`
	MemoryTotalMiB float64 `json:"memory_total_mib,omitempty"`
	MemoryUsedMiB  float64 `json:"memory_used_mib,omitempty"`
	UtilizationPct float64 `json:"utilization_pct"` // -1 when unknown
}

// Workers lists every connected instance, by id.
func (d *Dispatcher) Workers() []WorkerStatus {
	d.mu.Lock()
	ws := make([]*worker, 0, len(d.workers))
	for _, w := range d.workers {
		ws = append(ws, w)
	}
	d.mu.Unlock()
	out := make([]WorkerStatus, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.status(d.doneCount(w.id)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Upstream picks a connected instance for read-only ComfyUI routes (the
// UI's files, object_info...): its base URL and a dial function through its
// agent's tunnel. Idle instances are preferred, so browsing does not slow a
// busy one.
func (d *Dispatcher) Upstream() (base string, dial func(ctx context.Context, network, addr string) (net.Conn, error), ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Ranked: taking jobs (a drained instance may be on its way out, and
	// with mixed versions its object_info is not what jobs will run on),
	// then idle, then by id.
	var pick *worker
	rank := func(w *worker) int {
		r := 0
		if !w.draining {
			r += 2
		}
		if w.executing == "" {
			r++
		}
		return r
	}
	pickRank := -1
	for _, w := range d.workers {
		w.mu.Lock()
		up, r := w.connected, rank(w)
		w.mu.Unlock()
		if !up {
			continue
		}
		if r > pickRank || (r == pickRank && w.id < pick.id) {
			pick, pickRank = w, r
		}
	}
	if pick == nil {
		return "", nil, false
	}
	base = pick.report.URL
	if base == "" {
		base = "http://comfyui.invalid"
	}
	return base, d.cfg.Tunnels.Dialer(pick.agent, pick.instance), true
}
