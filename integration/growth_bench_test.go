package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/internal/benchkit"
	"github.com/comfy-workshop/workshop/internal/procstat"
	"github.com/comfy-workshop/workshop/internal/promtext"
	"github.com/comfy-workshop/workshop/store"
)

// BenchmarkServeGrowth measures the binary with 0, 100,000 and 1,000,000
// finished jobs stored and a full activity log: start-up time and RSS,
// durable submissions at 64 clients, GET /api/jobs/{id} of finished jobs
// (one client: the latency target's case), and the instructor's reads (the
// newest jobs, the failed ones, the metrics, the activity log). The stores
// are written directly with the store package, in transactions of 20,000
// jobs, and a server runs on each at once. b.N is the number of
// submissions and of reads per size:
//
//	go tool task bench-growth
//	go test ./integration -run '^$' -bench ServeGrowth -benchtime 20000x -timeout 60m
//
// GROWTH_JOBS=0,100000 picks other sizes.
func BenchmarkServeGrowth(b *testing.B) {
	t := benchkit.NewTable(b, "The binary as the store grows (64 clients submitting; GETs of finished jobs at 1 client)",
		"jobs stored", "start-up s", "RSS at start MiB", "submissions/s", "vs empty (each turn)", "submit p99 ms", "inside: submit / commit p99 ms", "CPU ms/submit", "vs empty (each turn)",
		"GET p99 ms", "CPU ms/GET", "list / failed / metrics / activity p99 ms", "RSS at end: heap / file pages MiB")
	sizes := benchkit.EnvInts(b, "GROWTH_JOBS", 0, 100_000, 1_000_000)
	stores := make([]*grown, len(sizes))
	for i, jobs := range sizes {
		stores[i] = grow(b, jobs)
	}
	// The submissions take turns between the stores, a quarter of them at
	// a time: this machine's speed changes by half from one minute to the
	// next, and taking turns puts every size on both speeds. The first
	// size (0 by default) is the reference; each turn's ratio is shown
	// beside the whole rounds'.
	subs := make([][]round, len(sizes))
	within := make([]string, len(sizes)) // the server's own p99s of the turns
	b.Run("submit", func(b *testing.B) {
		sels := []promtext.Selector{
			{Metric: "workshop_http_request_duration_seconds", Labels: []string{`method="POST"`, `route="/api/jobs"`}},
			{Metric: "workshop_store_commit_seconds"},
		}
		before := make([][]promtext.Histogram, len(stores))
		for i, g := range stores {
			subs[i] = nil
			for _, sel := range sels {
				before[i] = append(before[i], scrape(b, g.srv, sel))
			}
		}
		for range growthTurns {
			for i, g := range stores {
				subs[i] = append(subs[i], submitRound(b, g.srv, 64, max(b.N/growthTurns, 1)))
			}
		}
		for i, g := range stores {
			var p99s []string
			for k, sel := range sels {
				p99s = append(p99s, fmt.Sprintf("<= %g", 1000*scrape(b, g.srv, sel).Since(before[i][k]).P99))
			}
			within[i] = strings.Join(p99s, " / ")
		}
	})
	for i, jobs := range sizes {
		g := stores[i]
		b.Run("jobs="+strconv.Itoa(jobs), func(b *testing.B) {
			g.report(b)
			sub := merge(subs[i])
			get := getRound(b, g.srv, 1, b.N, g.finished)
			sub.report(b, "submit")
			get.report(b, "get")
			var reads []string
			for _, r := range []struct{ name, path string }{
				{"list", "/api/jobs?limit=50"},
				{"failed", "/api/jobs?status=failed&limit=50"},
				{"metrics", "/api/metrics"},
				{"activity", "/api/activity?limit=200"},
			} {
				h := benchkit.NewClient(1, adminToken)
				rd := drive(b, g.srv, r.name, 1, 50, func(int) error {
					status, err := h.Do("GET", g.srv.base+r.path, nil, nil)
					if err != nil || status != http.StatusOK {
						return fmt.Errorf("GET %s: %d %v", r.path, status, err)
					}
					return nil
				})
				b.ReportMetric(rd.pct(0.99), r.name+"-p99-ms")
				reads = append(reads, strconv.FormatFloat(rd.pct(0.99), 'f', 1, 64))
			}
			st, _ := procstat.Read(g.srv.pid())
			b.ReportMetric(float64(st.HWM)/(1<<20), "peak-rss-MiB")
			rate := func(r round) float64 { return r.rate() }
			cpu := func(r round) float64 { return r.cpuPerOp() }
			t.Set(jobs, g.startup.Seconds(), float64(g.rss.RSS)/(1<<20), sub.rate(), turns(subs[i], subs[0], rate), sub.pct(0.99), within[i],
				sub.cpuPerOp(), turns(subs[i], subs[0], cpu), get.pct(0.99), get.cpuPerOp(), strings.Join(reads, " / "),
				fmt.Sprintf("%.0f / %.0f", float64(st.Anon)/(1<<20), float64(st.File)/(1<<20)))
		})
	}
}

// growthTurns is how many turns the growth benchmark's stores take.
const growthTurns = 4

// merge adds rounds up into one.
func merge(rs []round) round {
	var m round
	for _, r := range rs {
		m.n += r.n
		m.elapsed += r.elapsed
		m.cpu += r.cpu
		m.lat = append(m.lat, r.lat...)
	}
	slices.Sort(m.lat)
	return m
}

// turns is "whole (lowest-highest)": f of the merged rounds over the
// reference's, and the range of the same ratio turn by turn.
func turns(rs, ref []round, f func(round) float64) string {
	var lo, hi float64
	for k := range rs {
		v := f(rs[k]) / f(ref[k])
		if k == 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return fmt.Sprintf("%s (%s-%s)", benchkit.Num(f(merge(rs))/f(merge(ref))), benchkit.Num(lo), benchkit.Num(hi))
}

// grown is a server started on a store of a given size.
type grown struct {
	data     string
	srv      *server
	finished []string // ids of stored finished jobs, to read
	seed     time.Duration
	startup  time.Duration
	rss      procstat.Sample
}

func (g *grown) report(b *testing.B) {
	b.ReportMetric(g.seed.Seconds(), "seed-s")
	b.ReportMetric(g.startup.Seconds(), "startup-s")
	b.ReportMetric(float64(g.rss.RSS)/(1<<20), "start-rss-MiB")
	b.ReportMetric(float64(g.rss.Anon)/(1<<20), "start-anon-MiB")
}

// grow seeds a store with jobs finished jobs and a full activity log, then
// starts the server on it and times its start-up: from exec to the first
// answer of /health.
func grow(b *testing.B, jobs int) *grown {
	b.Helper()
	data := b.TempDir()
	g := &grown{data: data}
	began := time.Now()
	g.finished = seedStore(b, data, jobs)
	g.seed = time.Since(began)
	binary(b, "workshop") // built before the clock starts
	began = time.Now()
	g.srv = startBench(b, data)
	for {
		resp, err := http.Get(g.srv.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	g.startup = time.Since(began)
	g.rss, _ = procstat.Read(g.srv.pid())
	if len(g.finished) == 0 { // an empty store: read the jobs of a warm-up
		g.finished = submitIDs(b, g.srv, 500)
	}
	return g
}

// seedChunk is how many jobs one seeding transaction writes.
const seedChunk = 20000

// seedStore writes jobs finished jobs, as a long workshop leaves them
// (completed with an output, some failed or cancelled, 2,000 participants,
// 30 GPU instances, spread over the last 30 days), and a full activity
// log; it returns the ids of one in a hundred. The writes go through the
// store package, so every index, counter and total is as the server keeps
// it.
func seedStore(b *testing.B, dir string, jobs int) []string {
	b.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(dir, quiet)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	now := time.Now().UTC()
	span := 30 * 24 * time.Hour
	first := now.Add(-span)
	var sample []string
	for from := 0; from < jobs; from += seedChunk {
		batch := make([]*workshop.Job, 0, seedChunk)
		for i := from; i < min(from+seedChunk, jobs); i++ {
			j := seedJob(rng, i, first.Add(span*time.Duration(i)/time.Duration(jobs)))
			batch = append(batch, j)
			if rng.IntN(100) == 0 {
				sample = append(sample, j.ID)
			}
		}
		err := db.Write(context.Background(), func(tx *store.Tx) error {
			for _, j := range batch {
				if err := tx.PutJob(j); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// The activity log, full: every entry a job's.
	var entries [][2][]byte
	for i := range activity.Keep {
		at := now.Add(-time.Duration(activity.Keep-i) * time.Second)
		e := activity.Entry{ID: idAt(at, uint64(i)), Time: at, Actor: "system", Kind: "job", Action: "completed",
			Detail: "1 output(s) on gpu-3/1", JobID: uuid.NewString(), UserID: fmt.Sprintf("user%04d", i%2000+1)}
		raw, _ := json.Marshal(e)
		entries = append(entries, [2][]byte{[]byte(e.ID), raw})
	}
	err = db.Write(context.Background(), func(tx *store.Tx) error {
		for _, e := range entries {
			if err := tx.PutActivity(string(e[0]), e[1], activity.Keep); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Big transactions leave many pages free, as a workshop's small
	// commits do not: compact, so the server starts on a file like theirs.
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	if err := store.Compact(dir, quiet); err != nil {
		b.Fatal(err)
	}
	return sample
}

// seedGraph is a txt2img graph as a participant submits it.
const seedGraph = `{"3":{"class_type":"KSampler","inputs":{"seed":%d,"steps":20,"cfg":7,"sampler_name":"euler","scheduler":"normal","denoise":1,"model":["4",0],"positive":["6",0],"negative":["7",0],"latent_image":["5",0]}},` +
	`"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"v1-5-pruned-emaonly-fp16.safetensors"}},` +
	`"5":{"class_type":"EmptyLatentImage","inputs":{"width":512,"height":512,"batch_size":1}},` +
	`"6":{"class_type":"CLIPTextEncode","inputs":{"text":"a watercolour fox in a snowy forest, %d","clip":["4",1]}},` +
	`"7":{"class_type":"CLIPTextEncode","inputs":{"text":"blurry, low quality","clip":["4",1]}},` +
	`"8":{"class_type":"VAEDecode","inputs":{"samples":["3",0],"vae":["4",2]}},` +
	`"9":{"class_type":"SaveImage","inputs":{"filename_prefix":"ComfyUI","images":["8",0]}}}`

func seedJob(rng *rand.Rand, i int, created time.Time) *workshop.Job {
	started := created.Add(time.Duration(1+rng.IntN(60)) * time.Second)
	ended := started.Add(time.Duration(5000+rng.IntN(15000)) * time.Millisecond)
	j := &workshop.Job{
		ID: idAt(created, uint64(i)), Seq: uint64(i + 1), UserID: fmt.Sprintf("user%04d", rng.IntN(2000)+1),
		Workflow: fmt.Appendf(nil, seedGraph, rng.Uint32(), i), Priority: workshop.PriorityDefault,
		CreatedAt: created, StartedAt: &started, CompletedAt: &ended, Attempts: 1,
		Worker: fmt.Sprintf("gpu-%d/%d", rng.IntN(10), rng.IntN(3)),
	}
	switch k := rng.IntN(100); {
	case k < 95:
		name := fmt.Sprintf("ComfyUI_%05d_.png", i%100000)
		j.Status = workshop.StatusCompleted
		j.Result = &workshop.Result{
			Outputs: []workshop.Output{{Node: "9", Name: name, Filename: name, Type: "output", Size: 400000 + int64(rng.IntN(200000)),
				SHA256: fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())}},
			Raw: fmt.Appendf(nil, `{"9":{"images":[{"filename":%q,"subfolder":"","type":"output"}]}}`, name),
		}
	case k < 98:
		j.Status = workshop.StatusFailed
		j.Error = &workshop.JobError{Type: "execution_error", Message: "CUDA out of memory. Tried to allocate 2.00 GiB"}
	default:
		j.Status, j.StartedAt = workshop.StatusCancelled, nil
		j.Error = &workshop.JobError{Type: "cancelled", Message: "cancelled by its owner"}
	}
	return j
}

// idAt is a UUIDv7 for time t, as the queue mints them, with n in its
// random bits so that ids made in the same millisecond still sort in
// order.
func idAt(t time.Time, n uint64) string {
	var id uuid.UUID
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	for i := range 8 {
		id[8+i] = byte(n >> (56 - 8*i))
	}
	id[6], id[7] = 0x70, 0
	id[8] = id[8]&0x3f | 0x80
	return id.String()
}
