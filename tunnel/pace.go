package tunnel

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// A pacer keeps the agent's bulk streams (a large output on its way to the
// server) from filling the queue of a slow link on the way, where every
// small answer and event of the same tunnel would wait behind them: a
// 16 MiB stream window in flight is up to 130 ms of queue on a 1 Gbit/s
// link.
//
// The session is pinged, every 100 ms while a bulk stream sends and every
// few seconds otherwise; a ping slower than the fastest of the last minutes
// is queueing. Once the queue passes the target during a bulk phase, bulk
// writes are paced, as BBR paces a TCP connection: at the fastest rate the
// server took them in the last second, three quarters of the last second's
// median while the queue is over the target (to drain it), and a quarter
// more than the fastest one sample in eight (to find a faster link). A
// delay that is not the link's (a busy CPU on either end) can look like a
// queue: the pace never falls under three quarters of the transfer's rate
// before pacing (nor under minPace), and pacing stops for the transfer
// when the delay does not follow the pace, so such a delay costs a
// transfer at most a quarter of its rate. Without a queue (a fast link,
// however far) it never engages and the stream window alone bounds a
// stream. Small streams are never paced.
type pacer struct {
	ping   func() (time.Duration, error)
	target time.Duration
	window int64 // a stream's window: bytes written may be that far ahead of those delivered
	log    *slog.Logger

	mu       sync.Mutex
	bulk     int           // bulk writers now
	started  chan struct{} // wakes the probe loop when bulk begins
	pacing   bool          // the queue passed twice the target for three pings in this bulk phase
	gaveUp   bool          // draining did not shorten the queue in this phase
	over     int           // samples in a row over the target while pacing
	rate     float64       // bytes/s while pacing
	next     time.Time     // when the next paced byte may go
	sent     int64         // bulk bytes since the last sample
	lastAt   time.Time     // the last sample of this bulk phase
	lastRTT  time.Duration // its round trip
	prevRTT  time.Duration // the sample's before it
	rates    [10]float64   // bytes/s delivered between the last samples
	samples  int           // of this bulk phase
	firstAt  time.Time     // this bulk phase's first sample
	unpaced  int64         // bytes sent between it and the start of pacing
	floor    float64       // bytes/s: three quarters of the rate before pacing
	fastest  [4]time.Duration
	periodAt time.Time // start of fastest[0]'s period
}

const (
	// bulkAfter is how many bytes a stream sends without a pause of
	// bulkPause before it counts as bulk.
	bulkAfter = 1 << 20
	bulkPause = 50 * time.Millisecond
	// paceBurst is how far behind its schedule a paced writer may fall
	// and catch up at once.
	paceBurst = 10 * time.Millisecond
	// probeBulk and probeIdle are the times between pings while bulk
	// streams send, and otherwise (to know the round trip without a queue).
	probeBulk = 100 * time.Millisecond
	probeIdle = 5 * time.Second
	// basePeriod: the round trip without a queue is the fastest ping of
	// the last 3-4 periods, so a route that got slower is learnt in two
	// minutes.
	basePeriod = 30 * time.Second
	// probeEvery: one sample in probeEvery paces a quarter faster.
	probeEvery = 8
	// maxDrain: a queue the link drains at a quarter of its rate (or
	// less, at the floor) is gone in under a second (a 16 MiB window's in
	// five to eight samples); one over the target for more samples in a
	// row is not the link's.
	maxDrain = 15
	// minPace: a link that delivered nothing in a sample (stalled, or a
	// transfer too short for a floor) must not make a paced writer wait
	// for ever: at this pace a 256 KiB write waits a quarter of a second.
	minPace = 1 << 20
)

// DefaultQueueTarget is AgentConfig.QueueTarget's default.
const DefaultQueueTarget = 10 * time.Millisecond

func newPacer(ping func() (time.Duration, error), target time.Duration, window uint32, log *slog.Logger) *pacer {
	return &pacer{ping: ping, target: target, window: int64(window), log: loggerOr(log), started: make(chan struct{}, 1)}
}

// run pings until ctx is done, adjusting the pace.
func (p *pacer) run(ctx context.Context) {
	for {
		t0 := time.Now()
		if rtt, err := p.ping(); err == nil {
			p.sample(time.Now(), rtt)
		}
		p.mu.Lock()
		every := probeIdle
		if p.bulk > 0 {
			every = probeBulk
		}
		p.mu.Unlock()
		t := time.NewTimer(every - time.Since(t0))
		select {
		case <-t.C:
		case <-p.started:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// begin and end bracket a bulk writer; the first begins a bulk phase.
func (p *pacer) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bulk++
	if p.bulk > 1 {
		return
	}
	p.pacing, p.gaveUp, p.sent, p.lastAt, p.samples, p.unpaced = false, false, 0, time.Time{}, 0, 0
	p.lastRTT, p.prevRTT = 0, 0
	select {
	case p.started <- struct{}{}:
	default:
	}
}

func (p *pacer) end() {
	p.mu.Lock()
	p.bulk--
	p.mu.Unlock()
}

// reserve books n bulk bytes at now and returns how long to wait before
// writing them.
func (p *pacer) reserve(now time.Time, n int) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent += int64(n)
	if !p.pacing {
		return 0
	}
	at := p.next
	if floor := now.Add(-paceBurst); at.Before(floor) {
		at = floor
	}
	p.next = at.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return at.Sub(now)
}

// base is the round trip without a queue, as far as the pings know.
func (p *pacer) base() time.Duration {
	var b time.Duration
	for _, f := range p.fastest {
		if f > 0 && (b == 0 || f < b) {
			b = f
		}
	}
	return b
}

// sample takes one ping's round trip, measured at now.
func (p *pacer) sample(now time.Time, rtt time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.periodAt) >= basePeriod {
		copy(p.fastest[1:], p.fastest[:])
		p.fastest[0], p.periodAt = 0, now
	}
	if p.fastest[0] == 0 || rtt < p.fastest[0] {
		p.fastest[0] = rtt
	}
	if p.bulk == 0 {
		return
	}
	last, lastRTT, prevRTT := p.lastAt, p.lastRTT, p.prevRTT
	p.lastAt, p.lastRTT, p.prevRTT = now, rtt, lastRTT
	sent := p.sent
	p.sent = 0
	if last.IsZero() {
		p.firstAt = now
		return
	}
	if !now.After(last) {
		return
	}
	if !p.pacing {
		p.unpaced += sent
	}
	p.rates[p.samples%len(p.rates)] = float64(sent) / now.Sub(last).Seconds()
	p.samples++
	var bw float64 // the fastest delivery of the last second
	for i := range min(p.samples, len(p.rates)) {
		bw = max(bw, p.rates[i])
	}
	// The slower of two pings in a row is a jitter's spike; a standing
	// queue holds both up. Pacing starts on a queue that held up three
	// pings in a row (200 ms): a busy CPU's delays are seldom that long,
	// a link's queue is.
	queue := min(rtt, lastRTT) - p.base()
	switch {
	case p.gaveUp:
		return
	case !p.pacing && (min(queue, prevRTT-p.base()) <= 2*p.target || bw == 0):
		return
	case !p.pacing:
		// Never slower than three quarters of what the transfer got
		// unpaced: that drains a queue of the link's (whose rate it then
		// was), and bounds the cost of a delay that is not the link's but
		// looked like it long enough to start pacing. Of the bytes
		// written, a window's may not have been delivered yet.
		p.floor = float64(max(p.unpaced-p.window, 0)) / now.Sub(p.firstAt).Seconds() * 3 / 4
		p.pacing, p.next, p.over = true, now, 0
		p.log.Debug("pacing large transfers to the server", "queue", queue, "target", p.target, "mb_per_s", int(bw/1e6))
	}
	if queue <= p.target {
		p.over = 0
	} else if p.over++; p.over > maxDrain {
		// Draining did not shorten the queue: it is not the link's (a
		// busy CPU on the way, someone else's transfer), and pacing would
		// only slow this transfer down.
		p.pacing, p.gaveUp = false, true
		p.log.Debug("stopped pacing: the delay does not follow the pace", "queue", queue, "target", p.target)
		return
	}
	switch {
	case queue > p.target:
		// The link is full: what it took is its rate. The median of the
		// last second, since its fastest may be the window's first burst
		// and its last a sample the CPU starved.
		p.rate = p.medianRate() * 3 / 4
	case p.samples%probeEvery == 0:
		p.rate = bw * 5 / 4
	default:
		p.rate = bw
	}
	p.rate = max(p.rate, p.floor, minPace)
}

func (p *pacer) medianRate() float64 {
	r := slices.Clone(p.rates[:min(p.samples, len(p.rates))])
	slices.Sort(r)
	return r[len(r)/2]
}

// pacedWriter is the agent's side of one stream towards the server: its
// bytes are paced while the stream is bulk.
type pacedWriter struct {
	w     io.Writer
	p     *pacer
	ctx   context.Context
	burst int64 // bytes since the last pause
	last  time.Time
	bulk  bool
}

func (pw *pacedWriter) Write(b []byte) (int, error) {
	now := time.Now()
	if now.Sub(pw.last) > bulkPause {
		pw.burst = 0
		pw.done()
	}
	pw.burst += int64(len(b))
	if !pw.bulk && pw.burst > bulkAfter {
		pw.bulk = true
		pw.p.begin()
	}
	if pw.bulk {
		if d := pw.p.reserve(now, len(b)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-pw.ctx.Done():
				t.Stop()
			}
		}
	}
	n, err := pw.w.Write(b)
	pw.last = time.Now()
	return n, err
}

// done ends the writer's bulk phase, if it is in one.
func (pw *pacedWriter) done() {
	if pw.bulk {
		pw.bulk = false
		pw.p.end()
	}
}
