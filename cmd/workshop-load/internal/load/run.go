package load

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Runner is one load run; make it with New.
type Runner struct {
	cfg     Config
	base    string // scheme://host[:port] of the server
	wsBase  string
	client  *http.Client
	dialer  *websocket.Dialer
	life    context.Context // until every socket is closed
	parts   []*participant
	weights float64 // sum of the participants' weights
	start   time.Time
	endNS   atomic.Int64 // when submitting stops, unix ns

	sockets, socketMsgs, previews, progress atomic.Int64
	acked, completed, completedInWindow     atomic.Int64
	failed, rejected, submitErrors, bytes   atomic.Int64
	graphSeq                                atomic.Uint64
	submitLat, e2eLat                       series
	errors                                  errorCounts
	probeErrors                             errorCounts // reading the server's /proc and /metrics: not the room's
	dlSem, histSem                          chan struct{}

	busyMu sync.Mutex
	busy   time.Duration // GPU time of completed jobs, as the sockets saw it
}

// New checks cfg and prepares a run.
func New(cfg Config) (*Runner, error) {
	cfg.Defaults()
	u, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, base: u.Scheme + "://" + u.Host, dlSem: make(chan struct{}, 64), histSem: make(chan struct{}, 32)}
	r.wsBase = "ws" + strings.TrimPrefix(r.base, "http")
	tlsCfg := &tls.Config{InsecureSkipVerify: cfg.Insecure} //nolint:gosec // only with --insecure, for self-signed servers
	dial := (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	idle := min(cfg.Participants+64, 2048)
	r.client = &http.Client{
		Transport: &http.Transport{
			DialContext: dial, TLSClientConfig: tlsCfg, ForceAttemptHTTP2: false,
			MaxIdleConns: idle, MaxIdleConnsPerHost: idle, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: cfg.Timeout + 2*time.Minute,
			DisableCompression: true,
		},
		// The join link answers with a redirect and the cookie: keep both.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	r.dialer = &websocket.Dialer{NetDialContext: dial, TLSClientConfig: tlsCfg, HandshakeTimeout: 15 * time.Second,
		ReadBufferSize: 4096, WriteBufferSize: 1024}
	return r, nil
}

func (r *Runner) submitEnd() time.Time { return time.Unix(0, r.endNS.Load()) }

func (r *Runner) addBusy(d time.Duration) {
	r.busyMu.Lock()
	r.busy += d
	r.busyMu.Unlock()
}

// do sends one request to the server (never anywhere else).
func (r *Runner) do(ctx context.Context, method, path string, body []byte, cookie string, admin bool) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	}
	return r.client.Do(req)
}

// adminJSON GETs an admin route into out.
func (r *Runner) adminJSON(ctx context.Context, path string, out any) error {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, err := r.do(rctx, "GET", path, nil, "", true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{path: path, code: resp.StatusCode, body: string(bytes.TrimSpace(raw))}
	}
	return json.Unmarshal(raw, out)
}

// statusError is an admin route's answer other than 200.
type statusError struct {
	path string
	code int
	body string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("GET %s: HTTP %d: %.200s", e.path, e.code, e.body)
	if e.code == http.StatusUnauthorized || e.code == http.StatusForbidden {
		msg += " (is --admin-token right?)"
	}
	return msg
}

// graphBody is one submission, ComfyUI-shaped; every graph differs (seed,
// colour) so no engine cache turns it into a no-op.
func (r *Runner) graphBody(p *participant) []byte {
	n := r.graphSeq.Add(1)
	prefix := fmt.Sprintf("load_s%d", p.seat)
	if r.cfg.Graph == GraphSampler {
		return fmt.Appendf(nil, `{"client_id":%q,"prompt":{`+
			`"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"v1-5-pruned-emaonly-fp16.safetensors"}},`+
			`"5":{"class_type":"EmptyLatentImage","inputs":{"width":64,"height":64,"batch_size":1}},`+
			`"6":{"class_type":"CLIPTextEncode","inputs":{"text":"a workshop %d","clip":["4",1]}},`+
			`"7":{"class_type":"CLIPTextEncode","inputs":{"text":"blurry","clip":["4",1]}},`+
			`"3":{"class_type":"KSampler","inputs":{"seed":%d,"steps":%d,"cfg":7.0,"sampler_name":"euler","scheduler":"normal","denoise":1.0,"model":["4",0],"positive":["6",0],"negative":["7",0],"latent_image":["5",0]}},`+
			`"8":{"class_type":"VAEDecode","inputs":{"samples":["3",0],"vae":["4",2]}},`+
			`"9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":%q}}}}`,
			p.sid, n, p.rng.Uint64()>>12, r.cfg.Steps, prefix)
	}
	return fmt.Appendf(nil, `{"client_id":%q,"prompt":{`+
		`"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":%d}},`+
		`"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":%q}}}}`,
		p.sid, n%0xffffff, prefix)
}

// nextGap is the wait before a participant's next submission.
func (r *Runner) nextGap(p *participant) time.Duration {
	perSec := r.cfg.Rate * p.weight / r.weights
	if perSec <= 0 {
		return time.Duration(math.MaxInt64)
	}
	mean := float64(time.Second) / perSec
	if r.cfg.Arrival == ArrivalEven {
		return time.Duration(mean)
	}
	return time.Duration(p.rng.ExpFloat64() * mean)
}

// Run runs the load to its end and reports. Cancelling ctx ends the run
// early (no drain); the report still comes.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	life, closeAll := context.WithCancel(context.WithoutCancel(ctx))
	defer closeAll()
	r.life = life

	// The room: seats and their codes, the GPU instances, the server's
	// account of GPU time so far.
	var seats struct {
		Seats []struct {
			Seat     int    `json:"seat"`
			Code     string `json:"code"`
			Disabled bool   `json:"disabled"`
		} `json:"seats"`
	}
	if err := r.adminJSON(ctx, "/api/seats", &seats); err != nil {
		if strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:") {
			return nil, fmt.Errorf("listing seats: %w (--insecure for a self-signed server)", err)
		}
		return nil, fmt.Errorf("listing seats: %w", err)
	}
	codes, disabled := map[int]string{}, map[int]bool{}
	for _, s := range seats.Seats {
		codes[s.Seat], disabled[s.Seat] = s.Code, s.Disabled
	}
	for n := cfg.SeatsFrom; n < cfg.SeatsFrom+cfg.Participants; n++ {
		switch {
		case disabled[n]:
			return nil, fmt.Errorf("seat %d is disabled: enable it, or choose other seats with --seats-from", n)
		case codes[n] == "":
			return nil, fmt.Errorf("the server has no seat %d (it has %d seats): start it with --seats %d, or add seats with `workshop seats add`",
				n, len(seats.Seats), cfg.SeatsFrom+cfg.Participants-1)
		}
	}
	instances := r.instances(ctx)
	gpuBefore, _ := r.serverGPU(ctx)

	rep := &Report{Config: reportConfig(cfg), Instances: instances}
	probe := &serverProbe{r: r}
	if st, ok := probe.sample(ctx, true); ok {
		rep.Server = &ServerStats{PID: cfg.ServerPID, Before: st}
	}

	// Join, then open every socket.
	r.parts = make([]*participant, cfg.Participants)
	for i := range r.parts {
		p := newParticipant(r, cfg.SeatsFrom+i, cfg.Seed+uint64(i)*0x9e3779b97f4a7c15)
		p.weight, p.cap = 1, cfg.MaxInflight
		if i < cfg.Heavy {
			p.weight = cfg.HeavyFactor
			p.cap = int(math.Round(float64(cfg.MaxInflight) * cfg.HeavyFactor))
		}
		r.weights += p.weight
		r.parts[i] = p
	}
	r.logf("joining %d participants (seats %d-%d) at %s", cfg.Participants, cfg.SeatsFrom, cfg.SeatsFrom+cfg.Participants-1, r.base)
	t := time.Now()
	if err := r.joinAll(ctx, codes); err != nil {
		return nil, err
	}
	rep.JoinSeconds = time.Since(t).Seconds()
	t = time.Now()
	var sockWG sync.WaitGroup
	dialSem := make(chan struct{}, cfg.JoinParallel)
	for _, p := range r.parts {
		sockWG.Add(1)
		go func() { defer sockWG.Done(); p.socket(life, dialSem) }()
	}
	r.waitSockets(ctx, 60*time.Second)
	rep.SocketSeconds = time.Since(t).Seconds()
	rep.SocketsOpen = int(r.sockets.Load())
	r.logf("%d of %d sockets open in %.1fs", rep.SocketsOpen, cfg.Participants, rep.SocketSeconds)
	if rep.Server != nil {
		rep.Server.WithSockets, _ = probe.sample(ctx, true)
		rep.Server.Peak = rep.Server.WithSockets
	}

	// Submit for the duration.
	r.start = time.Now()
	r.endNS.Store(r.start.Add(cfg.Duration).UnixNano())
	subCtx, stopSubmitting := context.WithDeadline(ctx, r.submitEnd())
	defer stopSubmitting()
	var subWG sync.WaitGroup
	for i, p := range r.parts {
		if cfg.Rate == 0 {
			break // sockets only: the room sits and watches
		}
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			// Even arrivals are staggered across the room; with a ramp,
			// participants start one after another over it.
			first := r.nextGap(p)
			if cfg.Arrival == ArrivalEven {
				first = time.Duration(float64(first) * float64(i) / float64(len(r.parts)))
			}
			if cfg.Ramp > 0 {
				offset := time.Duration(float64(cfg.Ramp) * float64(i) / float64(len(r.parts)))
				if cfg.Arrival == ArrivalEven {
					first = 0
				}
				first += offset
			}
			next := r.start.Add(first)
			for {
				if !sleepCtx(subCtx, time.Until(next)) {
					return
				}
				if !p.submit(subCtx) {
					return
				}
				next = next.Add(r.nextGap(p))
				// Someone held back (429, max in flight) does not burst to
				// catch up.
				if now := time.Now(); next.Before(now.Add(-time.Second)) {
					next = now
				}
			}
		}()
	}
	liveDone := make(chan struct{})
	liveStop := make(chan struct{})
	go func() { defer close(liveDone); r.live(rep, probe, liveStop) }()

	if cfg.Rate == 0 {
		<-subCtx.Done()
	}
	subWG.Wait()
	submitStopped := time.Now()
	r.logf("submitting stopped after %.1fs; draining (up to %s)", submitStopped.Sub(r.start).Seconds(), cfg.Drain)
	if ctx.Err() == nil {
		r.drain(ctx, cfg.Drain)
		// Whatever is still open: ask history once, and let what it
		// finds finish.
		r.sweep(ctx, 0)
		r.drain(ctx, min(cfg.Drain, 30*time.Second))
	}
	end := time.Now()
	close(liveStop)
	<-liveDone

	// Leftovers: cancel them (they would skew the next run), close all.
	unfinished := r.unfinished()
	if cfg.Cleanup && unfinished > 0 {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, p := range r.parts {
			p.mu.Lock()
			n := p.unresolved
			p.mu.Unlock()
			if n > 0 {
				wg.Add(1)
				sem <- struct{}{}
				go func() { defer wg.Done(); defer func() { <-sem }(); p.cleanup(cctx) }()
			}
		}
		wg.Wait()
		cancel()
	}
	// Outputs being fetched right now are let finish (bounded).
	r.waitCollecting(10 * time.Second)
	if rep.Server != nil {
		rep.Server.End, _ = probe.sample(context.WithoutCancel(ctx), true)
		peak(&rep.Server.Peak, rep.Server.End)
	}
	closeAll()
	waitTimeout(&sockWG, 10*time.Second)
	r.client.CloseIdleConnections()
	if rep.Server != nil {
		rep.Server.AfterClose = probe.settle(context.WithoutCancel(ctx), 5*time.Second)
	}
	gpuAfter, gerr := r.serverGPU(context.WithoutCancel(ctx))
	r.fill(rep, end, submitStopped, unfinished, gpuBefore, gpuAfter, gerr)
	return rep, nil
}

func (r *Runner) logf(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

func (r *Runner) joinAll(ctx context.Context, codes map[int]string) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.JoinParallel)
	var mu sync.Mutex
	var firstErr error
	failures := 0
	for _, p := range r.parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			jctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			defer cancel()
			if err := p.join(jctx, codes[p.seat]); err != nil {
				r.errors.add("join", err.Error())
				mu.Lock()
				failures++
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failures > 0 {
		return fmt.Errorf("%d of %d participants could not join; first: %w", failures, len(r.parts), firstErr)
	}
	return ctx.Err()
}

func (r *Runner) waitSockets(ctx context.Context, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, p := range r.parts {
		select {
		case <-p.ready:
		case <-deadline.C:
			r.errors.add("socket_slow", fmt.Sprintf("not every socket was open after %s", timeout))
			return
		case <-ctx.Done():
			return
		}
	}
}

// drain waits until no acknowledged job is open, at most d. Every ten
// seconds it asks history about jobs quiet for as long, so one that ended
// unseen does not hold the run to the end of d.
func (r *Runner) drain(ctx context.Context, d time.Duration) {
	const quiet = 10 * time.Second
	deadline := time.Now().Add(d)
	nextSweep := time.Now().Add(quiet)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.open() == 0 {
			return
		}
		if time.Now().After(nextSweep) {
			r.sweep(ctx, quiet)
			nextSweep = time.Now().Add(quiet)
		}
		<-tick.C
	}
}

// open counts acknowledged jobs not yet completed or failed.
func (r *Runner) open() int {
	n := 0
	for _, p := range r.parts {
		p.mu.Lock()
		for _, j := range p.jobs {
			if j.acked && !j.done && !j.failed {
				n++
			}
		}
		p.mu.Unlock()
	}
	return n
}

func (r *Runner) unfinished() int { return r.open() }

func (p *participant) hasOpen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, j := range p.jobs {
		if j.acked && !j.done && !j.failed {
			return true
		}
	}
	return false
}

// waitCollecting waits (at most d) until no job is between its
// execution_success and its last output downloaded.
func (r *Runner) waitCollecting(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n := 0
		for _, p := range r.parts {
			p.mu.Lock()
			for _, j := range p.jobs {
				if j.busy {
					n++
				}
			}
			p.mu.Unlock()
		}
		if n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sweep asks history about every open job (quiet for at least quiet) of
// every participant.
func (r *Runner) sweep(ctx context.Context, quiet time.Duration) {
	var wg sync.WaitGroup
	for _, p := range r.parts {
		if !p.hasOpen() {
			continue
		}
		wg.Add(1)
		r.histSem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-r.histSem }()
			p.reconcileAll(r.life, quiet)
		}()
	}
	waitTimeout(&wg, r.cfg.Timeout)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// instances counts the connected GPU instances.
func (r *Runner) instances(ctx context.Context) int {
	var ws struct {
		Workers []struct {
			Connected bool `json:"connected"`
		} `json:"workers"`
	}
	if err := r.adminJSON(ctx, "/api/workers", &ws); err != nil {
		r.probeErrors.add("admin_workers", err.Error())
		return 0
	}
	n := 0
	for _, w := range ws.Workers {
		if w.Connected {
			n++
		}
	}
	return n
}

// serverMetrics is the part of GET /api/metrics this tool reads.
type serverMetrics struct {
	Instances []struct {
		ID           string  `json:"id"`
		BusyFraction float64 `json:"busy_fraction"`
		JobsDone     int     `json:"jobs_done"`
	} `json:"instances"`
	Participants []struct {
		UserID     string  `json:"user_id"`
		Jobs       int     `json:"jobs"`
		GPUSeconds float64 `json:"gpu_seconds"`
	} `json:"participants"`
}

func (r *Runner) serverGPU(ctx context.Context) (*serverMetrics, error) {
	var m serverMetrics
	if err := r.adminJSON(ctx, "/api/metrics", &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// live prints a progress line every second, and samples the server.
func (r *Runner) live(rep *Report, probe *serverProbe, stop chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var srv string
		if rep.Server != nil {
			// /proc each second; /metrics (which costs the server a little)
			// every fifth, or each second when there is no pid.
			if st, ok := probe.sample(r.life, r.cfg.ServerPID == 0 || n%5 == 0); ok {
				peak(&rep.Server.Peak, st)
				srv = fmt.Sprintf("  server rss %.0f MiB fds %d", mib(st.RSSBytes), st.FDs)
				if st.Goroutines > 0 {
					srv += fmt.Sprintf(" goroutines %d", st.Goroutines)
				}
			}
		}
		if r.cfg.Progress == nil {
			continue
		}
		acked, done, failed := r.acked.Load(), r.completed.Load(), r.failed.Load()
		fmt.Fprintf(r.cfg.Progress, "%6.1fs  submitted %d  completed %d  in flight %d  failed %d  429s %d  errors %d  sockets %d/%d  progress %d%s\n",
			time.Since(r.start).Seconds(), acked, done, acked-done-failed, failed, r.rejected.Load(),
			r.errors.count(), r.sockets.Load(), len(r.parts), r.progress.Load(), srv)
	}
}
