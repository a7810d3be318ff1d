// Package dispatch keeps every connected ComfyUI instance busy with the
// queue's jobs. It is the glue between the queue (sched), the GPU agents'
// tunnels (tunnel) and ComfyUI's protocol (comfy): one worker per instance
// leases jobs, queues them on the instance through the tunnel, follows the
// instance's socket, and brings the outputs home.
package dispatch

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
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
	// MaxOutputs and MaxOutputBytes cap what one job may bring back from
	// a GPU host (files, and bytes in all); a job past either fails.
	// Defaults DefaultMaxOutputs, DefaultMaxOutputBytes.
	MaxOutputs     int
	MaxOutputBytes int64
	// SetAsideAfter is how many jobs in a row may fail on an instance for
	// the instance's own reasons (out of memory, a crash) before it is set
	// aside: given no new jobs until the instructor puts it back. 0 never.
	SetAsideAfter int
	// NodeListFile keeps the node list participants were last served (see
	// ObjectInfo), for a restart before any GPU host is back; "" keeps it
	// in memory only.
	NodeListFile string
}

// Defaults of Config's output caps: far above a workshop's batch of images
// or a video, far below what fills the server's disk.
const (
	DefaultMaxOutputs     = 500
	DefaultMaxOutputBytes = 2 << 30
)

// Dispatcher runs the workers.
type Dispatcher struct {
	cfg Config
	log *slog.Logger

	drainMu  sync.Mutex // one change of drains or set-asides at a time, so stored and live sets agree
	mu       sync.Mutex
	workers  map[string]*worker    // by worker id: agent/instance
	drained  map[string]bool       // survives reconnects, and restarts with DB
	setAside map[string]SetAside   // likewise
	strikes  map[string][]strike   // instance-side failures in a row, per worker id
	gone     map[string]goneWorker // workers whose agent went, until it is back
	sessions map[string]uint64     // agent -> live session id
	done     map[string]int        // jobs completed per worker id

	nodesMu   sync.Mutex
	served    []byte // the node list last served (ObjectInfo)
	servedKey []byte // the lists it was made of
}

// goneWorker is the last state of a worker whose agent disconnected.
type goneWorker struct {
	last    WorkerStatus
	version string
	at      time.Time
	nodes   *nodeList
	taking  bool
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
	if cfg.MaxOutputs <= 0 {
		cfg.MaxOutputs = DefaultMaxOutputs
	}
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if cfg.OutputURL == nil {
		cfg.OutputURL = func(jobID, name string) string { return "/api/jobs/" + jobID + "/outputs/" + url.PathEscape(name) }
	}
	d := &Dispatcher{
		cfg: cfg, log: cfg.Log,
		workers: map[string]*worker{}, drained: map[string]bool{}, setAside: map[string]SetAside{},
		strikes: map[string][]strike{}, gone: map[string]goneWorker{},
		sessions: map[string]uint64{}, done: map[string]int{},
	}
	if cfg.DB != nil {
		var ids []string
		err := cfg.DB.View(func(tx *store.Tx) error {
			if _, err := tx.Setting(settingDrained, &ids); err != nil {
				return err
			}
			_, err := tx.Setting(settingSetAside, &d.setAside)
			return err
		})
		if err != nil {
			d.log.Error("reading the drained and set-aside instances failed; none are", "err", err)
		}
		for _, id := range ids {
			d.drained[id] = true
		}
		if d.setAside == nil {
			d.setAside = map[string]SetAside{}
		}
	}
	if cfg.NodeListFile != "" {
		d.loadNodes()
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
		now := time.Now()
		for id, w := range d.workers {
			if w.agent == a.Name && w.session == a.SessionID {
				gone = append(gone, w)
				delete(d.workers, id)
				// Still listed, as disconnected, until it is back or removed.
				lost := w.lostSince()
				if lost.IsZero() {
					lost = now
				}
				w.mu.Lock()
				nodes, version, taking := w.nodes, w.version, !w.draining && !w.aside
				w.mu.Unlock()
				d.gone[id] = goneWorker{last: w.status(d.done[id]), version: version, at: lost, nodes: nodes, taking: taking}
			}
		}
		if d.sessions[a.Name] == a.SessionID {
			delete(d.sessions, a.Name)
		}
		d.mu.Unlock()
		for _, w := range gone {
			w.stop()
		}
		time.AfterFunc(d.cfg.Grace, d.changed) // their node lists no longer hold jobs
	}
	d.changed()
	if ev.Type != tunnel.AgentReported {
		action, detail := "connected", fmt.Sprintf("%d instance(s) from %s", len(a.Report.Instances), a.RemoteAddr)
		if ev.Type == tunnel.AgentDisconnected {
			action, detail = "disconnected", fmt.Sprint(ev.Err)
		}
		d.publishAgent(a.Name, action, detail)
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
	_, w.aside = d.setAside[id]
	d.workers[id] = w
	delete(d.gone, id)
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

// updateSlots tells the queue which workers take jobs now (for estimates,
// and so a job that failed on one waits for another) and the node classes
// of each instance it may send jobs to.
func (d *Dispatcher) updateSlots() {
	d.mu.Lock()
	var ids []string
	for id, w := range d.workers {
		if w.usable() {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	d.cfg.Queue.SetWorkers(ids)
	d.cfg.Queue.SetNodes(nodeSets(d.listedNow()))
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
	if w != nil {
		w.setHeld(func() { w.draining = on })
		d.changed()
	}
	st, _ := d.status(id)
	return st, nil
}

// States of an instance, as WorkerStatus.State reports them.
const (
	StateIdle         = "idle"
	StateBusy         = "busy"
	StateDraining     = "draining"
	StateSetAside     = "set_aside"
	StateConnecting   = "connecting"   // just came; its socket is not up yet
	StateUnreachable  = "unreachable"  // its agent is there, the instance's socket is not
	StateDisconnected = "disconnected" // its agent is gone
)

// WorkerStatus is one instance as the admin sees it.
type WorkerStatus struct {
	ID        string          `json:"id"`
	Agent     string          `json:"agent"`
	Instance  string          `json:"instance"`
	URL       string          `json:"url,omitempty"`
	Connected bool            `json:"connected"` // its socket is up through the tunnel
	Healthy   bool            `json:"healthy"`
	Draining  bool            `json:"draining"`
	State     string          `json:"state"` // one of the State constants
	Current   string          `json:"current_job,omitempty"`
	Queued    []string        `json:"queued_jobs"`
	JobsDone  int             `json:"jobs_done"`
	GPU       *GPU            `json:"gpu,omitempty"`
	Error     string          `json:"error,omitempty"`
	Stats     json.RawMessage `json:"system_stats,omitempty"`
	Models    json.RawMessage `json:"models,omitempty"` // the agent's model check

	// SetAside is set while the instance is out of service because it
	// kept failing jobs.
	SetAside *SetAside `json:"set_aside,omitempty"`
	// RecentFailures are its instance-side failures since its last
	// completed job.
	RecentFailures []workshop.Failure `json:"recent_failures,omitempty"`

	// While unreachable or disconnected: since when, the jobs whose leases
	// it still holds, and when they go back to the queue if it is not back.
	LostAt          *time.Time `json:"lost_at,omitempty"`
	HeldJobs        []string   `json:"held_jobs,omitempty"`
	GraceEndsAt     *time.Time `json:"grace_ends_at,omitempty"`
	GraceRemainingS *float64   `json:"grace_remaining_s,omitempty"`
}

// TakesJobs reports whether the instance is given new jobs now.
func (s WorkerStatus) TakesJobs() bool { return s.Connected && !s.Draining && s.SetAside == nil }

// GPU is what is known of an instance's GPU.
type GPU struct {
	Name           string  `json:"name,omitempty"`
	MemoryTotalMiB float64 `json:"memory_total_mib,omitempty"`
	MemoryUsedMiB  float64 `json:"memory_used_mib,omitempty"`
	UtilizationPct float64 `json:"utilization_pct"` // -1 when unknown
}

// Workers lists every instance, by id: the connected ones, and those
// whose agent went (or that held jobs when the server restarted, or are
// drained or set aside) as disconnected, until they are back or removed.
func (d *Dispatcher) Workers() []WorkerStatus {
	ids := map[string]bool{}
	d.mu.Lock()
	for id := range d.workers {
		ids[id] = true
	}
	for id := range d.gone {
		ids[id] = true
	}
	for id := range d.drained {
		ids[id] = true
	}
	for id := range d.setAside {
		ids[id] = true
	}
	d.mu.Unlock()
	for _, id := range d.cfg.Queue.LeaseHolders() {
		ids[id] = true
	}
	out := make([]WorkerStatus, 0, len(ids))
	for id := range ids {
		if st, ok := d.status(id); ok {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// status is one instance's state, live or remembered; false when nothing
// is known of it.
func (d *Dispatcher) status(id string) (WorkerStatus, bool) {
	d.mu.Lock()
	w := d.workers[id]
	g, wasHere := d.gone[id]
	drained := d.drained[id]
	aside, isAside := d.setAside[id]
	var failures []workshop.Failure
	for _, s := range d.strikes[id] {
		failures = append(failures, s.f)
	}
	done := d.done[id]
	d.mu.Unlock()
	var st WorkerStatus
	var lost time.Time
	var held []string
	var until time.Time
	if w != nil {
		st, lost = w.status(done), w.lostSince()
		if !st.Connected {
			held, until = d.cfg.Queue.Leases(id)
		}
	} else {
		held, until = d.cfg.Queue.Leases(id)
		if !wasHere && !drained && !isAside && len(held) == 0 {
			return WorkerStatus{}, false
		}
		agent, instance, _ := strings.Cut(id, "/")
		st = WorkerStatus{ID: id, Agent: agent, Instance: instance, JobsDone: done}
		if wasHere {
			st, lost = g.last, g.at
			st.Current, st.Error = "", ""
		}
		st.Queued = []string{}
		st.Connected, st.Healthy, st.Draining, st.State = false, false, drained, StateDisconnected
	}
	if isAside {
		st.SetAside = &aside
		if st.State == StateIdle || st.State == StateDraining {
			st.State = StateSetAside
		}
	}
	st.RecentFailures = failures
	if !lost.IsZero() && !st.Connected {
		lost = lost.UTC()
		st.LostAt = &lost
	}
	if len(held) > 0 {
		until = until.UTC()
		left := math.Max(0, math.Round(time.Until(until).Seconds()*10)/10)
		st.HeldJobs, st.GraceEndsAt, st.GraceRemainingS = held, &until, &left
	}
	return st, true
}

// Upstream picks a connected instance for read-only ComfyUI routes (the
// UI's files, model lists...): its base URL and a dial function through
// its agent's tunnel. The newest ComfyUI is preferred, so that with mixed
// versions every participant gets the same UI (the node list is every
// instance's: ObjectInfo). Instances taking jobs
// come first (a drained or set-aside one may be on its way out, and what
// it describes is not where jobs run). Among equals, idle instances are
// preferred, so browsing does not slow a busy one.
func (d *Dispatcher) Upstream() (base string, dial func(ctx context.Context, network, addr string) (net.Conn, error), ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var pick *worker
	var pickVersion string
	pickTaking, pickIdle := false, false
	for _, w := range d.workers {
		w.mu.Lock()
		up, idle, version := w.connected, w.executing == "", w.version
		taking := !w.draining && !w.aside
		w.mu.Unlock()
		if !up {
			continue
		}
		better := pick == nil
		if !better {
			switch c := compareVersions(version, pickVersion); {
			case taking != pickTaking:
				better = taking
			case c != 0:
				better = c > 0
			case idle != pickIdle:
				better = idle
			default:
				better = w.id < pick.id
			}
		}
		if better {
			pick, pickTaking, pickIdle, pickVersion = w, taking, idle, version
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

// comfyVersion is the ComfyUI version a system_stats reports ("0.3.64"),
// or "" for versions before it was reported (2025).
func comfyVersion(stats json.RawMessage) string {
	var ss struct {
		System struct {
			Version string `json:"comfyui_version"`
		} `json:"system"`
	}
	if len(stats) == 0 || json.Unmarshal(stats, &ss) != nil {
		return ""
	}
	return ss.System.Version
}

// compareVersions orders dotted versions by their numbers ("0.3.10" after
// "0.3.9"); "" is the oldest.
func compareVersions(a, b string) int {
	if a == "" || b == "" {
		return strings.Compare(a, b)
	}
	as, bs := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			fmt.Sscanf(as[i], "%d", &x)
		}
		if i < len(bs) {
			fmt.Sscanf(bs[i], "%d", &y)
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return 0
}
