package sched

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// Lease waits until a job may be dispatched (the queue is not paused and not
// empty), gives it to worker for ttl and returns it with its workflow. The
// worker must Extend the lease before it ends, and finish the job with
// Complete, Fail or Requeue.
func (q *Queue) Lease(ctx context.Context, worker string, ttl time.Duration) (*workshop.Job, error) {
	for {
		q.mu.Lock()
		var e *entry
		if !q.paused {
			e = q.next(worker)
		}
		if e == nil {
			wait := q.changed
			q.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		now := q.now().UTC()
		exp := now.Add(ttl)
		q.removePending(e)
		e.status, e.worker, e.leaseExp, e.started, e.node = workshop.StatusRunning, worker, exp, time.Time{}, ""
		q.running[e.id] = e
		e.attempts++
		q.clock++
		q.setServed(e.user, q.clock)
		clock, user := q.clock, e.user
		var leased *workshop.Job
		done := q.db.Enqueue(func(tx *store.Tx) (err error) {
			leased, err = tx.UpdateJob(e.id, func(j *workshop.Job) error {
				j.Status, j.Worker, j.LeaseExpires, j.StartedAt = workshop.StatusRunning, worker, &exp, nil
				j.Attempts++
				j.Error = nil
				return nil
			})
			if err != nil {
				return err
			}
			return tx.PutServed(user, clock)
		})
		q.mu.Unlock()
		if err := <-done; err != nil {
			q.log.Error("store write failed after a lease", "job", e.id, "err", err)
			return nil, err
		}
		q.publish(EventJobUpdated, leased)
		return leased, nil
	}
}

// holds checks that worker still holds e's lease.
func holds(e *entry, worker string) error {
	if e.status != workshop.StatusRunning || e.worker != worker {
		return workshop.Errorf(workshop.ECONFLICT, "job %s is not leased to %s", e.id, worker)
	}
	return nil
}

// Started records that the engine began executing a leased job (a
// prefetched job waits in the engine's queue until then).
func (q *Queue) Started(ctx context.Context, id, worker string) error {
	_, err := q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		now := q.now().UTC()
		e.started = now
		return func(j *workshop.Job) { j.StartedAt = &now }, nil
	})
	return err
}

// Executing records which node of a leased job its engine is executing,
// in memory only (a node takes seconds; a restart forgets it until the
// next), so that a cancel says where the job stopped.
func (q *Queue) Executing(id, worker, node string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e := q.active[id]; e != nil && holds(e, worker) == nil {
		e.node = node
	}
}

// SetEngineID records the id the engine gave a leased job, when it differs.
func (q *Queue) SetEngineID(ctx context.Context, id, worker, engineID string) error {
	_, err := q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		return func(j *workshop.Job) { j.EngineID = engineID }, nil
	})
	return err
}

// LeasedBy returns the jobs worker holds, for reconciling with its engine
// after a reconnect or a restart.
func (q *Queue) LeasedBy(worker string) []*workshop.Job {
	q.mu.Lock()
	var ids []string
	for id, e := range q.running {
		if e.worker == worker {
			ids = append(ids, id)
		}
	}
	q.mu.Unlock()
	var out []*workshop.Job
	q.db.View(func(tx *store.Tx) error {
		for _, id := range ids {
			if j, err := tx.Job(id); err == nil {
				out = append(out, j)
			}
		}
		return nil
	})
	return out
}

// Leases returns the ids of the jobs worker holds, from memory, and when
// the last of those leases runs out: then they go back to the queue.
func (q *Queue) Leases(worker string) (ids []string, until time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, e := range q.running {
		if e.worker == worker {
			ids = append(ids, id)
			if e.leaseExp.After(until) {
				until = e.leaseExp
			}
		}
	}
	slices.Sort(ids)
	return ids, until
}

// LeaseHolders lists the workers that hold a lease on a job.
func (q *Queue) LeaseHolders() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, e := range q.running {
		if e.worker != "" && !seen[e.worker] {
			seen[e.worker] = true
			out = append(out, e.worker)
		}
	}
	return out
}

// Extend renews worker's lease on job id for ttl from now. Leases live in
// memory only: renewing one costs no disk write, and after a restart every
// running job gets RestartGrace anyway.
func (q *Queue) Extend(ctx context.Context, id, worker string, ttl time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.active[id]
	if e == nil {
		return workshop.Errorf(workshop.ECONFLICT, "job %s is no longer active", id)
	}
	if err := holds(e, worker); err != nil {
		return err
	}
	e.leaseExp = q.now().UTC().Add(ttl)
	return nil
}

// Complete finishes a leased job with its result. A worker that lost the
// lease (cancelled, requeued) gets ECONFLICT and must discard the result, so
// a job never has two results.
func (q *Queue) Complete(ctx context.Context, id, worker string, res *workshop.Result) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		now := q.now().UTC()
		started := e.started
		if started.IsZero() {
			started = now // finished from cache before it was seen starting
		} else {
			q.observeRun(now.Sub(started))
		}
		q.finish(e, workshop.StatusCompleted)
		return func(j *workshop.Job) {
			j.Status, j.CompletedAt, j.LeaseExpires, j.Result, j.Error = workshop.StatusCompleted, &now, nil, res, nil
			if j.StartedAt == nil {
				j.StartedAt = &started
			}
		}, nil
	})
}

// Fail finishes a leased job as failed, keeping the engine's error.
func (q *Queue) Fail(ctx context.Context, id, worker string, jerr *workshop.JobError) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		now := q.now().UTC()
		q.finish(e, workshop.StatusFailed)
		return func(j *workshop.Job) {
			j.Status, j.CompletedAt, j.LeaseExpires, j.Error = workshop.StatusFailed, &now, nil, jerr
		}, nil
	})
}

// Requeue gives a leased job back to the queue, at its old place, because
// its worker lost it (tunnel gone, engine crashed). The loss is kept with
// the job, which goes to another worker if one can take it. After
// MaxAttempts dispatches it fails instead, with reason.
func (q *Queue) Requeue(ctx context.Context, id, worker, reason string) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		return q.requeue(e, reason, &workshop.Failure{Worker: worker, Reason: FailureLost, Message: reason}), nil
	})
}

// FailureLost is the Failure reason of a job its instance lost.
const FailureLost = "lost"

// RetryElsewhere ends a dispatch that failed for a reason of the
// instance's own (f: out of memory, a node it lacks): the job goes back to
// its place to run on another worker. When every usable worker has failed
// it, or it is out of attempts, it fails instead, with jerr (what the
// engine said) and where it was tried. The returned job says which.
func (q *Queue) RetryElsewhere(ctx context.Context, id, worker string, f workshop.Failure, jerr *workshop.JobError) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		f.Worker = worker
		tried := append(slices.Clone(e.avoid), worker)
		if q.anyUntried(e, tried) {
			return q.requeue(e, fmt.Sprintf("%s on %s; trying another GPU instance", f.Message, worker), &f), nil
		}
		now := q.now().UTC()
		q.finish(e, workshop.StatusFailed)
		final := *jerr
		final.Message = fmt.Sprintf("%s (failed on every GPU instance that can take jobs: %s)", jerr.Message, strings.Join(uniq(tried), ", "))
		return func(j *workshop.Job) {
			f.At = now
			j.Failures = append(j.Failures, f)
			j.Status, j.CompletedAt, j.LeaseExpires, j.Error = workshop.StatusFailed, &now, nil, &final
		}, nil
	})
}

func uniq(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// Release gives back a leased job that never reached an engine (its worker
// was drained or lost its instance between the lease and the hand-over): it
// returns to its place without using up an attempt.
func (q *Queue) Release(ctx context.Context, id, worker, reason string) (*workshop.Job, error) {
	return q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
		if err := holds(e, worker); err != nil {
			return nil, err
		}
		e.attempts--
		mutate := q.requeue(e, reason, nil)
		return func(j *workshop.Job) { mutate(j); j.Attempts-- }, nil
	})
}

// requeue moves a running entry back to pending or, out of attempts, to
// failed; f, when set, is the instance-side failure that ended the
// dispatch, kept with the job. mu held.
func (q *Queue) requeue(e *entry, reason string, f *workshop.Failure) func(*workshop.Job) {
	now := q.now().UTC()
	record := func(j *workshop.Job) {}
	if f != nil {
		if !slices.Contains(e.avoid, f.Worker) {
			e.avoid = append(e.avoid, f.Worker)
		}
		failure := *f
		failure.At = now
		record = func(j *workshop.Job) { j.Failures = append(j.Failures, failure) }
	}
	if e.attempts >= q.cfg.MaxAttempts {
		q.finish(e, workshop.StatusFailed)
		msg := fmt.Sprintf("%s: gave up after %d attempts", reason, e.attempts)
		// Worker stays: where it last failed, as a failed job's record says.
		return func(j *workshop.Job) {
			record(j)
			j.Status, j.CompletedAt, j.LeaseExpires = workshop.StatusFailed, &now, nil
			j.Error = &workshop.JobError{Type: "attempts_exhausted", Message: msg}
		}
	}
	e.status, e.worker, e.leaseExp = workshop.StatusPending, "", time.Time{}
	delete(q.running, e.id)
	q.addPending(e)
	q.pendingBy[e.user]++
	q.dirty()
	if !q.paused {
		q.notify()
	}
	return func(j *workshop.Job) {
		record(j)
		j.Status, j.LeaseExpires, j.Worker, j.StartedAt, j.EngineID = workshop.StatusPending, nil, "", nil, ""
		j.Error = &workshop.JobError{Type: "requeued", Message: reason}
	}
}

// ExpireLeases requeues every running job whose lease ended before now and
// returns their ids. Call it periodically (Run does).
func (q *Queue) ExpireLeases(ctx context.Context) []string {
	q.mu.Lock()
	now := q.now()
	var ids []string
	for id, e := range q.running {
		if !e.leaseExp.IsZero() && e.leaseExp.Before(now) {
			ids = append(ids, id)
		}
	}
	q.mu.Unlock()
	var expired []string
	for _, id := range ids {
		_, err := q.change(ctx, id, func(e *entry) (func(*workshop.Job), error) {
			if e.status != workshop.StatusRunning || !e.leaseExp.Before(q.now()) {
				return nil, workshop.Errorf(workshop.ECONFLICT, "lease renewed")
			}
			reason := "worker " + e.worker + " stopped renewing its lease"
			return q.requeue(e, reason, &workshop.Failure{Worker: e.worker, Reason: FailureLost, Message: reason}), nil
		})
		if err == nil {
			expired = append(expired, id)
		}
	}
	if len(expired) > 0 {
		q.log.Warn("leases expired; jobs requeued", "jobs", expired)
	}
	return expired
}

// Run expires leases every interval until ctx ends.
func (q *Queue) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.ExpireLeases(ctx)
		}
	}
}

// observeRun feeds a run time into the estimate; mu held.
func (q *Queue) observeRun(d time.Duration) {
	if d <= 0 {
		return
	}
	if q.avgRun == 0 {
		q.avgRun = d
		return
	}
	q.avgRun = (q.avgRun*4 + d) / 5
}

// SetNodes tells the queue the node classes of the instances a job may
// wait for (connected ones, and those away for less than their grace), by
// worker: a job goes to an instance that has every class it uses while
// one of these does, else (no instance has them) to any, which will say
// what it lacks. A worker not listed is taken to have every class.
func (q *Queue) SetNodes(nodes map[string]map[string]bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nodes = nodes
	q.notify()
}

// SetWorkers tells the queue which workers take jobs now (connected, not
// drained or set aside): a job that failed on one worker waits for
// another of them, and the count feeds the estimates.
func (q *Queue) SetWorkers(ids []string) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	q.mu.Lock()
	defer q.mu.Unlock()
	if slices.Equal(ids, q.workers) {
		return
	}
	q.workers, q.slots = ids, len(ids)
	// A job that avoided a worker may have no other to wait for now.
	q.notify()
}
