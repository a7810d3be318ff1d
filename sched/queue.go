// Package sched is the workshop queue: the order of pending jobs, the leases
// workers hold on running ones, and the events that report every change.
//
// The queue keeps active jobs in memory and is the only writer of job state.
// Each change is checked against memory under one lock, queued to the store
// in that same order while the lock is held, and acknowledged only once the
// store has committed it, so memory and disk never disagree and nothing
// acknowledged is lost.
package sched

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// Config tunes a Queue.
type Config struct {
	Mode           workshop.QueueMode
	MaxPending     int  // pending jobs one participant may hold; 0 = unlimited
	IgnorePriority bool // ENABLE_PRIORITY=false: every job is served as priority 2
	MaxAttempts    int  // dispatches before a job that keeps losing its worker fails
	// RestartGrace is how long, after the server starts, the workers that
	// held running jobs have to come back and reconcile before their leases
	// can expire.
	RestartGrace time.Duration
	Now          func() time.Time
	Log          *slog.Logger
}

// Queue is the durable, ordered job queue.
type Queue struct {
	db  *store.DB
	cfg Config
	log *slog.Logger
	now func() time.Time
	bus *Bus

	mu     sync.Mutex
	mode   workshop.QueueMode
	paused bool
	seq    uint64
	top    int64             // moves to the top so far: the latest goes first
	clock  uint64            // round-robin clock: one tick per dispatch
	served map[string]uint64 // participant -> clock at their last dispatch
	active map[string]*entry
	// running holds the active entries that are leased: what the lease
	// sweep, heartbeats and the GPU list walk, every second, without the
	// pending ones (tens of thousands in a long queue).
	running map[string]*entry
	byUser  map[string][]*entry // each participant's active entries
	// settling holds the entries finished in memory whose write has not
	// committed: until it has, the participant's index does not hold them
	// either, and a listing names them (activeIDs).
	settling map[string]*entry
	// classes[0] holds jobs the instructor moved to the top; classes[p+1]
	// holds priority p.
	classes [workshop.PriorityLowest + 2]*class
	// pendingBy counts each participant's pending jobs, including those
	// whose submission is still committing, for the per-participant cap.
	pendingBy map[string]int
	quota     map[string]int    // per-participant cap overriding MaxPending
	userSeq   map[string]uint64 // participant -> their last job's UserSeq, once known
	finished  map[workshop.JobStatus]int
	changed   chan struct{} // closed and replaced when a job may be leasable

	orderDirty bool
	dirtyWork  int // participants walked by position since the order went dirty
	orderCache []*entry
	positions  map[*entry]int

	workers []string                   // the workers that take jobs now (SetWorkers)
	nodes   map[string]map[string]bool // node classes of the instances jobs may wait for (SetNodes)
	slots   int                        // connected worker slots, for estimates
	avgRun  time.Duration              // moving average of run time, for estimates
}

// Settings names in the store.
const (
	settingQueue = "queue"
)

type queueSettings struct {
	Mode   workshop.QueueMode `json:"mode"`
	Paused bool               `json:"paused"`
}

// Open loads the active jobs from db and returns the queue. The mode in cfg
// applies only to a new store: once the instructor switches it, the stored
// mode wins over the flag.
func Open(db *store.DB, cfg Config) (*Queue, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Mode == "" {
		cfg.Mode = workshop.ModeRoundRobin
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	q := &Queue{
		db: db, cfg: cfg, log: cfg.Log, now: cfg.Now, bus: NewBus(),
		mode:       cfg.Mode,
		served:     map[string]uint64{},
		active:     map[string]*entry{},
		running:    map[string]*entry{},
		byUser:     map[string][]*entry{},
		settling:   map[string]*entry{},
		pendingBy:  map[string]int{},
		quota:      map[string]int{},
		userSeq:    map[string]uint64{},
		finished:   map[workshop.JobStatus]int{},
		changed:    make(chan struct{}),
		orderDirty: true,
	}
	for i := range q.classes {
		q.classes[i] = newClass()
	}
	err := db.View(func(tx *store.Tx) error {
		var s queueSettings
		ok, err := tx.Setting(settingQueue, &s)
		if err != nil {
			return err
		}
		if ok {
			q.mode, q.paused = s.Mode, s.Paused
		}
		if q.seq, err = tx.MaxSeq(); err != nil {
			return err
		}
		if q.served, err = tx.Served(); err != nil {
			return err
		}
		for _, c := range q.served {
			q.clock = max(q.clock, c)
		}
		for st, n := range tx.JobCounts() {
			if st.Finished() {
				q.finished[st] = n
			}
		}
		jobs, err := tx.ActiveJobs()
		if err != nil {
			return err
		}
		graceEnd := cfg.Now().Add(cfg.RestartGrace)
		for _, j := range jobs {
			e := q.entryOf(j)
			e.classes, _ = workshop.WorkflowClasses(j.Workflow)
			if e.status == workshop.StatusRunning && e.leaseExp.Before(graceEnd) {
				e.leaseExp = graceEnd // in memory only: the worker's next Extend writes it
			}
			q.addActive(e)
			if e.status == workshop.StatusPending {
				q.addPending(e)
				q.pendingBy[e.user]++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load queue: %w", err)
	}
	return q, nil
}

func (q *Queue) entryOf(j *workshop.Job) *entry {
	e := &entry{
		id: j.ID, user: j.UserID, priority: q.class(j.Priority, j.Top > 0), seq: j.Seq, order: int64(j.Seq),
		status: j.Status, created: j.CreatedAt, attempts: j.Attempts, worker: j.Worker,
	}
	if j.StartedAt != nil {
		e.started = *j.StartedAt
	}
	if j.LeaseExpires != nil {
		e.leaseExp = *j.LeaseExpires
	}
	for _, f := range j.Failures {
		if !slices.Contains(e.avoid, f.Worker) {
			e.avoid = append(e.avoid, f.Worker)
		}
	}
	if j.Top > 0 {
		e.order = -j.Top
		q.top = max(q.top, j.Top)
	}
	return e
}

// class is the index in classes of a job's priority.
func (q *Queue) class(priority int, front bool) int {
	switch {
	case front:
		return 0
	case q.cfg.IgnorePriority:
		return workshop.PriorityDefault + 1
	}
	return priority + 1
}

// Events returns the queue's event bus.
func (q *Queue) Events() *Bus { return q.bus }

// notify wakes lease waiters; call with mu held.
func (q *Queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Submission is a request to queue a job.
type Submission struct {
	UserID   string
	Workflow json.RawMessage
	Priority *int
	Metadata json.RawMessage
	// From ComfyUI clients: their extra_data, the id of the UI workflow in
	// it, and the uploads the graph uses.
	ExtraData  json.RawMessage
	WorkflowID string
	Inputs     []string
}

// Validate checks every field of a submission.
func (s Submission) Validate() error {
	_, err := s.check()
	return err
}

// check validates s and returns the node classes its workflow uses.
func (s Submission) check() ([]string, error) {
	if !workshop.ValidUserID(s.UserID) {
		return nil, workshop.Errorf(workshop.EINVALID, "user_id must be 1 to %d letters, digits, '_', '-' or '.'", workshop.MaxUserIDLen)
	}
	if s.Priority != nil && !workshop.ValidPriority(*s.Priority) {
		return nil, workshop.Errorf(workshop.EINVALID, "priority must be 0 (highest) to 3")
	}
	classes, err := workshop.WorkflowClasses(s.Workflow)
	if err != nil {
		return nil, err
	}
	if len(s.ExtraData) > workshop.MaxWorkflowSize || (len(s.ExtraData) > 0 && !json.Valid(s.ExtraData)) {
		return nil, workshop.Errorf(workshop.EINVALID, "extra_data must be a JSON object under %d bytes", workshop.MaxWorkflowSize)
	}
	if len(s.WorkflowID) > MaxWorkflowIDLen {
		return nil, workshop.Errorf(workshop.EINVALID, "workflow id is longer than %d bytes", MaxWorkflowIDLen)
	}
	return classes, workshop.ValidateMetadata(s.Metadata)
}

// MaxWorkflowIDLen bounds a submission's workflow id (ComfyUI's are UUIDs).
const MaxWorkflowIDLen = 128

// Submit validates s, stores the job durably and returns it with its
// position. It fails with ETOOMANY when the participant is at their cap.
func (q *Queue) Submit(ctx context.Context, s Submission) (*workshop.Job, error) {
	classes, err := s.check()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prio := workshop.PriorityDefault
	if s.Priority != nil {
		prio = *s.Priority
	}

	q.mu.Lock()
	_, numbered := q.userSeq[s.UserID]
	q.mu.Unlock()
	var stored uint64
	if !numbered {
		// Read outside the lock; a submission that numbered this
		// participant meanwhile wins below.
		stored = q.lastUserSeq(s.UserID)
	}

	q.mu.Lock()
	if limit := q.limitFor(s.UserID); limit > 0 && q.pendingBy[s.UserID] >= limit {
		q.mu.Unlock()
		return nil, quotaError(s.UserID, limit)
	}
	q.pendingBy[s.UserID]++
	q.seq++
	userSeq, ok := q.userSeq[s.UserID]
	if !ok {
		userSeq = stored
	}
	userSeq++
	q.userSeq[s.UserID] = userSeq
	now := q.now().UTC()
	job := &workshop.Job{
		ID:         uuid.Must(uuid.NewV7()).String(),
		Seq:        q.seq,
		UserSeq:    userSeq,
		UserID:     s.UserID,
		Workflow:   s.Workflow,
		Priority:   prio,
		Status:     workshop.StatusPending,
		CreatedAt:  now,
		Metadata:   s.Metadata,
		ExtraData:  s.ExtraData,
		WorkflowID: s.WorkflowID,
		Inputs:     s.Inputs,
	}
	done := q.db.Enqueue(func(tx *store.Tx) error { return tx.PutJob(job) })
	q.mu.Unlock()

	err = <-done
	q.mu.Lock()
	if err != nil {
		q.pendingBy[s.UserID]--
		q.mu.Unlock()
		return nil, err
	}
	e := q.entryOf(job)
	e.classes = classes
	q.addActive(e)
	q.addPending(e)
	q.dirty()
	q.fill(job, e)
	if !q.paused {
		q.notify()
	}
	q.mu.Unlock()

	q.publish(EventJobCreated, job)
	return job, nil
}

// lastUserSeq is the UserSeq of user's newest stored job (0 for none).
func (q *Queue) lastUserSeq(user string) uint64 {
	active := q.activeIDs(user)
	var n uint64
	q.db.View(func(tx *store.Tx) error {
		jobs, _, err := tx.ListJobs(store.JobFilter{UserID: user, Active: active, Limit: 1})
		if err == nil && len(jobs) > 0 {
			n = jobs[0].UserSeq
		}
		return err
	})
	return n
}

func (q *Queue) limitFor(user string) int {
	if n, ok := q.quota[user]; ok {
		return n
	}
	return q.cfg.MaxPending
}

// quotaError says that user is at their cap of limit pending jobs.
func quotaError(user string, limit int) error {
	if limit == 1 {
		return workshop.Errorf(workshop.ETOOMANY, "%s already has 1 job waiting, the most it may queue: wait until it starts", workshop.Who(user))
	}
	return workshop.Errorf(workshop.ETOOMANY, "%s already has %d jobs waiting, the most it may queue: wait until one starts", workshop.Who(user), limit)
}

// SetQuota sets one participant's cap on pending jobs (0: unlimited,
// negative: back to the default).
func (q *Queue) SetQuota(user string, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n < 0 {
		delete(q.quota, user)
	} else {
		q.quota[user] = n
	}
}

// fill sets the computed fields of a job from its entry; mu held.
func (q *Queue) fill(j *workshop.Job, e *entry) {
	j.Position, j.ETASeconds = 0, nil
	if e != nil && e.status == workshop.StatusRunning && !e.leaseExp.IsZero() {
		// Leases are renewed in memory only: the stored expiry is the first.
		exp := e.leaseExp
		j.LeaseExpires = &exp
		if !exp.After(q.now()) {
			// Its worker stopped renewing it, and the next sweep (within a
			// second) puts it back in the queue: it is not running.
			j.Status, j.Worker, j.LeaseExpires, j.StartedAt = workshop.StatusPending, "", nil, nil
		}
		return
	}
	if e == nil || e.status != workshop.StatusPending {
		return
	}
	j.Position = q.position(e)
	j.ETASeconds = q.eta(j.Position)
}

// eta estimates the wait, in seconds, of the job at place pos; nil until
// there are workers and a run time to go by. mu held.
func (q *Queue) eta(pos int) *float64 {
	if q.slots <= 0 || q.avgRun <= 0 {
		return nil
	}
	waves := math.Ceil(float64(pos) / float64(q.slots))
	eta := math.Round(waves*q.avgRun.Seconds()*10) / 10
	return &eta
}

// Get returns a job with its workflow and computed fields.
func (q *Queue) Get(id string) (*workshop.Job, error) {
	var j *workshop.Job
	err := q.db.View(func(tx *store.Tx) (err error) {
		j, err = tx.Job(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.fill(j, q.active[id])
	q.mu.Unlock()
	return j, nil
}

// ListFilter selects jobs to list.
type ListFilter struct {
	UserID string
	Status workshop.JobStatus
	Cursor string
	Limit  int
}

// MaxListLimit caps one page of a job list.
const MaxListLimit = 500

// List returns jobs newest first, except pending jobs, which come in dispatch
// order with their positions; and the cursor for the next page.
func (q *Queue) List(f ListFilter) ([]*workshop.Job, string, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, MaxListLimit)
	if f.Status != "" && !f.Status.Valid() {
		return nil, "", workshop.Errorf(workshop.EINVALID, "status %q: want pending, running, completed, failed or cancelled", f.Status)
	}
	if f.UserID != "" && !workshop.ValidUserID(f.UserID) {
		return nil, "", workshop.Errorf(workshop.EINVALID, "user_id %q is not a valid participant id", f.UserID)
	}
	if f.Status == workshop.StatusPending {
		return q.listPending(f)
	}
	if f.Cursor != "" {
		if _, err := uuid.Parse(f.Cursor); err != nil {
			return nil, "", workshop.Errorf(workshop.EINVALID, "cursor %q is not one this server gave", f.Cursor)
		}
	}
	var active []string
	if f.UserID != "" {
		active = q.activeIDs(f.UserID)
	}
	var jobs []*workshop.Job
	var next string
	err := q.db.View(func(tx *store.Tx) (err error) {
		jobs, next, err = tx.ListJobs(store.JobFilter{UserID: f.UserID, Active: active, Status: f.Status, Before: f.Cursor, Limit: f.Limit})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	q.mu.Lock()
	for _, j := range jobs {
		q.fill(j, q.active[j.ID])
	}
	q.mu.Unlock()
	return jobs, next, nil
}

// UserJobs is one page of a participant's jobs as q asks for it, chosen
// from the store's index of their finished jobs and their active ones in
// memory (see store.UserJobs), without graphs, with computed fields; and
// how many jobs match in all. A job's status is the stored one: a running
// job whose lease just ran out is listed by it, shown pending.
func (q *Queue) UserJobs(query store.UserJobsQuery) ([]*workshop.Job, int, error) {
	if !workshop.ValidUserID(query.UserID) {
		return nil, 0, workshop.Errorf(workshop.EINVALID, "user_id %q is not a valid participant id", query.UserID)
	}
	query.Active = q.activeIDs(query.UserID)
	var jobs []*workshop.Job
	var total int
	err := q.db.View(func(tx *store.Tx) (err error) {
		jobs, total, err = tx.UserJobs(query)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	q.mu.Lock()
	for _, j := range jobs {
		q.fill(j, q.active[j.ID])
	}
	q.mu.Unlock()
	return jobs, total, nil
}

// listPending pages through the dispatch order; the cursor is a position.
func (q *Queue) listPending(f ListFilter) ([]*workshop.Job, string, error) {
	from := 0
	if f.Cursor != "" {
		if _, err := fmt.Sscanf(f.Cursor, "p%d", &from); err != nil || from < 0 {
			return nil, "", workshop.Errorf(workshop.EINVALID, "cursor %q is not one this server gave", f.Cursor)
		}
	}
	q.mu.Lock()
	var page []*entry
	for _, e := range q.order()[min(from, len(q.orderCache)):] {
		if f.UserID != "" && e.user != f.UserID {
			continue
		}
		page = append(page, e)
		if len(page) > f.Limit {
			break
		}
	}
	q.mu.Unlock()
	next := ""
	if len(page) > f.Limit {
		page = page[:f.Limit]
	}
	var jobs []*workshop.Job
	err := q.db.View(func(tx *store.Tx) error {
		for _, e := range page {
			j, err := tx.Job(e.id)
			if err != nil {
				continue // finished meanwhile
			}
			j.Workflow = nil
			jobs = append(jobs, j)
		}
		return nil
	})
	q.mu.Lock()
	last := 0
	for _, j := range jobs {
		q.fill(j, q.active[j.ID])
		last = max(last, j.Position)
	}
	if len(page) == f.Limit && last > 0 && last < len(q.order()) {
		next = fmt.Sprintf("p%d", last)
	}
	q.mu.Unlock()
	return jobs, next, err
}

// change applies a state change to one active job: check runs under the lock
// against the job's entry and returns what to write, or an error. The write
// is queued before the lock is released, so writes reach disk in the order
// memory saw them.
func (q *Queue) change(ctx context.Context, id string, check func(e *entry) (func(*workshop.Job), error)) (*workshop.Job, error) {
	q.mu.Lock()
	e := q.active[id]
	if e == nil {
		q.mu.Unlock()
		return nil, q.notActive(id)
	}
	mutate, err := check(e)
	if err != nil {
		q.mu.Unlock()
		return nil, err
	}
	var saved *workshop.Job
	done := q.db.Enqueue(func(tx *store.Tx) (err error) {
		saved, err = tx.UpdateJob(id, func(j *workshop.Job) error { mutate(j); return nil })
		return err
	})
	q.mu.Unlock()
	err = <-done
	q.mu.Lock()
	q.settled(id)
	if err != nil {
		q.mu.Unlock()
		// Memory moved on and disk did not: the store is failing (disk full,
		// I/O error). Say so loudly; a restart reloads the truth from disk.
		q.log.Error("store write failed after the queue changed", "job", id, "err", err)
		return nil, err
	}
	saved.Workflow = nil
	q.fill(saved, q.active[id])
	q.mu.Unlock()
	q.publish(EventJobUpdated, saved)
	return saved, nil
}

// notActive explains why id is not an active job: unknown, or finished.
func (q *Queue) notActive(id string) error {
	var j *workshop.Job
	err := q.db.View(func(tx *store.Tx) (err error) {
		j, err = tx.Job(id)
		return err
	})
	if err != nil {
		return err
	}
	return workshop.Errorf(workshop.ECONFLICT, "job %s is already %s", id, j.Status)
}

// removePending takes a pending entry out of the order; mu held.
func (q *Queue) removePending(e *entry) {
	q.classes[e.priority].remove(e)
	q.pendingBy[e.user]--
	if q.pendingBy[e.user] <= 0 {
		delete(q.pendingBy, e.user)
	}
	q.dirty()
}

// finish drops a running or pending entry that reached a terminal state; mu held.
func (q *Queue) finish(e *entry, st workshop.JobStatus) {
	if e.status == workshop.StatusPending {
		q.removePending(e)
	}
	e.status = st
	q.dropActive(e)
	q.settling[e.id] = e // until its write commits: see settled
	q.finished[st]++
}

// settled ends the settling of id once its write is done (or failed: a
// failing store is reloaded from disk on restart); mu held.
func (q *Queue) settled(id string) { delete(q.settling, id) }

// activeIDs names user's jobs that their index does not hold, for a
// listing to merge in (store.JobFilter.Active): the active ones and those
// whose finish is still committing. Call it before the listing's read of
// the store: a job that finishes after it is named and read from its
// record, one that finished before is in the index once settled.
func (q *Queue) activeIDs(user string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]string, 0, len(q.byUser[user]))
	for _, e := range q.byUser[user] {
		ids = append(ids, e.id)
	}
	for id, e := range q.settling {
		if e.user == user {
			ids = append(ids, id)
		}
	}
	return ids
}

// addActive and dropActive keep active, running and byUser in step; mu
// held.
func (q *Queue) addActive(e *entry) {
	q.active[e.id] = e
	if e.status == workshop.StatusRunning {
		q.running[e.id] = e
	}
	q.byUser[e.user] = append(q.byUser[e.user], e)
}

func (q *Queue) dropActive(e *entry) {
	delete(q.active, e.id)
	delete(q.running, e.id)
	s := slices.DeleteFunc(q.byUser[e.user], func(x *entry) bool { return x == e })
	if len(s) == 0 {
		delete(q.byUser, e.user)
	} else {
		q.byUser[e.user] = s
	}
}

// Cancel cancels a pending or running job. A running job's worker learns of
// it through the Cancelled event and interrupts the engine.
func (q *Queue) Cancel(ctx context.Context, id, reason string) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		return q.cancelled(e, reason), nil
	})
}

// cancelled finishes e as cancelled for reason and returns the write. A job
// stopped while its engine executed it keeps, as the error's details, the
// node it was at (as ComfyUI's execution_interrupted names it). mu held.
func (q *Queue) cancelled(e *entry, reason string) func(*workshop.Job) {
	if reason == "" {
		reason = "cancelled"
	}
	now := q.now().UTC()
	ran, node := e.status == workshop.StatusRunning && !e.started.IsZero(), e.node
	q.finish(e, workshop.StatusCancelled)
	return func(j *workshop.Job) {
		j.Status, j.CompletedAt, j.LeaseExpires = workshop.StatusCancelled, &now, nil
		j.Error = &workshop.JobError{Type: "cancelled", Message: reason}
		if ran {
			j.Error.Details = interruptedAt(j.Workflow, node)
		}
	}
}

// interruptedAt is {"node_id", "node_type"} of node in workflow.
func interruptedAt(workflow json.RawMessage, node string) json.RawMessage {
	var nodes map[string]struct {
		ClassType string `json:"class_type"`
	}
	json.Unmarshal(workflow, &nodes)
	b, _ := json.Marshal(struct {
		NodeID   string `json:"node_id"`
		NodeType string `json:"node_type"`
	}{node, nodes[node].ClassType})
	return b
}

// SetPriority moves a pending job to another priority.
func (q *Queue) SetPriority(ctx context.Context, id string, prio int) (*workshop.Job, error) {
	if !workshop.ValidPriority(prio) {
		return nil, workshop.Errorf(workshop.EINVALID, "priority must be 0 (highest) to 3")
	}
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if e.status != workshop.StatusPending {
			return nil, workshop.Errorf(workshop.ECONFLICT, "job %s is %s: only pending jobs change priority", id, e.status)
		}
		q.classes[e.priority].remove(e)
		e.priority, e.order = q.class(prio, false), int64(e.seq)
		q.addPending(e)
		q.dirty()
		return func(j *workshop.Job) { j.Priority, j.Top = prio, 0 }, nil
	})
}

// MoveToTop puts a pending job at the front of the queue, ahead of every
// priority; jobs moved later go ahead of it.
func (q *Queue) MoveToTop(ctx context.Context, id string) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if e.status != workshop.StatusPending {
			return nil, workshop.Errorf(workshop.ECONFLICT, "job %s is %s: only pending jobs move", id, e.status)
		}
		// Moved jobs are ordered by their move, the latest first.
		q.classes[e.priority].remove(e)
		q.top++
		top := q.top
		e.priority, e.order = 0, -top
		q.addPending(e)
		q.dirty()
		return func(j *workshop.Job) { j.Top = top }, nil
	})
}

// Retry queues a failed or cancelled job again, as a new job of the same
// participant.
func (q *Queue) Retry(ctx context.Context, id string) (*workshop.Job, error) {
	old, err := q.Get(id)
	if err != nil {
		return nil, err
	}
	if old.Status != workshop.StatusFailed && old.Status != workshop.StatusCancelled {
		return nil, workshop.Errorf(workshop.ECONFLICT, "job %s is %s: only failed or cancelled jobs are retried", id, old.Status)
	}
	prio := old.Priority
	return q.Submit(ctx, Submission{UserID: old.UserID, Workflow: old.Workflow, Priority: &prio,
		Metadata: old.Metadata, ExtraData: old.ExtraData, WorkflowID: old.WorkflowID, Inputs: old.Inputs})
}

// Pause stops dispatching; pending jobs stay.
func (q *Queue) Pause(ctx context.Context) error { return q.setState(ctx, nil, ptr(true)) }

// Resume restarts dispatching.
func (q *Queue) Resume(ctx context.Context) error { return q.setState(ctx, nil, ptr(false)) }

// SetMode switches between fifo and round-robin.
func (q *Queue) SetMode(ctx context.Context, m workshop.QueueMode) error {
	if _, err := workshop.ParseQueueMode(string(m)); err != nil {
		return err
	}
	return q.setState(ctx, &m, nil)
}

func ptr[T any](v T) *T { return &v }

func (q *Queue) setState(ctx context.Context, mode *workshop.QueueMode, paused *bool) error {
	q.mu.Lock()
	if mode != nil {
		q.mode = *mode
		q.dirty()
	}
	if paused != nil {
		q.paused = *paused
	}
	s := queueSettings{Mode: q.mode, Paused: q.paused}
	done := q.db.Enqueue(func(tx *store.Tx) error { return tx.PutSetting(settingQueue, s) })
	if !q.paused {
		q.notify()
	}
	q.mu.Unlock()
	if err := <-done; err != nil {
		return err
	}
	st := q.Status()
	q.bus.Publish(Event{Type: EventQueueChanged, Queue: &st})
	return nil
}

// Mine returns a participant's active jobs (running first, then pending in
// dispatch order), with positions, without workflows unless full.
func (q *Queue) Mine(user string, full bool) []*workshop.Job {
	q.mu.Lock()
	es := q.mineLocked(user)
	q.mu.Unlock()
	var out []*workshop.Job
	q.db.View(func(tx *store.Tx) error {
		for _, e := range es {
			if j, err := tx.Job(e.id); err == nil {
				if !full {
					j.Workflow = nil
				}
				out = append(out, j)
			}
		}
		return nil
	})
	q.mu.Lock()
	for _, j := range out {
		q.fill(j, q.active[j.ID])
	}
	q.mu.Unlock()
	return out
}

// mineLocked is user's active entries, running (oldest first) then pending
// in dispatch order: a participant's own jobs go in class order and, within
// a class, in submission order, in either mode. mu held.
func (q *Queue) mineLocked(user string) []*entry {
	es := slices.Clone(q.byUser[user])
	slices.SortFunc(es, func(a, b *entry) int {
		ar, br := a.status == workshop.StatusRunning, b.status == workshop.StatusRunning
		switch {
		case ar && br:
			return a.started.Compare(b.started)
		case ar:
			return -1
		case br:
			return 1
		case a.priority != b.priority:
			return a.priority - b.priority
		}
		return byOrder(a, b.order)
	})
	return es
}

// Place is where a participant stands in the queue.
type Place struct {
	Pending int `json:"pending"`
	Running int `json:"running"`
	// Position is the 1-based dispatch place of their next pending job (0:
	// none pending), and ETASeconds its estimated wait.
	Position   int      `json:"position"`
	ETASeconds *float64 `json:"eta_seconds"`
}

// Place returns where user stands, from memory: cheap enough to answer
// every socket message.
func (q *Queue) Place(user string) Place {
	q.mu.Lock()
	defer q.mu.Unlock()
	var p Place
	var first *entry
	for _, e := range q.byUser[user] {
		if e.status != workshop.StatusPending {
			p.Running++
			continue
		}
		p.Pending++
		if first == nil || e.priority < first.priority || (e.priority == first.priority && e.order < first.order) {
			first = e
		}
	}
	if first != nil {
		p.Position = q.position(first)
		p.ETASeconds = q.eta(p.Position)
	}
	return p
}

// Places returns every participant's place, for telling a whole room
// where they stand; participants without active jobs are absent. The room
// asks every second under load, so it does not walk the dispatch order:
// a participant's first job comes in the first round of the highest class
// they have jobs in, at their rank in that class's rotation (in a first
// in, first out class, at its place in the line), after every job of the
// classes above. Only those higher classes (moved and raised jobs: few)
// are simulated, for how they reshuffle the rotation.
func (q *Queue) Places() map[string]Place {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]Place, len(q.byUser))
	before := 0
	for i, c := range q.classes {
		if len(c.fifo) == 0 {
			continue
		}
		fifo := q.mode == workshop.ModeFIFO || i == 0
		lines := c.lineRefs() // first in, first out: placed by their first job
		if !fifo {
			lines = c.rotation(q.servedBefore(i))
		}
		for rank, l := range lines {
			p := out[l.user]
			if p.Pending == 0 { // first seen in this class: their first job is here
				at := rank
				if fifo {
					at, _ = slices.BinarySearchFunc(c.fifo, l.jobs[0].order, byOrder)
				}
				p.Position = before + at + 1
				p.ETASeconds = q.eta(p.Position)
			}
			p.Pending += len(l.jobs)
			out[l.user] = p
		}
		before += len(c.fifo)
	}
	for u, es := range q.byUser {
		p := out[u]
		p.Running = len(es) - p.Pending // active entries are pending or running
		out[u] = p
	}
	return out
}

// Counts returns a participant's pending and running job counts.
func (q *Queue) Counts(user string) (pending, running int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.byUser[user] {
		if e.status == workshop.StatusPending {
			pending++
		} else {
			running++
		}
	}
	return pending, running
}

// Paused reports whether dispatch is paused.
func (q *Queue) Paused() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.paused
}

// Status is a summary of the queue.
type Status struct {
	Mode   workshop.QueueMode         `json:"mode"`
	Paused bool                       `json:"paused"`
	Counts map[workshop.JobStatus]int `json:"counts"`
}

// Status summarises the queue.
func (q *Queue) Status() Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	counts := map[workshop.JobStatus]int{
		workshop.StatusPending: 0, workshop.StatusRunning: 0,
		workshop.StatusCompleted: 0, workshop.StatusFailed: 0, workshop.StatusCancelled: 0,
	}
	counts[workshop.StatusRunning] = len(q.running)
	counts[workshop.StatusPending] = len(q.active) - len(q.running)
	for st, n := range q.finished {
		counts[st] += n
	}
	return Status{Mode: q.mode, Paused: q.paused, Counts: counts}
}

func (q *Queue) publish(typ string, j *workshop.Job) {
	if !q.bus.HasSubscribers() {
		return
	}
	c := *j
	c.Workflow = nil // events go to many sockets; the graph is fetched on demand
	q.bus.Publish(Event{Type: typ, Job: &c})
}

// Pruned is a job Prune deleted, for removing its files.
type Pruned struct{ ID, UserID string }

// pruneBatch is how many jobs Prune reads and deletes per transaction, so
// that it never holds a long read transaction or one huge write, and
// submissions keep committing between its batches.
const pruneBatch = 500

// Prune deletes finished jobs created before cutoff and returns them.
func (q *Queue) Prune(ctx context.Context, cutoff time.Time) ([]Pruned, error) {
	var out []Pruned
	for after := ""; ; {
		batch, full, err := q.prunable(cutoff, &after)
		if err != nil || len(batch) == 0 {
			return out, err
		}
		err = q.db.Write(ctx, func(tx *store.Tx) error {
			for _, j := range batch {
				if err := tx.DeleteJob(j.ID); err != nil && workshop.ErrorCode(err) != workshop.ENOTFOUND {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		q.mu.Lock()
		for _, j := range batch {
			q.finished[j.Status]--
			out = append(out, Pruned{ID: j.ID, UserID: j.UserID})
		}
		q.mu.Unlock()
		if !full {
			return out, nil
		}
	}
}

// PruneCount is how many jobs Prune would delete with this cutoff.
func (q *Queue) PruneCount(cutoff time.Time) (int, error) {
	n := 0
	for after := ""; ; {
		batch, full, err := q.prunable(cutoff, &after)
		n += len(batch)
		if err != nil || !full {
			return n, err
		}
	}
}

// prunable reads, in one short read transaction, up to pruneBatch finished
// jobs created before cutoff, from just after the job id *after, which it
// moves on; full says it stopped at pruneBatch, so more may follow.
func (q *Queue) prunable(cutoff time.Time, after *string) (batch []*workshop.Job, full bool, err error) {
	err = q.db.View(func(tx *store.Tx) error {
		return tx.EachJobAfter(*after, func(j *workshop.Job) bool {
			if !j.CreatedAt.Before(cutoff) {
				return false // ids are time-ordered: the rest are newer
			}
			*after = j.ID
			if j.Status.Finished() {
				batch = append(batch, j)
			}
			full = len(batch) == pruneBatch
			return !full
		})
	})
	return batch, full, err
}
