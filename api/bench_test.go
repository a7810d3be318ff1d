package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/valyala/fasthttp"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/sched"
)

// BenchmarkSubmit measures durable submissions over real HTTP on loopback:
// throughput and latency percentiles at 1, 64 and 256 concurrent clients.
// Every 201 is fsynced; concurrent ones share commits.
func BenchmarkSubmit(b *testing.B) {
	for _, clients := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			e := start(b, sched.Config{MaxPending: 0})
			hc := benchClient(clients)
			body := []byte(`{"user_id":"user001","workflow":` + graph + `}`)
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			begin := time.Now()
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						status, err := hc.do("POST", e.base+"/api/jobs", body)
						if err != nil || status != 201 {
							b.Errorf("status %d: %v", status, err)
							return
						}
						lat[i] = time.Since(t0)
					}
				}(c)
			}
			wg.Wait()
			elapsed := time.Since(begin)
			b.StopTimer()
			report(b, lat, elapsed)
		})
	}
}

// BenchmarkGetJob measures GET /api/jobs/{id} latency with 1 and 8 clients.
func BenchmarkGetJob(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchGetJob(b, clients) })
	}
}

func benchGetJob(b *testing.B, clients int) {
	e := start(b, sched.Config{MaxPending: 0})
	var ids []string
	for i := 0; i < 200; i++ {
		var j struct{ ID string }
		req, _ := http.NewRequest("POST", e.base+"/api/jobs", bytes.NewBufferString(fmt.Sprintf(`{"user_id":"u%d","workflow":%s}`, i%20, graph)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		decode(resp, &j)
		ids = append(ids, j.ID)
	}
	hc := benchClient(clients)
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	begin := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				status, err := hc.do("GET", e.base+"/api/jobs/"+ids[i%int64(len(ids))], nil)
				if err != nil || status != 200 {
					b.Errorf("status %d: %v", status, err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	report(b, lat, elapsed)
}

// BenchmarkSerialFsync is the machine's rate of small write+fsync pairs: the
// ceiling a store without group commit would have.
func BenchmarkSerialFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	b.ResetTimer()
	begin := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "fsyncs/s")
}

func report(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func decode(resp *http.Response, v any) {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, v)
}

// loadClient is a lean HTTP/1.1 client (fasthttp's), so that on a 2-core
// machine the load generator takes as little CPU from the server as it can.
type loadClient struct{ c *fasthttp.Client }

func benchClient(conns int) loadClient {
	return loadClient{&fasthttp.Client{MaxConnsPerHost: conns, MaxIdleConnDuration: time.Minute}}
}

func (l loadClient) do(method, url string, body []byte) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Set("Authorization", "Bearer "+token)
	req.SetBody(body)
	err := l.c.Do(req, resp)
	return resp.StatusCode(), err
}
