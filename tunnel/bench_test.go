package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				for left := size; left > 0; {
					n := min(left, int64(len(block)))
					if _, err := c.Write(block[:n]); err != nil {
						return
					}
					left -= n
				}
			})
		}
	})
	return ln.Addr().String()
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
