package sched

import workshop "github.com/comfy-workshop/workshop"

// FinishUnwritten finishes job id in memory as Complete does, and stops
// there: the moment before its write commits.
func (q *Queue) FinishUnwritten(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.finish(q.active[id], workshop.StatusCompleted)
}
