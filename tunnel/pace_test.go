package tunnel

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// pacerAt drives a pacer by hand: samples every 100 ms of a clock that
// only it moves, each after the bulk writers sent mbps worth of bytes.
type pacerAt struct {
	t   *testing.T
	p   *pacer
	now time.Time
}

func newPacerAt(t *testing.T) *pacerAt {
	p := newPacer(nil, 10*time.Millisecond, DefaultStreamWindow, nil)
	pa := &pacerAt{t: t, p: p, now: time.Unix(1_000_000, 0)}
	pa.p.sample(pa.now, 50*time.Millisecond) // idle: the round trip without a queue
	return pa
}

// step moves the clock 100 ms, books mbps of bulk bytes and samples rtt.
func (pa *pacerAt) step(mbps float64, rtt time.Duration) {
	pa.p.reserve(pa.now, int(mbps*1e6/10))
	pa.now = pa.now.Add(100 * time.Millisecond)
	pa.p.sample(pa.now, rtt)
}

func (pa *pacerAt) state() (pacing bool, rate float64) {
	pa.p.mu.Lock()
	defer pa.p.mu.Unlock()
	return pa.p.pacing, pa.p.rate / 1e6
}

func TestPacerStaysOffWithoutQueue(t *testing.T) {
	pa := newPacerAt(t)
	pa.p.begin()
	for i := range 50 {
		pa.step(200, 50*time.Millisecond+time.Duration(i%7)*time.Millisecond) // jitter under the target
		pa.step(200, 95*time.Millisecond)                                     // a lone spike
	}
	if pacing, _ := pa.state(); pacing {
		t.Fatal("paced without a standing queue")
	}
	if d := pa.p.reserve(pa.now, 1<<20); d != 0 {
		t.Fatalf("a bulk write waits %v without pacing", d)
	}
}

func TestPacerDrainsAStandingQueue(t *testing.T) {
	pa := newPacerAt(t)
	pa.p.begin()
	pa.step(0, 50*time.Millisecond)   // the phase's first sample
	pa.step(300, 50*time.Millisecond) // the window's first burst
	pa.step(125, 90*time.Millisecond) // the link's rate, 40 ms of queue
	pa.step(125, 90*time.Millisecond)
	pacing, _ := pa.state()
	if pacing {
		t.Fatal("paced after two slow pings: a busy CPU's delay can last that long")
	}
	pa.step(125, 90*time.Millisecond)
	pacing, rate := pa.state()
	if !pacing || rate < 0.7*125 || rate > 0.8*125 {
		// A quarter under what the full link took in the last sample.
		t.Fatalf("pacing %v at %.0f MB/s, want a quarter under the link's 125", pacing, rate)
	}
	for range 10 { // the burst leaves the last second's window
		pa.step(125, 55*time.Millisecond)
	}
	if _, rate := pa.state(); rate < 124 || rate > 157 { // at the link's rate, or probing a quarter over
		t.Fatalf("pace %.0f MB/s after the queue drained, want the link's 125", rate)
	}
	// A paced writer waits its turn: 1 MB at 125 MB/s is 8 ms.
	pa.p.mu.Lock()
	pa.p.rate = 125e6
	pa.p.next = pa.now
	pa.p.mu.Unlock()
	pa.p.reserve(pa.now, 1e6)
	if d := pa.p.reserve(pa.now, 1e6); d != 8*time.Millisecond {
		t.Fatalf("second MB waits %v, want 8ms", d)
	}
	// A writer far behind its schedule catches up by paceBurst only.
	if d := pa.p.reserve(pa.now.Add(time.Second), 1e6); d != -paceBurst {
		t.Fatalf("late write: %v", d)
	}
}

func TestPacerGivesUpOnADelayThatIsNotTheLinks(t *testing.T) {
	pa := newPacerAt(t)
	pa.p.begin()
	for range 3 + maxDrain {
		pa.step(150, 120*time.Millisecond) // a busy CPU: the delay stays whatever the pace
	}
	if pacing, _ := pa.state(); pacing {
		t.Fatal("still pacing a transfer the delay does not follow")
	}
	pa.step(150, 120*time.Millisecond)
	if pacing, _ := pa.state(); pacing {
		t.Fatal("paced again in the same bulk phase")
	}
	// A new bulk phase starts afresh.
	pa.p.end()
	pa.p.begin()
	pa.step(150, 120*time.Millisecond)
	pa.step(150, 120*time.Millisecond)
	pa.step(150, 120*time.Millisecond)
	if pacing, _ := pa.state(); !pacing {
		t.Fatal("a new bulk phase did not pace")
	}
}

func TestPacerKeepsThreeQuartersOfTheUnpacedRate(t *testing.T) {
	pa := newPacerAt(t)
	pa.p.begin()
	pa.step(0, 50*time.Millisecond)
	for range 10 {
		pa.step(200, 50*time.Millisecond) // a fast link without a queue
	}
	// A busy CPU holds the pings up and the paced writer falls behind its
	// schedule (late timers): each sample delivers half the pace, which
	// would lower the pace that follows the deliveries, sample by sample.
	for i := range 40 {
		rtt := 90 * time.Millisecond
		if i%4 == 3 {
			rtt = 50 * time.Millisecond
		}
		sent := 200.0
		if pacing, rate := pa.state(); pacing {
			sent = rate / 2
		}
		pa.step(sent, rtt)
		if pacing, rate := pa.state(); pacing && rate < 0.7*200 {
			t.Fatalf("sample %d: pace %.0f MB/s, under three quarters of the unpaced 200 (less a window not yet delivered)", i, rate)
		}
	}
}

func TestPacerNeverStopsAWriter(t *testing.T) {
	pa := newPacerAt(t)
	pa.p.begin()
	pa.step(0, 50*time.Millisecond)
	pa.step(8, 50*time.Millisecond) // a short transfer: under a window, no floor
	for range 3 {
		pa.step(0, 2*time.Second) // then the link stalls: nothing delivered, pings late
	}
	pacing, rate := pa.state()
	if !pacing || rate <= 0 {
		t.Fatalf("pacing %v at %v MB/s", pacing, rate)
	}
	if d := pa.p.reserve(pa.now, 256<<10); d > 0 {
		t.Fatalf("the first write after a stall waits %v", d)
	}
	if d := pa.p.reserve(pa.now, 256<<10); d > 300*time.Millisecond {
		t.Fatalf("a 256 KiB write waits %v on a stalled link: it would not wake when the link comes back", d)
	}
}

func TestPacerBaseForgetsOldRoutes(t *testing.T) {
	pa := newPacerAt(t) // 50 ms
	for range 5 {
		pa.now = pa.now.Add(basePeriod)
		pa.p.sample(pa.now, 80*time.Millisecond)
	}
	if b := pa.p.base(); b != 80*time.Millisecond {
		t.Fatalf("base %v after a slower route for %v, want 80ms", b, 5*basePeriod)
	}
}

func TestPacedWriterBulkOnlyWithoutPauses(t *testing.T) {
	p := newPacer(nil, 10*time.Millisecond, DefaultStreamWindow, nil)
	var sink bytes.Buffer
	pw := &pacedWriter{w: &sink, p: p, ctx: context.Background()}
	chunk := make([]byte, 256<<10)
	for range 16 { // 4 MiB in chunks with a pause before each: events, not bulk
		pw.last = time.Now().Add(-time.Second)
		if _, err := pw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if p.bulk != 0 {
		t.Fatal("a stream with pauses counted as bulk")
	}
	for range 8 { // 2 MiB straight
		pw.last = time.Now()
		if _, err := pw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if p.bulk != 1 {
		t.Fatalf("bulk writers %d after 2 MiB without a pause, want 1", p.bulk)
	}
	pw.done()
	if p.bulk != 0 || sink.Len() != 24*len(chunk) {
		t.Fatalf("after done: bulk %d, %d bytes through", p.bulk, sink.Len())
	}
}
