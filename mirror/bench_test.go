package mirror_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/mirror"
)

// etagServer is a lean stand-in for ComfyUI serving fixed bodies with an
// ETag and answering 304 to a matching If-None-Match, as aiohttp's static
// files do.
type etagServer map[string]*benchFile

type benchFile struct {
	body        []byte
	contentType string
	etag        string
}

func (s etagServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := s[r.URL.Path]
	if f == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", f.etag)
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Content-Length", fmt.Sprint(len(f.body)))
	_, _ = w.Write(f.body)
}

// BenchmarkAddedLatency prints the latency a request adds going through the
// mirror (a Fiber app on a real socket, the upstream dialed directly as the
// tunnel would be) rather than straight to the upstream, at p50, for a
// cached frontend asset (served without asking) and for object_info
// (revalidated with the upstream on every request). Each iteration makes
// one request each way, alternating, over keep-alive connections, with
// Accept-Encoding: gzip as a browser sends.
//
//	go test -run '^$' -bench AddedLatency -benchtime 2000x ./mirror
func BenchmarkAddedLatency(b *testing.B) {
	s, err := sim.New(sim.Config{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	simSrv := httptest.NewServer(s)
	b.Cleanup(simSrv.Close)
	objectInfo := fetchBody(b, simSrv.URL+"/api/object_info")

	// A frontend bundle of realistic size, and the simulator's object_info.
	bundle := []byte(strings.Repeat("export function f(a,b){return a+b}/* padding */\n", 6000))
	up := etagServer{
		"/assets/index-Ab12Cd34.js": {body: bundle, contentType: "text/javascript", etag: `"bundle-1"`},
		"/api/object_info":          {body: objectInfo, contentType: "application/json", etag: `"info-1"`},
	}
	upSrv := httptest.NewServer(up)
	b.Cleanup(upSrv.Close)

	cases := []struct {
		name, upstream, path, wantLabel string
	}{
		{"asset", upSrv.Listener.Addr().String(), "/assets/index-Ab12Cd34.js", mirror.Hit},
		{"object_info", upSrv.Listener.Addr().String(), "/api/object_info", mirror.Revalidated},
		// The simulator sends no ETag: each revalidation is a full 200
		// whose bytes are compared with the cached copy.
		{"object_info_sim", simSrv.Listener.Addr().String(), "/api/object_info", mirror.Revalidated},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := newEnvAddr(b, c.upstream, mirror.Config{})
			direct := "http://" + c.upstream + c.path
			via := e.base + c.path
			for i := 0; i < 20; i++ { // warm the cache and the connections
				timedGet(b, e.client, direct, "")
				timedGet(b, e.client, via, "")
			}
			timedGet(b, e.client, via, c.wantLabel)
			d := make([]time.Duration, 0, b.N)
			m := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d = append(d, timedGet(b, e.client, direct, ""))
				m = append(m, timedGet(b, e.client, via, ""))
			}
			b.StopTimer()
			pd, pm := p50(d), p50(m)
			b.ReportMetric(float64(pd.Microseconds()), "direct-p50-µs")
			b.ReportMetric(float64(pm.Microseconds()), "mirror-p50-µs")
			b.ReportMetric(float64((pm - pd).Microseconds()), "added-p50-µs")
			if b.N < 100 {
				return
			}
			b.Logf("%s (%d bytes): direct p50 %s, through the mirror p50 %s, added %s (%d samples)",
				c.name, len(fetchBody(b, direct)), pd, pm, pm-pd, b.N)
		})
	}
}

func timedGet(b *testing.B, client *http.Client, url, wantLabel string) time.Duration {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("%s: %d %v", url, resp.StatusCode, err)
	}
	if wantLabel != "" && resp.Header.Get(mirror.CacheHeader) != wantLabel {
		b.Fatalf("%s: %s %q, want %q", url, mirror.CacheHeader, resp.Header.Get(mirror.CacheHeader), wantLabel)
	}
	return d
}

func fetchBody(b *testing.B, url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
