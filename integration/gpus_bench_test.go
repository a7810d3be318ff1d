package integration

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	comfysim "github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/internal/benchkit"
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
// histogram and from the instances' own execution times. Each job is a
// txt2img graph whose one sampler step takes step: at step=1s the 100
// instances ask for 100 jobs a second (are they kept busy?); at step=0 the
// jobs are instant, which finds how many jobs a second one server carries:
//
//	go tool task bench-gpus
//	go test ./integration -run '^$' -bench ServeManyGPUs -benchtime 3000x
//
// GPUS_AGENTS (20) and GPUS_PER_AGENT (5) change the fleet.
func BenchmarkServeManyGPUs(b *testing.B) {
	t := benchkit.NewTable(b, "One server, many GPUs: a full queue on simulated instances behind agents",
		"step", "jobs/s", "server CPU ms/job", "server cores", "fleet cores", "instances busy", "instance gap p50 / p99 ms", "commits/job")
	for _, step := range []time.Duration{time.Second, 0} {
		b.Run("step="+step.String(), func(b *testing.B) { manyGPUs(b, t, step) })
	}
}

// gpuGraph is a txt2img graph with one sampler (its seed the job's index).
const gpuGraph = `{"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"v1-5-pruned-emaonly-fp16.safetensors"}},` +
	`"5":{"class_type":"EmptyLatentImage","inputs":{"width":64,"height":64,"batch_size":1}},` +
	`"6":{"class_type":"CLIPTextEncode","inputs":{"text":"a fox","clip":["4",1]}},` +
	`"3":{"class_type":"KSampler","inputs":{"seed":%d,"steps":1,"cfg":7,"sampler_name":"euler","scheduler":"normal","denoise":1,"model":["4",0],"positive":["6",0],"negative":["6",0],"latent_image":["5",0]}},` +
	`"8":{"class_type":"VAEDecode","inputs":{"samples":["3",0],"vae":["4",2]}},` +
	`"9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":"gpu"}}}`

func manyGPUs(b *testing.B, t *benchkit.Table, step time.Duration) {
	agents := benchkit.EnvInt(b, "GPUS_AGENTS", 20)
	per := benchkit.EnvInt(b, "GPUS_PER_AGENT", 5)
	srv := startServer(b, b.TempDir(), "--agent-token", agentToken, "--max-pending", "0", "--log-level", "warn", "--seats", "200")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var sims []string
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
			sims = append(sims, hs.URL)
		}
		agent, err := tunnel.NewAgent(tunnel.AgentConfig{ServerURL: srv.base, Token: agentToken, Name: fmt.Sprintf("gpu-%02d", a),
			Instances: ins, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		benchkit.Background(b, func(ctx context.Context) { agent.Run(ctx) })
	}
	waitInstances(b, srv.base, agents*per)

	a := admin{b, srv.base}
	if st := a.do("POST", "/api/queue/pause", nil, nil); st != http.StatusOK {
		b.Fatalf("pause: %d", st)
	}
	submitGraphs(b, srv, 16, b.N, gpuGraph)
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
	// The instances' own account: busy time and the gaps between their
	// jobs, from each one's execution timestamps.
	busy, gaps := instanceTimes(b, sims)
	b.ReportMetric(busy.Seconds()/(took.Seconds()*float64(len(sims))), "instances-busy")
	b.ReportMetric(benchkit.MS(benchkit.Pct(gaps, 0.5)), "instance-gap-p50-ms")
	b.ReportMetric(benchkit.MS(benchkit.Pct(gaps, 0.99)), "instance-gap-p99-ms")
	// The fleet's own share of the machine (simulators, agents, this client).
	b.ReportMetric((self1-self0).Seconds()/took.Seconds(), "fleet-cores")
	b.ReportMetric((cpu1-cpu0).Seconds()/took.Seconds(), "server-cores")
	b.ReportMetric(0, "ns/op")
	t.Set(step, float64(b.N)/took.Seconds(), float64((cpu1-cpu0).Microseconds())/1000/float64(b.N), (cpu1-cpu0).Seconds()/took.Seconds(),
		(self1-self0).Seconds()/took.Seconds(), busy.Seconds()/(took.Seconds()*float64(len(sims))),
		fmt.Sprintf("%.0f / %.0f", benchkit.MS(benchkit.Pct(gaps, 0.5)), benchkit.MS(benchkit.Pct(gaps, 0.99))), float64(c.N)/float64(b.N))
}

// scrape reads one histogram from the server's /metrics.
func scrape(b *testing.B, s *server, sel promtext.Selector) promtext.Histogram {
	b.Helper()
	var body []byte
	if st, err := benchkit.NewClient(1, adminToken).Do("GET", s.base+"/metrics", nil, &body); err != nil || st != http.StatusOK {
		b.Fatalf("/metrics: %d %v", st, err)
	}
	h, err := promtext.Read(bytes.NewReader(body), sel)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// instanceTimes reads every simulated instance's jobs (GET /api/jobs, as
// ComfyUI lists them with their execution times) and returns their total
// run time and the idle gaps between one job's end and the next one's
// start on the same instance.
func instanceTimes(b *testing.B, sims []string) (busy time.Duration, gaps []time.Duration) {
	b.Helper()
	for _, base := range sims {
		var out struct {
			Jobs []struct {
				Start int64 `json:"execution_start_time"`
				End   int64 `json:"execution_end_time"`
			} `json:"jobs"`
		}
		resp, err := http.Get(base + "/api/jobs?sort_order=asc")
		if err != nil {
			b.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		jobs := out.Jobs
		slices.SortFunc(jobs, func(x, y struct {
			Start int64 `json:"execution_start_time"`
			End   int64 `json:"execution_end_time"`
		}) int {
			return cmp.Compare(x.Start, y.Start)
		})
		for i, j := range jobs {
			busy += time.Duration(j.End-j.Start) * time.Millisecond
			if i > 0 {
				gaps = append(gaps, time.Duration(j.Start-jobs[i-1].End)*time.Millisecond)
			}
		}
	}
	return busy, gaps
}
