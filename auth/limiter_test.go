package auth

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Take counts before the guarded work: of many parallel tries, exactly
// max pass.
func TestLimiterTakeIsAtomic(t *testing.T) {
	l := NewLimiter(10, time.Minute)
	var passed atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if l.Take("1.2.3.4") {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	if passed.Load() != 10 {
		t.Fatalf("%d passed, want 10", passed.Load())
	}
	if l.Take("1.2.3.4") || !l.Take("5.6.7.8") {
		t.Error("the limit is per key")
	}
	l.Reset("1.2.3.4")
	if !l.Take("1.2.3.4") {
		t.Error("Reset keeps the count")
	}
}

func TestLimiterWindowAndBound(t *testing.T) {
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	l := NewLimiter(2, time.Minute).WithMaxKeys(100)
	l.now = func() time.Time { return now }
	if !l.Take("a") || !l.Take("a") || l.Take("a") {
		t.Fatal("two in a window, not three")
	}
	now = now.Add(time.Minute)
	if !l.Take("a") {
		t.Fatal("a new window starts fresh")
	}
	for i := range 1000 {
		l.Take(fmt.Sprint("k", i))
		if l.Len() > 100 {
			t.Fatalf("%d keys tracked after %d", l.Len(), i)
		}
	}
}
