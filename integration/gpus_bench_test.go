package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	comfysim "github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/internal/procstat"
	"github.com/comfy-workshop/workshop/internal/promtext"
	"github.com/comfy-workshop/workshop/tunnel"
)

// BenchmarkServeManyGPUs is one server carrying many GPUs: the binary with
// 20 GPU agents of 5 simulated ComfyUI instances each (100 instances; the
// agents and simulators run in the benchmark's process, over real
// sockets), and a full queue: b.N jobs are queued while paused, then the
// queue is resumed and drained. It reports jobs per second, the server's
// CPU time per dispatched job (prompt, socket events, output collection,
// store), and the instances' idle gap between jobs from the server's own
// histogram. The simulated jobs take GPUS_STEP_MS (default 200) for one
// step, so the instances could run 500 jobs a second:
//
//	go tool task bench-gpus
//	go test ./integration -run '^$' -bench ServeManyGPUs -benchtime 5000x
//
// GPUS_AGENTS (20) and GPUS_PER_AGENT (5) change the fleet.
func BenchmarkServeManyGPUs(b *testing.B) {
	agents := envInts(b, "GPUS_AGENTS", []int{20})[0]
	per := envInts(b, "GPUS_PER_AGENT", []int{5})[0]
	step := time.Duration(envInts(b, "GPUS_STEP_MS", []int{200})[0]) * time.Millisecond
	srv := startServer(b, b.TempDir(), "--agent-token", agentToken, "--max-pending", "0", "--log-level", "warn", "--seats", "200")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for a := range agents {
		var ins []tunnel.Instance
		for i := range per {
			s, err := comfysim.New(comfysim.Config{StepDelay: step, Steps: 1, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(s)
			b.Cleanup(func() { hs.Close(); s.Close() })
			ins = append(ins, tunnel.Instance{Name: strconv.Itoa(i), URL: hs.URL})
		}
		agent, err := tunnel.NewAgent(tunnel.AgentConfig{ServerURL: srv.base, Token: agentToken, Name: fmt.Sprintf("gpu-%02d", a),
			Instances: ins, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); agent.Run(ctx) }()
		b.Cleanup(func() { cancel(); <-done })
	}
	waitInstances(b, srv.base, agents*per)

	a := admin{b, srv.base}
	if st := a.do("POST", "/api/queue/pause", nil, nil); st != http.StatusOK {
		b.Fatalf("pause: %d", st)
	}
	submitRound(b, srv, 16, b.N)
	gap := promtext.Selector{Metric: "workshop_dispatch_gap_seconds"}
	commit := promtext.Selector{Metric: "workshop_store_commit_seconds"}
	gaps0, commits0 := scrape(b, srv, gap), scrape(b, srv, commit)
	cpu0, _ := procstat.CPU(srv.pid())
	self0, _ := procstat.CPU(os.Getpid())
	began := time.Now()
	if st := a.do("POST", "/api/queue/resume", nil, nil); st != http.StatusOK {
		b.Fatalf("resume: %d", st)
	}
	for {
		var st struct {
			Counts map[string]int `json:"counts"`
		}
		a.do("GET", "/api/queue/status", nil, &st)
		if st.Counts["failed"] > 0 || st.Counts["cancelled"] > 0 {
			b.Fatalf("jobs failed: %v", st.Counts)
		}
		if st.Counts["completed"] >= b.N {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(began)
	cpu1, _ := procstat.CPU(srv.pid())
	self1, _ := procstat.CPU(os.Getpid())
	g, c := scrape(b, srv, gap).Since(gaps0), scrape(b, srv, commit).Since(commits0)
	b.ReportMetric(float64(b.N)/took.Seconds(), "jobs/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(b.N), "server-cpu-ms/job")
	b.ReportMetric(1000*g.P50, "gap-p50-le-ms")
	b.ReportMetric(1000*g.P99, "gap-p99-le-ms")
	// The store's single writer: commits per job, and their time.
	b.ReportMetric(float64(c.N)/float64(b.N), "commits/job")
	b.ReportMetric(1000*c.P50, "commit-p50-le-ms")
	// The fleet's own share of the machine (simulators, agents, this client).
	b.ReportMetric((self1-self0).Seconds()/took.Seconds(), "fleet-cores")
	b.ReportMetric((cpu1-cpu0).Seconds()/took.Seconds(), "server-cores")
	b.ReportMetric(0, "ns/op")
}

// scrape reads one histogram from the server's /metrics.
func scrape(b *testing.B, s *server, sel promtext.Selector) promtext.Histogram {
	b.Helper()
	var body []byte
	if st, err := newHC(1).do("GET", s.base+"/metrics", nil, &body); err != nil || st != http.StatusOK {
		b.Fatalf("/metrics: %d %v", st, err)
	}
	h, err := promtext.Read(bytes.NewReader(body), sel)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

