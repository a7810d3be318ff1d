package integration

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/internal/benchkit"
	"github.com/comfy-workshop/workshop/internal/procstat"
	"github.com/comfy-workshop/workshop/internal/promtext"
)

// Benchmarks of `workshop serve` as shipped: the real binary as a process
// with every middleware (metrics, activity log, room snapshots, the
// participants' surface), measured from outside. Each reports what a
// client sees (rate, latency percentiles) and the server's own CPU time
// per operation, read from /proc, which stays meaningful on a machine
// shared with other work. b.N is the number of operations per round:
//
//	go tool task bench-serve
//	go test ./integration -run '^$' -bench 'Serve(Submit|GetJob)' -benchtime 20000x

// benchGraph is a small ComfyUI graph (a participant's first test render).
const benchGraph = `{"1":{"class_type":"EmptyImage","inputs":{"width":512,"height":512,"batch_size":1,"color":%d}},` +
	`"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"bench"}}}`

// benchUsers is how many participants the benchmark's jobs are spread over.
const benchUsers = 200

// startBench starts a server for a benchmark on data, quiet and uncapped.
func startBench(b *testing.B, data string, extra ...string) *server {
	b.Helper()
	return startServer(b, data, append([]string{"--max-pending", "0", "--log-level", "warn", "--seats", "2000"}, extra...)...)
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// round is one timed batch of operations against a server.
type round struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration // sorted
	cpu     time.Duration   // the server's CPU time over the round
}

// drive runs n operations from clients goroutines, timing each, and reads
// the server's CPU time before and after. op gets the operation's index.
//
// With BENCH_PROFILE=DIR set, the server's CPU profile of the round's
// first 5 seconds (from its /debug/pprof) is written to
// DIR/<bench>-<what>.pprof.
func drive(b *testing.B, s *server, what string, clients, n int, op func(i int) error) round {
	return drivePaced(b, s, what, clients, n, 0, op)
}

// drivePaced is drive with operations arriving at rate a second (0: each
// client's next as soon as its last is answered). At a rate, an operation
// that no client was free to start when it was due counts its latency
// from then, so a stall counts for every operation it delayed; one that
// waited for its time counts from when it was sent.
func drivePaced(b *testing.B, s *server, what string, clients, n int, rate float64, op func(i int) error) round {
	b.Helper()
	pid := s.pid()
	if dir := os.Getenv("BENCH_PROFILE"); dir != "" && n >= 1000 {
		name := strings.NewReplacer("/", "_", "=", "").Replace(b.Name()) + "-" + what + ".pprof"
		done := profile(b, s, filepath.Join(dir, name))
		defer func() { <-done }()
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	cpu0, err := procstat.CPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	begin := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if due := begin.Add(time.Duration(float64(i) / rate * float64(time.Second))); rate > 0 && t0.Before(due) {
					time.Sleep(time.Until(due))
					t0 = time.Now() // not due: an idle runtime's timer wakes up to 1 ms late
				} else if rate > 0 {
					t0 = due
				}
				if err := op(i); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	cpu1, _ := procstat.CPU(pid)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	return round{n: n, elapsed: elapsed, lat: lat, cpu: cpu1 - cpu0}
}

// profile fetches 5 s of the server's CPU profile into path.
func profile(b *testing.B, s *server, path string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var out []byte
		status, err := benchkit.NewClient(1, adminToken).Do("GET", s.base+"/debug/pprof/profile?seconds=5", nil, &out)
		if err == nil && status == http.StatusOK {
			err = os.WriteFile(path, out, 0o644)
		}
		if err != nil || status != http.StatusOK {
			b.Logf("profile: %d %v", status, err)
		}
	}()
	return done
}

func (r round) pct(p float64) float64 { return benchkit.MS(benchkit.Pct(r.lat, p)) }

// report adds the round's figures to the benchmark's line, each name
// prefixed with what (submit, get).
func (r round) report(b *testing.B, what string) {
	b.ReportMetric(r.rate(), what+"/s")
	b.ReportMetric(r.pct(0.50), what+"-p50-ms")
	b.ReportMetric(r.pct(0.99), what+"-p99-ms")
	b.ReportMetric(r.cpuPerOp(), what+"-cpu-ms/op")
}

func (r round) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// cpuPerOp is the server's CPU time per operation, in milliseconds.
func (r round) cpuPerOp() float64 { return float64(r.cpu.Microseconds()) / 1000 / float64(r.n) }

// submitRound posts n jobs through POST /api/jobs from clients at once.
func submitRound(b *testing.B, s *server, clients, n int) round {
	return submitGraphs(b, s, clients, n, benchGraph)
}

// submitGraphs is submitRound with another graph: a format with one %d,
// the job's index, so that every graph differs.
func submitGraphs(b *testing.B, s *server, clients, n int, graph string) round {
	h := benchkit.NewClient(clients, adminToken)
	url := s.base + "/api/jobs"
	return drive(b, s, "submit", clients, n, func(i int) error {
		body := fmt.Appendf(nil, `{"user_id":"user%03d","workflow":`+graph+`}`, i%benchUsers+1, i)
		status, err := h.Do("POST", url, body, nil)
		if err != nil || status != http.StatusCreated {
			return fmt.Errorf("submit: status %d: %v", status, err)
		}
		return nil
	})
}

// getRound reads n jobs by id through GET /api/jobs/{id} from clients at
// once, picking ids at random from ids.
func getRound(b *testing.B, s *server, clients, n int, ids []string) round {
	return getPaced(b, s, clients, n, 0, ids)
}

// getPaced is getRound with requests arriving at rate a second.
func getPaced(b *testing.B, s *server, clients, n int, rate float64, ids []string) round {
	h := benchkit.NewClient(clients, adminToken)
	pick := rand.New(rand.NewPCG(1, 2))
	urls := make([]string, n)
	for i := range urls {
		urls[i] = s.base + "/api/jobs/" + ids[pick.IntN(len(ids))]
	}
	return drivePaced(b, s, "get", clients, n, rate, func(i int) error {
		status, err := h.Do("GET", urls[i], nil, nil)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("get %s: status %d: %v", urls[i], status, err)
		}
		return nil
	})
}

// submitIDs submits n jobs one by one and returns their ids.
func submitIDs(b *testing.B, s *server, n int) []string {
	h := benchkit.NewClient(1, adminToken)
	var ids []string
	var out []byte
	for i := range n {
		body := fmt.Appendf(nil, `{"user_id":"user%03d","workflow":`+benchGraph+`}`, i%benchUsers+1, i)
		status, err := h.Do("POST", s.base+"/api/jobs", body, &out)
		if err != nil || status != http.StatusCreated {
			b.Fatalf("submit: status %d: %v", status, err)
		}
		i := strings.Index(string(out), `"id":"`)
		ids = append(ids, string(out[i+6:i+6+36]))
	}
	return ids
}

// BenchmarkServeSubmit: durable submissions (fsynced before the 201) to
// the binary at 1, 64 and 256 clients.
func BenchmarkServeSubmit(b *testing.B) {
	s := startBench(b, b.TempDir())
	submitRound(b, s, 16, 2000) // warm: connections, pools, the store's first pages
	t := benchkit.NewTable(b, "Durable submissions, POST /api/jobs on the binary", "clients", "submissions/s", "p50 ms", "p99 ms", "server CPU ms/op", "inside: p99 ms")
	for _, clients := range []int{1, 64, 256} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			var r round
			in := inside(b, s, "POST", "/api/jobs", func() { r = submitRound(b, s, clients, b.N) })
			r.report(b, "submit")
			b.ReportMetric(in, "submit-inside-p99-le-ms")
			t.Set(clients, r.rate(), r.pct(0.5), r.pct(0.99), r.cpuPerOp(), fmt.Sprintf("<= %g", in))
		})
	}
}

// BenchmarkServeGetJob: GET /api/jobs/{id} of pending jobs (position
// computed) on the binary, at 1, 8 and 64 clients, then at fixed rates.
func BenchmarkServeGetJob(b *testing.B) {
	s := startBench(b, b.TempDir())
	ids := submitIDs(b, s, 500)
	t := benchkit.NewTable(b, "GET /api/jobs/{id} on the binary (500 pending jobs)", "clients", "requests/s", "p50 ms", "p99 ms", "server CPU ms/op", "inside: p99 ms")
	for _, clients := range []int{1, 8, 64} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			var r round
			in := inside(b, s, "GET", "/api/jobs/:id", func() { r = getRound(b, s, clients, b.N, ids) })
			r.report(b, "get")
			b.ReportMetric(in, "get-inside-p99-le-ms")
			t.Set(clients, r.rate(), r.pct(0.5), r.pct(0.99), r.cpuPerOp(), fmt.Sprintf("<= %g", in))
		})
	}
	// Closed loops of 8 and 64 clients keep both cores busy, so their tail
	// is the wait for a CPU shared with the load generator. Requests
	// arriving at a fixed rate, as a room's polls do, show the latency
	// below that point.
	paced := benchkit.NewTable(b, "GET /api/jobs/{id} at fixed arrival rates, 64 connections", "offered/s", "requests/s", "p50 ms", "p99 ms", "server CPU ms/op", "inside: p99 ms")
	for _, rate := range []int{2000, 5000, 10000, 15000} {
		b.Run("rate="+strconv.Itoa(rate), func(b *testing.B) {
			var r round
			in := inside(b, s, "GET", "/api/jobs/:id", func() { r = getPaced(b, s, 64, b.N, float64(rate), ids) })
			r.report(b, "get")
			b.ReportMetric(in, "get-inside-p99-le-ms")
			paced.Set(rate, r.rate(), r.pct(0.5), r.pct(0.99), r.cpuPerOp(), fmt.Sprintf("<= %g", in))
		})
	}
}

// inside runs a round and returns the p99 of the server's own time for
// the route meanwhile, in ms (the upper bound of its histogram's bucket):
// the handler's time, apart from the wait for a CPU and the socket that a
// client's latency adds.
func inside(b *testing.B, s *server, method, route string, round func()) float64 {
	sel := promtext.Selector{Metric: "workshop_http_request_duration_seconds", Labels: []string{`method="` + method + `"`, `route="` + route + `"`}}
	before := scrape(b, s, sel)
	round()
	return 1000 * scrape(b, s, sel).Since(before).P99
}
