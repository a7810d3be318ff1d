package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/comfy-workshop/workshop/internal/benchkit"
	"github.com/comfy-workshop/workshop/internal/procstat"
)

// p50 of n timed GETs of url.
func p50(b *testing.B, c *http.Client, url, cookie string, n int) time.Duration {
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("GET", url, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d", url, resp.StatusCode)
		}
		lat = append(lat, time.Since(t0))
	}
	return benchkit.Pct(lat, 0.5)
}

// BenchmarkParticipantSurface compares a cached UI page and object_info
// fetched through the server (participant's cookie, mirror, tunnel for
// revalidation) with the same straight from the simulator.
func BenchmarkParticipantSurface(b *testing.B) {
	s := startStack(b)
	p := s.join(1)
	c := &http.Client{}
	n := max(b.N, 200)
	b.ResetTimer()
	for _, r := range []struct{ name, direct, via string }{
		{"asset", s.sim.base + "/", s.base + "/user/1/"},
		{"object_info", s.sim.base + "/api/object_info", s.base + "/user/1/api/object_info"},
	} {
		p50(b, c, r.via, p.cookie(), 20) // warm the cache
		d := p50(b, c, r.direct, "", n)
		v := p50(b, c, r.via, p.cookie(), n)
		b.ReportMetric(benchkit.MS(d), r.name+"-direct-p50-ms")
		b.ReportMetric(benchkit.MS(v), r.name+"-server-p50-ms")
		b.ReportMetric(benchkit.MS(v-d), r.name+"-added-p50-ms")
	}
}

func rss(b *testing.B, pid int) int64 {
	st, err := procstat.Read(pid)
	if err != nil {
		b.Fatal(err)
	}
	return st.RSS
}

// BenchmarkParticipantSockets opens 1,000 participant sockets (across 20
// seats, so past the default cap of sockets per seat) and reports the
// server's memory per socket.
func BenchmarkParticipantSockets(b *testing.B) {
	const sockets = 1000
	s := startStack(b, "--seats", "20", "--max-sockets", "50")
	var cookies []string
	for n := 1; n <= 20; n++ {
		cookies = append(cookies, s.join(n).cookie())
	}
	pid := s.cmd.Process.Pid
	before := rss(b, pid)
	b.ResetTimer()
	conns := make([]*websocket.Conn, 0, sockets)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < sockets; i++ {
		seat := i%20 + 1
		u := "ws" + strings.TrimPrefix(s.base, "http") + fmt.Sprintf("/user/%d/ws?clientId=b%d", seat, i)
		c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Cookie": {cookies[seat-1]}})
		if err != nil {
			b.Fatalf("socket %d: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil { // the first status
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	b.StopTimer()
	after := rss(b, pid)
	b.ReportMetric(float64(after-before)/sockets/1024, "KiB/socket")
	b.ReportMetric(float64(after)/(1<<20), "server-RSS-MiB")
}
