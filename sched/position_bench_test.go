package sched

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// BenchmarkPosition is the place a submission is answered with, in a
// room of 2,000 participants with 10 jobs pending each: under load every
// submission changes the order, so each answer is computed afresh, with
// the queue's lock held.
//
//	go test ./sched -run '^$' -bench Position
func BenchmarkPosition(b *testing.B) {
	const users, each = 2000, 10
	db, err := store.Open(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	q, err := Open(db, Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	prio := q.class(workshop.PriorityDefault, false)
	var newest []*entry
	seq := uint64(0)
	for i := range each {
		for u := range users {
			seq++
			e := &entry{id: fmt.Sprint(seq), user: fmt.Sprintf("user%04d", u), priority: prio, seq: seq, order: int64(seq), status: workshop.StatusPending}
			if u%3 == 0 && i == 0 {
				q.served[e.user] = uint64(u) // some were served before
			}
			q.addActive(e)
			q.addPending(e)
			if i == each-1 {
				newest = append(newest, e)
			}
		}
	}
	b.ResetTimer()
	for i := range b.N {
		q.dirty()
		if q.position(newest[i%users]) <= 0 {
			b.Fatal("no position")
		}
	}
}
