package sched_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/comfy-workshop/workshop/sched"
)

// BenchmarkPlaces is the room's once-a-second question (where does every
// participant stand) over a long queue: 40,000 pending jobs of 200
// participants. With one priority in use it sorts the participants; with
// a second one it also simulates the higher class (200 jobs). The queue's
// lock is held throughout, so submissions wait for it.
//
//	go test ./sched -run '^$' -bench Places
func BenchmarkPlaces(b *testing.B) {
	const users, each = 200, 200
	q, _ := openQueue(b, b.TempDir(), sched.Config{})
	fill := func(n, prio int) {
		var wg sync.WaitGroup
		for u := range users {
			wg.Add(1)
			go func() { // concurrent, so that the store commits in groups
				defer wg.Done()
				for range n {
					s := sched.Submission{UserID: fmt.Sprintf("user%03d", u), Workflow: graph, Priority: &prio}
					if _, err := q.Submit(context.Background(), s); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	places := func(b *testing.B) {
		for range b.N {
			if p := q.Places(); len(p) != users {
				b.Fatalf("%d places", len(p))
			}
		}
	}
	fill(each, 2)
	b.Run("priorities=1", places)
	fill(1, 1) // one job each at a higher priority
	b.Run("priorities=2", places)
}
