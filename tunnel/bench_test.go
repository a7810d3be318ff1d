package tunnel

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchBytes is the transfer size: 1 GiB, or TUNNEL_BENCH_BYTES.
func benchBytes(b *testing.B) int64 {
	if s := os.Getenv("TUNNEL_BENCH_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("TUNNEL_BENCH_BYTES: %v", err)
		}
		return n
	}
	return 1 << 30
}

// sourceServer is an instance that sends size bytes on every connection
// and closes it, as ComfyUI's /view streams a file.
func sourceServer(b *testing.B, size int64) string {
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i)
	}
	return tcpServer(b, func(c net.Conn) {
		for left := size; left > 0; {
			n := min(left, int64(len(block)))
			if _, err := c.Write(block[:n]); err != nil {
				return
			}
			left -= n
		}
	})
}

// drain reads c to EOF the same way for every path and returns MB/s.
func drain(b *testing.B, c net.Conn, size int64) float64 {
	defer c.Close()
	buf := make([]byte, 256<<10)
	start := time.Now()
	var got int64
	for {
		n, err := c.Read(buf)
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatalf("after %d bytes: %v", got, err)
		}
	}
	el := time.Since(start)
	if got != size {
		b.Fatalf("got %d bytes, want %d", got, size)
	}
	return float64(size) / 1e6 / el.Seconds()
}

// BenchmarkTransfer compares, in one run, one large transfer (1 GiB by
// default) from an instance to the server over plain loopback TCP, through
// the tunnel, and through the tunnel over a relay that adds 25 ms each way
// (50 ms round trip).
//
//	go test -run '^$' -bench Transfer -benchtime 1x ./tunnel/
//
// TUNNEL_BENCH_BYTES sets another size; TUNNEL_BENCH_NEAR_ONLY=1 skips the
// delayed path (for profiling the tunnel itself).
func BenchmarkTransfer(b *testing.B) {
	size := benchBytes(b)
	src := sourceServer(b, size)
	srv, ts := startServer(b, ServerConfig{})
	startAgent(b, AgentConfig{ServerURL: ts.URL, Name: "near", Instances: []Instance{{Name: "0", Addr: src, URL: "tcp://" + src}}})
	rl := newRelay(b, ts.Listener.Addr().String(), 25*time.Millisecond)
	startAgent(b, AgentConfig{ServerURL: rl.URL(), Name: "far", Instances: []Instance{{Name: "0", Addr: src, URL: "tcp://" + src}}})
	ctx := context.Background()
	for _, name := range []string{"near", "far"} {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := srv.WaitAgent(wctx, name); err != nil {
			b.Fatal(err)
		}
		cancel()
	}

	var tcp, tun, far float64
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", src)
		if err != nil {
			b.Fatal(err)
		}
		tcp += drain(b, c, size)

		c, err = srv.DialInstance(ctx, "near", "0")
		if err != nil {
			b.Fatal(err)
		}
		tun += drain(b, c, size)

		if os.Getenv("TUNNEL_BENCH_NEAR_ONLY") != "" {
			continue
		}
		c, err = srv.DialInstance(ctx, "far", "0")
		if err != nil {
			b.Fatal(err)
		}
		far += drain(b, c, size)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(tcp/n, "tcp_MB/s")
	b.ReportMetric(tun/n, "tunnel_MB/s")
	b.ReportMetric(100*tun/tcp, "tunnel_%_of_tcp")
	b.ReportMetric(far/n, "rtt50ms_MB/s")
	b.ReportMetric(0, "ns/op")
	fmt.Fprintf(os.Stderr, "transfer of %d MiB: plain TCP %.0f MB/s, tunnel %.0f MB/s (%.0f%%), tunnel at 50 ms RTT %.0f MB/s\n",
		size>>20, tcp/n, tun/n, 100*tun/tcp, far/n)
}

// tickServer is an instance that, on every connection, sends a 64-byte
// message every interval carrying the time it was sent, as an instance's
// /ws sends the events of the job it runs.
func tickServer(b *testing.B, interval time.Duration) string {
	return tcpServer(b, func(c net.Conn) {
		msg := make([]byte, 64)
		for t := time.NewTicker(interval); ; <-t.C {
			binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
			if _, err := c.Write(msg); err != nil {
				t.Stop()
				return
			}
		}
	})
}

// latencies collects durations from several goroutines.
type latencies struct {
	mu sync.Mutex
	v  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.v = append(l.v, d); l.mu.Unlock() }

func (l *latencies) pct(p float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.v) == 0 {
		return 0
	}
	slices.Sort(l.v)
	return float64(l.v[int(p*float64(len(l.v)-1))].Microseconds()) / 1000
}

// BenchmarkSmallUnderBulk measures, through one agent's tunnel over a relay
// adding 50 ms of round trip, what other work on the same GPU host sees
// while a large output (1 GiB by default) streams from it: small requests
// (200 bytes each way) on a new stream each, as the server's ComfyUI
// client opens them, and on one kept stream; and the delay of events
// another instance sends every 10 ms. Each is measured with the tunnel
// idle first, then during the transfer (b.N transfers). The relay is
// either latency alone (link=unlimited) or also a 1 Gbit/s link with a
// queue in front of it (link=125MB/s), where bytes in flight wait.
//
//	go test -run '^$' -bench SmallUnderBulk -benchtime 1x ./tunnel/
func BenchmarkSmallUnderBulk(b *testing.B) {
	for _, rate := range []float64{0, 125e6} {
		name := "link=unlimited"
		if rate > 0 {
			name = fmt.Sprintf("link=%.0fMB/s", rate/1e6)
		}
		b.Run(name, func(b *testing.B) { smallUnderBulk(b, rate) })
	}
}

func smallUnderBulk(b *testing.B, rate float64) {
	size := benchBytes(b)
	bulk, small, ticks := sourceServer(b, size), echoServer(b), tickServer(b, 10*time.Millisecond)
	var sc SessionConfig
	if w, _ := strconv.Atoi(os.Getenv("TUNNEL_BENCH_WINDOW")); w > 0 {
		sc.StreamWindow = uint32(w)
	}
	srv, ts := startServer(b, ServerConfig{Session: sc})
	rl := newRelay(b, ts.Listener.Addr().String(), 25*time.Millisecond)
	rl.rate = rate
	startAgent(b, AgentConfig{ServerURL: rl.URL(), Name: "far", Session: sc, Instances: []Instance{
		{Name: "bulk", Addr: bulk, URL: "tcp://" + bulk},
		{Name: "small", Addr: small, URL: "tcp://" + small},
		{Name: "events", Addr: ticks, URL: "tcp://" + ticks},
	}})
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(wctx, "far"); err != nil {
		b.Fatal(err)
	}
	req := make([]byte, 200)
	roundTrip := func(c net.Conn) error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, len(req)))
		return err
	}
	kept, err := srv.DialInstance(ctx, "far", "small")
	if err != nil {
		b.Fatal(err)
	}
	defer kept.Close()
	// measure runs the small work at 20 requests/s of each kind until stop.
	measure := func(stop <-chan struct{}) (fresh, reused, events *latencies) {
		fresh, reused, events = &latencies{}, &latencies{}, &latencies{}
		ev, err := srv.DialInstance(ctx, "far", "events")
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			msg := make([]byte, 64)
			for {
				if _, err := io.ReadFull(ev, msg); err != nil {
					return
				}
				events.add(time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(msg)))))
			}
		})
		for tick := time.NewTicker(50 * time.Millisecond); ; <-tick.C {
			select {
			case <-stop:
				tick.Stop()
				ev.Close()
				wg.Wait()
				return
			default:
			}
			wg.Go(func() {
				t0 := time.Now()
				c, err := srv.DialInstance(ctx, "far", "small")
				if err == nil {
					err = roundTrip(c)
					c.Close()
				}
				if err != nil {
					b.Error(err)
				}
				fresh.add(time.Since(t0))
			})
			t0 := time.Now()
			if err := roundTrip(kept); err != nil {
				b.Fatal(err)
			}
			reused.add(time.Since(t0))
		}
	}
	report := func(when string, fresh, reused, events *latencies) {
		for _, m := range []struct {
			name string
			l    *latencies
		}{{"new-stream", fresh}, {"kept-stream", reused}, {"event", events}} {
			b.ReportMetric(m.l.pct(0.5), when+"-"+m.name+"-p50-ms")
			b.ReportMetric(m.l.pct(0.99), when+"-"+m.name+"-p99-ms")
		}
	}

	idle := make(chan struct{})
	time.AfterFunc(3*time.Second, func() { close(idle) })
	idleF, idleR, idleE := measure(idle)

	var mbs float64
	b.ResetTimer() // (which drops metrics reported so far)
	report("idle", idleF, idleR, idleE)
	for range b.N {
		stop := make(chan struct{})
		go func() {
			c, err := srv.DialInstance(ctx, "far", "bulk")
			if err != nil {
				b.Error(err)
			} else {
				mbs += drain(b, c, size)
			}
			close(stop)
		}()
		f, r, e := measure(stop)
		report("bulk", f, r, e)
	}
	b.StopTimer()
	b.ReportMetric(mbs/float64(b.N), "bulk-MB/s")
	b.ReportMetric(0, "ns/op")
}
