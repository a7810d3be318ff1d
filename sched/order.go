package sched

import (
	"slices"
	"time"

	workshop "github.com/comfy-workshop/workshop"
)

// entry is the in-memory view of an active (pending or running) job: just
// what ordering and leasing need. The full job lives in the store.
type entry struct {
	id       string
	user     string
	priority int // index in Queue.classes
	seq      uint64
	order    int64 // place within its class: seq, or minus the move for jobs moved to the top
	status   workshop.JobStatus
	created  time.Time
	started  time.Time
	attempts int

	worker   string
	leaseExp time.Time
	node     string // the node its engine executes (Executing)
	// avoid lists the workers the job failed on (Job.Failures): it goes
	// to another one while another usable worker exists.
	avoid []string
	// classes are the node classes its workflow uses: it goes to an
	// instance that has them while one is there.
	classes []string
}

// class holds the pending jobs of one priority, in submission order overall
// and per participant.
type class struct {
	fifo []*entry
	// lines are the participants with jobs here, in no order: what the
	// rotation walks, for every submission's position, at a slice's cost
	// per participant rather than a map's (2,000 of them in a room).
	lines []line
	at    map[string]int // participant -> their index in lines
}

// line is one participant's pending jobs in a class, by order, and when
// they were last served (Queue.served, kept in step by setServed).
type line struct {
	user   string
	jobs   []*entry
	served uint64
}

func newClass() *class { return &class{at: map[string]int{}} }

// clock is when l's participant was last served as servedAt says (nil: as
// the line says).
func (l *line) clock(servedAt func(string) uint64) uint64 {
	if servedAt == nil {
		return l.served
	}
	return servedAt(l.user)
}

func byOrder(a *entry, order int64) int {
	switch {
	case a.order < order:
		return -1
	case a.order > order:
		return 1
	}
	return 0
}

// insertSorted keeps s sorted by order. Submissions commit in order, so
// this is nearly always an append.
func insertSorted(s []*entry, e *entry) []*entry {
	if n := len(s); n == 0 || s[n-1].order < e.order {
		return append(s, e)
	}
	i, _ := slices.BinarySearchFunc(s, e.order, byOrder)
	return slices.Insert(s, i, e)
}

func removeSorted(s []*entry, e *entry) []*entry {
	i, ok := slices.BinarySearchFunc(s, e.order, byOrder)
	switch {
	case !ok:
		return s
	case i == 0:
		// Dispatch takes from the front: reslice instead of moving every
		// pending job up one (a long queue's whole line, per dispatch).
		s[0] = nil
		return s[1:]
	}
	return slices.Delete(s, i, i+1)
}

// add puts e in c; served is when its participant was last served, for
// a line of theirs that starts here.
func (c *class) add(e *entry, served uint64) {
	c.fifo = insertSorted(c.fifo, e)
	i, ok := c.at[e.user]
	if !ok {
		i = len(c.lines)
		c.at[e.user] = i
		c.lines = append(c.lines, line{user: e.user, served: served})
	}
	c.lines[i].jobs = insertSorted(c.lines[i].jobs, e)
}

func (c *class) remove(e *entry) {
	c.fifo = removeSorted(c.fifo, e)
	i, ok := c.at[e.user]
	if !ok {
		return
	}
	if s := removeSorted(c.lines[i].jobs, e); len(s) > 0 {
		c.lines[i].jobs = s
		return
	}
	// The participant's last job here: the last line takes their place.
	last := len(c.lines) - 1
	if i != last {
		c.lines[i] = c.lines[last]
		c.at[c.lines[i].user] = i
	}
	c.lines[last] = line{}
	c.lines = c.lines[:last]
	delete(c.at, e.user)
}

// addPending puts a pending entry in its class; mu held.
func (q *Queue) addPending(e *entry) {
	q.classes[e.priority].add(e, q.served[e.user])
}

// setServed records that user was served at clock, in served and in their
// lines; mu held.
func (q *Queue) setServed(user string, clock uint64) {
	q.served[user] = clock
	for _, c := range q.classes {
		if i, ok := c.at[user]; ok {
			c.lines[i].served = clock
		}
	}
}

// rrLess orders participants for round-robin: least recently served first
// (never served counts as earliest), ties by their oldest pending job.
func rrLess(servedA uint64, headA *entry, servedB uint64, headB *entry) bool {
	if servedA != servedB {
		return servedA < servedB
	}
	return headA.order < headB.order
}

// next returns the job worker should run now, or nil: the first in order
// that it may take.
func (q *Queue) next(worker string) *entry {
	for i, c := range q.classes {
		if len(c.fifo) == 0 {
			continue
		}
		if q.mode == workshop.ModeFIFO || i == 0 {
			if e := q.firstFor(c.fifo, worker); e != nil {
				return e
			}
			continue
		}
		var best *entry
		var bestServed uint64
		for i := range c.lines {
			l := &c.lines[i]
			e := q.firstFor(l.jobs, worker)
			if e == nil {
				continue
			}
			if best == nil || rrLess(l.served, e, bestServed, best) {
				best, bestServed = e, l.served
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// firstFor is the first entry of s that worker may take; nearly always
// s[0]. mu held.
func (q *Queue) firstFor(s []*entry, worker string) *entry {
	for _, e := range s {
		if q.mayTake(e, worker) {
			return e
		}
	}
	return nil
}

// mayTake reports whether worker may lease e: not one that lacks a node
// class e needs while an instance that has them is there (or away for
// less than its grace: e waits for it), and not a worker e failed on
// unless no other usable worker that can run it is left to try. mu held.
func (q *Queue) mayTake(e *entry, worker string) bool {
	if !q.runs(worker, e) && q.anyRuns(e) {
		return false
	}
	if len(e.avoid) == 0 || !slices.Contains(e.avoid, worker) {
		return true
	}
	return !q.anyUntried(e, e.avoid)
}

// anyUntried reports whether a usable worker that can run e is not in
// tried; mu held.
func (q *Queue) anyUntried(e *entry, tried []string) bool {
	for _, w := range q.workers {
		if !slices.Contains(tried, w) && q.runs(w, e) {
			return true
		}
	}
	return false
}

// runs reports whether worker's instance has every node class e uses; one
// whose classes are not known is taken to. mu held.
func (q *Queue) runs(worker string, e *entry) bool {
	has, known := q.nodes[worker]
	if !known {
		return true
	}
	for _, c := range e.classes {
		if !has[c] {
			return false
		}
	}
	return true
}

// anyRuns reports whether an instance that can run e is there: a usable
// worker, or one SetNodes lists; mu held.
func (q *Queue) anyRuns(e *entry) bool {
	for _, w := range q.workers {
		if q.runs(w, e) {
			return true
		}
	}
	for w := range q.nodes {
		if q.runs(w, e) {
			return true
		}
	}
	return false
}

// order returns every pending job in the order they will be dispatched,
// assuming no new submissions. It is cached until the queue changes.
func (q *Queue) order() []*entry {
	if !q.orderDirty {
		return q.orderCache
	}
	out, _ := q.simulate(q.orderCache[:0], len(q.classes))
	q.orderCache = out
	q.orderDirty = false
	q.positions = make(map[*entry]int, len(out))
	for i, e := range out {
		q.positions[e] = i + 1
	}
	return out
}

// simulate appends the pending jobs of the classes before upto to out in
// dispatch order, and returns when each participant was last served once
// those are dispatched: serving a participant in a higher class moves them
// back in the rotation of the lower classes. mu held.
func (q *Queue) simulate(out []*entry, upto int) ([]*entry, func(string) uint64) {
	virt := map[string]uint64{}
	clock := q.clock
	servedAt := func(u string) uint64 {
		if v, ok := virt[u]; ok {
			return v
		}
		return q.served[u]
	}
	for i, c := range q.classes[:upto] {
		if len(c.fifo) == 0 {
			continue
		}
		if q.mode == workshop.ModeFIFO || i == 0 {
			for _, e := range c.fifo {
				out = append(out, e)
				clock++
				virt[e.user] = clock
			}
			continue
		}
		lines := c.rotation(servedAt)
		// Rounds: each participant still holding jobs gives one per round, in
		// rotation order, which stays the same from round to round.
		for k := 0; len(lines) > 0; k++ {
			kept := lines[:0]
			for _, l := range lines {
				out = append(out, l.jobs[k])
				clock++
				virt[l.user] = clock
				if len(l.jobs) > k+1 {
					kept = append(kept, l)
				}
			}
			lines = kept
		}
	}
	return out, servedAt
}

// lineRefs is c's lines, in no order.
func (c *class) lineRefs() []*line {
	lines := make([]*line, len(c.lines))
	for i := range c.lines {
		lines[i] = &c.lines[i]
	}
	return lines
}

// rotation is c's lines in round-robin order, as servedAt says when each
// participant was last served (nil: as their lines say).
func (c *class) rotation(servedAt func(string) uint64) []*line {
	lines := c.lineRefs()
	slices.SortFunc(lines, func(a, b *line) int {
		switch {
		case rrLess(a.clock(servedAt), a.jobs[0], b.clock(servedAt), b.jobs[0]):
			return -1
		case rrLess(b.clock(servedAt), b.jobs[0], a.clock(servedAt), a.jobs[0]):
			return 1
		}
		return 0
	})
	return lines
}

// servedBefore returns when each participant was last served as the
// rotation of class p sees it: after the pending jobs of the classes above
// p are dispatched, simulated; nil when none are pending, and the lines'
// own clocks say it. mu held.
func (q *Queue) servedBefore(p int) func(string) uint64 {
	for _, c := range q.classes[:p] {
		if len(c.fifo) > 0 {
			_, servedAt := q.simulate(nil, p)
			return servedAt
		}
	}
	return nil
}

// position is e's 1-based place in the dispatch order. For a job just added
// it avoids rebuilding the whole order: under load every submission dirties
// the cache, and each answer needs its position. Only the classes above
// e's are simulated (moved and raised jobs: few), for how they reshuffle
// the rotation of e's class.
func (q *Queue) position(e *entry) int {
	if !q.orderDirty {
		return q.positions[e]
	}
	before := 0
	for p := 0; p < e.priority; p++ {
		before += len(q.classes[p].fifo)
	}
	c := q.classes[e.priority]
	if q.mode == workshop.ModeFIFO || e.priority == 0 {
		i, _ := slices.BinarySearchFunc(c.fifo, e.order, byOrder)
		return before + i + 1
	}
	// A room polling its jobs between changes would walk every
	// participant per answer: once that walking adds up to a few rebuilds
	// of the order, rebuild it, and answer the next reads from it.
	q.dirtyWork += len(c.lines) + before
	if q.dirtyWork > rebuildAfter*q.pendingLen() {
		q.order()
		return q.positions[e]
	}
	servedAt := q.servedBefore(e.priority)
	me := c.at[e.user]
	mine := c.lines[me].jobs
	k, _ := slices.BinarySearchFunc(mine, e.order, byOrder)
	myServed := c.lines[me].clock(servedAt)
	pos := before
	for i := range c.lines {
		l := &c.lines[i]
		pos += min(len(l.jobs), k) // everyone's jobs from the rounds before e's
		if i != me && len(l.jobs) > k && rrLess(l.clock(servedAt), l.jobs[0], myServed, mine[0]) {
			pos++ // ahead of e in e's own round
		}
	}
	return pos + 1
}

// rebuildAfter is how many times the pending jobs' count the reads after
// a change may walk before position rebuilds the order (a rebuild, with
// its map of positions, costs several steps a job).
const rebuildAfter = 8

func (q *Queue) dirty() { q.orderDirty, q.dirtyWork = true, 0 }

// pendingLen is the number of pending jobs; mu held.
func (q *Queue) pendingLen() int {
	n := 0
	for _, c := range q.classes {
		n += len(c.fifo)
	}
	return n
}
