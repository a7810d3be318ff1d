package tunnel

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/benchkit"
)

// benchBytes is the transfer size: 1 GiB, or TUNNEL_BENCH_BYTES.
func benchBytes(b *testing.B) int64 { return int64(benchkit.EnvInt(b, "TUNNEL_BENCH_BYTES", 1<<30)) }

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
	t := benchkit.NewTable(b, fmt.Sprintf("One transfer of %d MiB from an instance to the server (mean of %d)", size>>20, b.N),
		"path", "MB/s", "of plain TCP")
	t.Set("plain loopback TCP", tcp/n, "100%")
	t.Set("through the tunnel", tun/n, fmt.Sprintf("%.0f%%", 100*tun/tcp))
	if far > 0 {
		t.Set("through the tunnel, 50 ms round trip", far/n, fmt.Sprintf("%.0f%%", 100*far/tcp))
	}
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

// BenchmarkSmallUnderBulk measures, through one agent's tunnel over a relay
// adding 50 ms of round trip, what other work on the same GPU host sees
// while a large output (1 GiB by default) streams from it: small requests
// (200 bytes each way, 20 a second) on a new stream each, as the server's
// ComfyUI client opens them, and on one kept stream; and the delay of
// events another instance sends every 10 ms. Each is measured with the
// tunnel idle first, then during the transfer (b.N transfers). The relay is
// either latency alone (link=unlimited) or also a 1 Gbit/s link with a
// queue in front of it (link=125MB/s), where bytes in flight wait; the
// agent paces its bulk streams (pacing=on, as shipped) or not.
//
//	go tool task bench-tunnel
//	go test -run '^$' -bench SmallUnderBulk -benchtime 1x ./tunnel/
//
// TUNNEL_BENCH_BYTES sets the transfer's size, TUNNEL_BENCH_WINDOW the
// stream window (bytes).
func BenchmarkSmallUnderBulk(b *testing.B) {
	t := benchkit.NewTable(b, fmt.Sprintf("Small work beside a %d MiB transfer through one tunnel at 50 ms round trip (p50 / p99 ms)", benchBytes(b)>>20),
		"link", "agent paces bulk", "tunnel", "transfer MB/s", "events", "kept stream", "new stream")
	for _, rate := range []float64{0, 125e6} {
		link := "unlimited"
		if rate > 0 {
			link = fmt.Sprintf("%.0fMB/s", rate/1e6)
		}
		for _, pace := range []bool{false, true} {
			name := fmt.Sprintf("link=%s/pacing=%s", link, map[bool]string{false: "off", true: "on"}[pace])
			b.Run(name, func(b *testing.B) {
				row := func(when, mbs string, m smallWork) {
					t.Row(name+when, link, map[bool]string{false: "no", true: "yes"}[pace], when, mbs, m.events.cell(), m.kept.cell(), m.fresh.cell())
				}
				smallUnderBulk(b, rate, pace, row)
			})
		}
	}
}

// smallWork is what measure times.
type smallWork struct{ fresh, kept, events *latencies }

type latencies struct{ benchkit.Latencies }

func (l *latencies) cell() string {
	return fmt.Sprintf("%.1f / %.1f", benchkit.MS(l.Pct(0.5)), benchkit.MS(l.Pct(0.99)))
}

func (l *latencies) report(b *testing.B, name string) {
	b.ReportMetric(benchkit.MS(l.Pct(0.5)), name+"-p50-ms")
	b.ReportMetric(benchkit.MS(l.Pct(0.99)), name+"-p99-ms")
}

func smallUnderBulk(b *testing.B, rate float64, pace bool, row func(when, mbs string, m smallWork)) {
	size := benchBytes(b)
	bulk, small, ticks := sourceServer(b, size), echoServer(b), tickServer(b, 10*time.Millisecond)
	sc := SessionConfig{StreamWindow: uint32(benchkit.EnvInt(b, "TUNNEL_BENCH_WINDOW", 0))}
	srv, ts := startServer(b, ServerConfig{Session: sc})
	rl := newRelay(b, ts.Listener.Addr().String(), 25*time.Millisecond)
	rl.rate = rate
	target := time.Duration(-1)
	if pace {
		target = DefaultQueueTarget
	}
	startAgent(b, AgentConfig{ServerURL: rl.URL(), Name: "far", Session: sc, QueueTarget: target, Instances: []Instance{
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
	measure := func(stop <-chan struct{}) smallWork {
		m := smallWork{&latencies{}, &latencies{}, &latencies{}}
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
				m.events.Add(time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(msg)))))
			}
		})
		for tick := time.NewTicker(50 * time.Millisecond); ; <-tick.C {
			select {
			case <-stop:
				tick.Stop()
				ev.Close()
				wg.Wait()
				return m
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
				m.fresh.Add(time.Since(t0))
			})
			t0 := time.Now()
			if err := roundTrip(kept); err != nil {
				b.Fatal(err)
			}
			m.kept.Add(time.Since(t0))
		}
	}
	report := func(when string, m smallWork) {
		m.fresh.report(b, when+"-new-stream")
		m.kept.report(b, when+"-kept-stream")
		m.events.report(b, when+"-event")
	}

	idle := make(chan struct{})
	time.AfterFunc(3*time.Second, func() { close(idle) })
	idleWork := measure(idle)

	var mbs float64
	b.ResetTimer() // (which drops metrics reported so far)
	report("idle", idleWork)
	row("idle", "", idleWork)
	for i := range b.N {
		stop := make(chan struct{})
		var got float64
		go func() {
			c, err := srv.DialInstance(ctx, "far", "bulk")
			if err != nil {
				b.Error(err)
			} else {
				got = drain(b, c, size)
			}
			close(stop)
		}()
		m := measure(stop)
		mbs += got
		report("bulk", m)
		row(fmt.Sprintf("transfer %d", i+1), benchkit.Num(got), m)
	}
	b.StopTimer()
	b.ReportMetric(mbs/float64(b.N), "bulk-MB/s")
	b.ReportMetric(0, "ns/op")
}
