package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/internal/benchkit"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/tunnel"
)

const token = "bench-agent-token-0123456789"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rig is the whole job path in one process, over real sockets: queue and
// store, tunnel server and agent, dispatcher, simulated ComfyUI instances.
type rig struct {
	q    *sched.Queue
	d    *dispatch.Dispatcher
	db   *store.DB
	sims []*sim.Server
}

// rigConfig shapes a rig; the zero value of a field is the default.
type rigConfig struct {
	instances, prefetch int
	step                time.Duration
	faults              map[int]sim.Faults // by instance
	setAsideAfter       int
}

func newRig(b testing.TB, instances int, prefetch int, step time.Duration) *rig {
	return startRig(b, rigConfig{instances: instances, prefetch: prefetch, step: step})
}

func startRig(b testing.TB, cfg rigConfig) *rig {
	b.Helper()
	dir := b.TempDir()
	db, err := store.Open(dir, quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	q, err := sched.Open(db, sched.Config{Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	files, _ := store.NewFiles(dir)
	ts := tunnel.NewServer(tunnel.ServerConfig{Token: token, Logger: quiet})
	hs := httptest.NewServer(ts)
	b.Cleanup(func() { ts.Close(); hs.Close() })
	d := dispatch.New(dispatch.Config{Queue: q, Files: files, Tunnels: ts, Log: quiet, DB: db,
		Prefetch: cfg.prefetch, Grace: time.Minute, SetAsideAfter: cfg.setAsideAfter})
	benchkit.Background(b, d.Run)

	r := &rig{q: q, d: d, db: db}
	var ins []tunnel.Instance
	for i := 0; i < cfg.instances; i++ {
		s, err := sim.New(sim.Config{StepDelay: cfg.step, Steps: 1, Logger: quiet, Faults: cfg.faults[i]})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(s)
		b.Cleanup(func() { srv.Close(); s.Close() })
		ins = append(ins, tunnel.Instance{Name: fmt.Sprint(i), URL: srv.URL})
		r.sims = append(r.sims, s)
	}
	runAgent(b, hs.URL, ins)
	// Wait for every instance to be ready, on the queue's events.
	sub := q.Events().Subscribe(1024, nil)
	defer sub.Close()
	for {
		ready := 0
		for _, w := range d.Workers() {
			if w.Connected {
				ready++
			}
		}
		if ready == cfg.instances {
			break
		}
		select {
		case <-sub.C:
		case <-time.After(50 * time.Millisecond):
		}
	}
	return r
}

// runAgent runs a gpu-agent named "bench" for instances until the
// benchmark ends.
func runAgent(b testing.TB, serverURL string, instances []tunnel.Instance) {
	agent, err := tunnel.NewAgent(tunnel.AgentConfig{ServerURL: serverURL, Token: token, Name: "bench", Instances: instances, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	benchkit.Background(b, func(ctx context.Context) { agent.Run(ctx) })
}

var samplerGraph = json.RawMessage(`{
 "4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"v1-5-pruned-emaonly-fp16.safetensors"}},
 "5":{"class_type":"EmptyLatentImage","inputs":{"width":64,"height":64,"batch_size":1}},
 "6":{"class_type":"CLIPTextEncode","inputs":{"text":"bench","clip":["4",1]}},
 "3":{"class_type":"KSampler","inputs":{"seed":SEED,"steps":1,"cfg":7,"sampler_name":"euler","scheduler":"normal","denoise":1,"model":["4",0],"positive":["6",0],"negative":["6",0],"latent_image":["5",0]}},
 "8":{"class_type":"VAEDecode","inputs":{"samples":["3",0],"vae":["4",2]}},
 "9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":"b"}}}`)

func graph(seed int) json.RawMessage {
	return json.RawMessage(strings.Replace(string(samplerGraph), "SEED", fmt.Sprint(seed), 1))
}

// BenchmarkIdleGap measures, on one instance with a full queue, the time
// between one job's execution_success and the next job's execution_start,
// as the server sees them: with prefetch the next job is already in the
// instance's queue; without it, the server must notice, lease and post.
func BenchmarkIdleGap(b *testing.B) {
	for _, prefetch := range []int{1, 0} {
		b.Run(fmt.Sprintf("prefetch=%d", prefetch), func(b *testing.B) {
			r := newRig(b, 1, prefetch, 2*time.Millisecond)
			sub := r.q.Events().Subscribe(1<<16, func(e sched.Event) bool { return e.Type == sched.EventEngine && !e.Binary })
			defer sub.Close()
			n := max(b.N, 20)
			ctx := context.Background()
			for i := 0; i < n; i++ {
				if _, err := r.q.Submit(ctx, sched.Submission{UserID: fmt.Sprintf("u%d", i%10), Workflow: graph(i)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			var gaps []time.Duration
			var lastEnd time.Time
			done := 0
			for done < n {
				e := <-sub.C
				var m struct{ Type string }
				json.Unmarshal(e.Frame, &m)
				switch m.Type {
				case "execution_start":
					if !lastEnd.IsZero() {
						gaps = append(gaps, time.Since(lastEnd))
					}
				case "execution_success":
					lastEnd = time.Now()
					done++
				}
			}
			b.StopTimer()
			b.ReportMetric(benchkit.MS(benchkit.Pct(gaps, 0.5)), "median-gap-ms")
			b.ReportMetric(benchkit.MS(benchkit.Pct(gaps, 0.9)), "p90-gap-ms")
		})
	}
}

// BenchmarkJobsThroughput is jobs per second through the whole path (queue,
// tunnel, ComfyUI protocol, output download and store) with zero step time,
// on two instances.
func BenchmarkJobsThroughput(b *testing.B) {
	r := newRig(b, 2, 1, 0)
	sub := r.q.Events().Subscribe(1<<16, func(e sched.Event) bool {
		return e.Type == sched.EventJobUpdated && e.Job.Status.Finished()
	})
	defer sub.Close()
	ctx := context.Background()
	b.ResetTimer()
	begin := time.Now()
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := r.q.Submit(ctx, sched.Submission{UserID: fmt.Sprintf("u%d", i%50), Workflow: graph(i)}); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	for done := 0; done < b.N; {
		e := <-sub.C
		if e.Job.Status != workshop.StatusCompleted {
			b.Fatalf("job %s %s: %+v", e.Job.ID, e.Job.Status, e.Job.Error)
		}
		done++
	}
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "jobs/s")
}

// BenchmarkOutputTransfer is the output collection path itself (GET /view
// with the ComfyUI client, then store.Files.Save: temp file, sha256, fsync,
// rename) for one large file (1 GiB by default, OUTPUT_BENCH_BYTES for
// another size), in the same run over plain loopback TCP and through the
// tunnel. The raw socket comparison, without HTTP or the store, is
// tunnel.BenchmarkTransfer.
//
//	go test -run '^$' -bench OutputTransfer -benchtime 1x ./dispatch/
func BenchmarkOutputTransfer(b *testing.B) {
	size := int64(benchkit.EnvInt(b, "OUTPUT_BENCH_BYTES", 1<<30))
	dir := b.TempDir()
	s, err := sim.New(sim.Config{OutputDir: filepath.Join(dir, "comfy-output"), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(dir, "comfy-output", "big.bin"), size)
	srv := httptest.NewServer(s)
	b.Cleanup(func() { srv.Close(); s.Close() })

	ts := tunnel.NewServer(tunnel.ServerConfig{Token: token, Logger: quiet})
	hs := httptest.NewServer(ts)
	b.Cleanup(func() { ts.Close(); hs.Close() })
	runAgent(b, hs.URL, []tunnel.Instance{{Name: "0", URL: srv.URL}})
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ts.WaitAgent(wctx, "bench"); err != nil {
		b.Fatal(err)
	}

	direct, err := comfy.New(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	tunnelled, err := comfy.New(srv.URL, comfy.WithDialer(ts.Dialer("bench", "0")))
	if err != nil {
		b.Fatal(err)
	}
	files, err := store.NewFiles(filepath.Join(dir, "server"))
	if err != nil {
		b.Fatal(err)
	}
	collect := func(c *comfy.Client, group string) float64 {
		start := time.Now()
		dl, err := c.View(context.Background(), comfy.FileRef{Filename: "big.bin", Type: "output"})
		if err != nil {
			b.Fatal(err)
		}
		saved, err := files.Save(store.Outputs, "user001", group, "big.bin", dl, 0)
		dl.Close()
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		if saved.Size != size {
			b.Fatalf("saved %d bytes, want %d", saved.Size, size)
		}
		if err := files.RemoveGroup(store.Outputs, "user001", group); err != nil {
			b.Fatal(err)
		}
		return float64(size) / 1e6 / el.Seconds()
	}
	var tcp, tun float64
	b.ResetTimer()
	for i := range b.N {
		tcp += collect(direct, fmt.Sprintf("tcp-%d", i))
		tun += collect(tunnelled, fmt.Sprintf("tunnel-%d", i))
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(tcp/n, "tcp_MB/s")
	b.ReportMetric(tun/n, "tunnel_MB/s")
	b.ReportMetric(100*tun/tcp, "tunnel_%_of_tcp")
	b.ReportMetric(0, "ns/op")
	fmt.Fprintf(os.Stderr, "output collection of %d MiB: plain loopback TCP %.0f MB/s, tunnel %.0f MB/s (%.0f%%)\n",
		size>>20, tcp/n, tun/n, 100*tun/tcp)
}

// writeFile writes size pseudo-random bytes (incompressible, like an encoded
// video) to name.
func writeFile(b *testing.B, name string, size int64) {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{1}), size); err != nil {
		b.Fatal(err)
	}
}
