package sched_test

import (
	"testing"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
)

// A participant's subscription gets their own events and the room-wide
// ones it asked for, never another participant's; an unscoped one gets
// everything; a full one is dropped without blocking the publisher.
func TestBusScopes(t *testing.T) {
	b := sched.NewBus()
	ann := b.SubscribeUser("ann", 8, []string{sched.EventWorkers}, nil)
	bob := b.SubscribeUser("bob", 8, []string{sched.EventWorkers, sched.EventAnnouncement}, func(e sched.Event) bool { return e.Type != sched.EventJobProgress })
	all := b.Subscribe(8, nil)
	tiny := b.SubscribeUser("ann", 1, []string{sched.EventWorkers}, nil)

	b.Publish(sched.Event{Type: sched.EventEngine, UserID: "ann"})
	b.Publish(sched.Event{Type: sched.EventJobUpdated, Job: &workshop.Job{UserID: "bob"}})
	b.Publish(sched.Event{Type: sched.EventJobProgress, Progress: &sched.Progress{UserID: "bob"}})
	b.Publish(sched.Event{Type: sched.EventWorkers})
	b.Publish(sched.Event{Type: sched.EventAnnouncement})

	got := func(s *sched.Subscription) []string {
		var out []string
		for {
			select {
			case e, ok := <-s.C:
				if !ok {
					return append(out, "closed")
				}
				out = append(out, e.Type)
			default:
				return out
			}
		}
	}
	check := func(name string, s *sched.Subscription, want ...string) {
		t.Helper()
		g := got(s)
		if len(g) != len(want) {
			t.Errorf("%s got %v, want %v", name, g, want)
			return
		}
		for i := range g {
			if g[i] != want[i] {
				t.Errorf("%s got %v, want %v", name, g, want)
				return
			}
		}
	}
	check("ann", ann, sched.EventEngine, sched.EventWorkers)
	check("bob", bob, sched.EventJobUpdated, sched.EventWorkers, sched.EventAnnouncement)
	check("all", all, sched.EventEngine, sched.EventJobUpdated, sched.EventJobProgress, sched.EventWorkers, sched.EventAnnouncement)
	check("tiny", tiny, sched.EventEngine, "closed")

	tiny.Close()
	ann.Close()
	bob.Close()
	all.Close()
	ann.Close() // twice is harmless
	if b.HasSubscribers() {
		t.Error("subscribers left after closing all")
	}
}
