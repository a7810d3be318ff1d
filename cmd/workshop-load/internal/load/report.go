package load

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Report is what a run measured.
type Report struct {
	Config    ReportConfig `json:"config"`
	Instances int          `json:"gpu_instances"` // connected when the run started

	JoinSeconds   float64 `json:"join_seconds"`
	SocketSeconds float64 `json:"socket_seconds"`
	SocketsOpen   int     `json:"sockets_open"`

	StartedAt      time.Time `json:"started_at"`      // the start: every socket open, first submissions due
	SubmitSeconds  float64   `json:"submit_seconds"`  // start -> submitting stopped
	ElapsedSeconds float64   `json:"elapsed_seconds"` // start -> drained

	Submitted         int64 `json:"submitted"` // acknowledged (200 with a prompt_id)
	Rejected429       int64 `json:"rejected_429"`
	SubmitErrors      int64 `json:"submit_errors"`
	Completed         int64 `json:"completed"` // every output downloaded
	CompletedInWindow int64 `json:"completed_in_window"`
	Failed            int64 `json:"failed"`
	Unfinished        int   `json:"unfinished"` // acknowledged, neither completed nor failed at the end

	SubmitLatency Percentiles `json:"submit_latency"`
	EndToEnd      Percentiles `json:"end_to_end"` // submit -> every output downloaded

	Throughput        float64 `json:"throughput_jobs_per_s"`         // completed while submitting / submit time
	ThroughputOverall float64 `json:"throughput_overall_jobs_per_s"` // completed / elapsed
	OutputBytes       int64   `json:"output_bytes"`

	SocketMessages int64 `json:"socket_messages"`
	ProgressEvents int64 `json:"progress_events"`
	PreviewFrames  int64 `json:"preview_frames"`

	Errors []ErrorKind `json:"errors"`
	// Failures to sample the server (its /metrics or /proc), apart from
	// the room's errors.
	ProbeErrors []ErrorKind  `json:"server_probe_errors,omitempty"`
	Fairness    Fairness     `json:"fairness"`
	GPU         GPUStats     `json:"gpu"`
	Server      *ServerStats `json:"server,omitempty"`

	Participants []ParticipantStats `json:"participants"`
	Jobs         []JobRecord        `json:"jobs,omitempty"`
}

// ReportConfig echoes the run's settings.
type ReportConfig struct {
	Server       string  `json:"server"`
	Participants int     `json:"participants"`
	SeatsFrom    int     `json:"seats_from"`
	Rate         float64 `json:"rate"`
	Duration     string  `json:"duration"`
	Ramp         string  `json:"ramp,omitempty"`
	Arrival      string  `json:"arrival"`
	Graph        string  `json:"graph"`
	Steps        int     `json:"steps,omitempty"`
	MaxInflight  int     `json:"max_inflight"`
	Heavy        int     `json:"heavy,omitempty"`
	HeavyFactor  float64 `json:"heavy_factor,omitempty"`
}

func reportConfig(c Config) ReportConfig {
	rc := ReportConfig{Server: c.Server, Participants: c.Participants, SeatsFrom: c.SeatsFrom, Rate: c.Rate,
		Duration: c.Duration.String(), Arrival: c.Arrival, Graph: c.Graph, MaxInflight: c.MaxInflight}
	if c.Heavy > 0 {
		rc.Heavy, rc.HeavyFactor = c.Heavy, c.HeavyFactor
	}
	if c.Ramp > 0 {
		rc.Ramp = c.Ramp.String()
	}
	if c.Graph == GraphSampler {
		rc.Steps = c.Steps
	}
	return rc
}

// Fairness between participants, as Jain's index (1 = all equal).
type Fairness struct {
	// Of jobs completed per participant while the room was submitting:
	// equal service when everyone wants more than the GPUs give
	// (round-robin's promise; meaningful when the GPUs are saturated and
	// each participant gets many jobs).
	JainCompleted float64 `json:"jain_completed"`
	// The same, counting what completed while draining too.
	JainCompletedAll float64 `json:"jain_completed_all"`
	// Of completed/submitted per participant: everyone got the same share
	// of what they asked for.
	JainShare float64 `json:"jain_share"`
	// Of GPU time per participant (execution_start -> execution_success on
	// their sockets).
	JainService float64 `json:"jain_service"`
	// Of GPU seconds per participant during the run, from /api/metrics.
	JainServerGPU *float64 `json:"jain_server_gpu_seconds,omitempty"`
	// Jobs completed per participant while submitting.
	MinCompleted  int     `json:"min_completed"`
	MaxCompleted  int     `json:"max_completed"`
	MeanCompleted float64 `json:"mean_completed"`
	// With --heavy: the mean of each group, while submitting.
	MeanHeavy *float64 `json:"mean_completed_heavy,omitempty"`
	MeanLight *float64 `json:"mean_completed_light,omitempty"`
}

// GPUStats is how busy the GPU instances were.
type GPUStats struct {
	Instances int `json:"instances"`
	// Server's GPU seconds (start -> completed, per /api/metrics) added
	// during the run / (elapsed * instances).
	BusyRun *float64 `json:"busy_fraction_run,omitempty"`
	// Run time seen on the sockets / (elapsed * instances).
	BusySockets float64 `json:"busy_fraction_sockets"`
	// The server's own busy_fraction per instance, over its whole history.
	BusyServer  *float64       `json:"busy_fraction_server,omitempty"`
	PerInstance []InstanceBusy `json:"per_instance,omitempty"`
}

// InstanceBusy is one instance's line in /api/metrics.
type InstanceBusy struct {
	ID           string  `json:"id"`
	BusyFraction float64 `json:"busy_fraction"`
	JobsDone     int     `json:"jobs_done"`
}

// ServerStats samples the server: /proc for a local one (--server-pid),
// and its /metrics if it has them.
type ServerStats struct {
	PID         int          `json:"pid,omitempty"`
	Before      ServerSample `json:"before"`       // before anyone joined
	WithSockets ServerSample `json:"with_sockets"` // every socket open, nothing submitted
	Peak        ServerSample `json:"peak"`         // highest of each, sampled each second
	End         ServerSample `json:"end"`          // drained, sockets still open
	AfterClose  ServerSample `json:"after_close"`  // sockets closed
	// The server's CPU time from the first submission to drained (with
	// --server-pid): in all, as a share of one core, and per job submitted.
	// On a shared machine this stays meaningful where latency does not.
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	CPUCores    float64 `json:"cpu_cores,omitempty"`
	CPUPerJobMS float64 `json:"cpu_ms_per_job,omitempty"`
	// From the server's /metrics over the same span: its own time for a
	// submission (to set against the client's), its store's commits and
	// their disk time, its goroutines' wait for a CPU, and its GC pauses.
	Inside map[string]HistogramDelta `json:"inside,omitempty"`
}

// ParticipantStats is one participant's run.
type ParticipantStats struct {
	Seat           int     `json:"seat"`
	Heavy          bool    `json:"heavy,omitempty"`
	Submitted      int     `json:"submitted"`
	Completed      int     `json:"completed"`
	InWindow       int     `json:"completed_in_window"`
	Failed         int     `json:"failed"`
	ServiceSeconds float64 `json:"service_seconds"`
}

// JobRecord is one acknowledged job, in the report with Config.Jobs.
type JobRecord struct {
	ID       string     `json:"id"`
	Seat     int        `json:"seat"`
	Status   string     `json:"status"` // completed, failed, unfinished
	Error    string     `json:"error,omitempty"`
	Runs     int        `json:"runs_seen"` // execution_start events seen
	AtS      float64    `json:"at_s"`      // when it was submitted, seconds from the start
	SubmitMS float64    `json:"submit_ms"`
	E2EMS    float64    `json:"e2e_ms,omitempty"`
	Files    []Download `json:"files,omitempty"`
}

func (r *Runner) fill(rep *Report, end, submitStopped time.Time, unfinished int, before, after *serverMetrics, gerr error) {
	rep.StartedAt = r.start
	rep.ElapsedSeconds = end.Sub(r.start).Seconds()
	rep.SubmitSeconds = submitStopped.Sub(r.start).Seconds()
	rep.Submitted, rep.Rejected429, rep.SubmitErrors = r.acked.Load(), r.rejected.Load(), r.submitErrors.Load()
	rep.Completed, rep.CompletedInWindow, rep.Failed = r.completed.Load(), r.completedInWindow.Load(), r.failed.Load()
	rep.Unfinished = unfinished
	rep.SubmitLatency, rep.EndToEnd = r.submitLat.summary(), r.e2eLat.summary()
	if rep.SubmitSeconds > 0 {
		rep.Throughput = float64(rep.CompletedInWindow) / rep.SubmitSeconds
	}
	if rep.ElapsedSeconds > 0 {
		rep.ThroughputOverall = float64(rep.Completed) / rep.ElapsedSeconds
	}
	rep.OutputBytes = r.bytes.Load()
	rep.SocketMessages, rep.ProgressEvents, rep.PreviewFrames = r.socketMsgs.Load(), r.progress.Load(), r.previews.Load()
	if unfinished > 0 {
		r.errors.add("unfinished", fmt.Sprintf("%d acknowledged jobs had not finished when the run ended", unfinished))
	}
	if gerr != nil {
		r.probeErrors.add("admin_metrics", gerr.Error())
	}

	var window, completed, share, service []float64
	var heavy, light float64
	rep.Fairness.MinCompleted = -1
	for i, p := range r.parts {
		p.mu.Lock()
		ps := ParticipantStats{Seat: p.seat, Heavy: i < r.cfg.Heavy, Submitted: p.submitted, Completed: p.completed, InWindow: p.inWindow,
			Failed: p.failed, ServiceSeconds: p.service.Seconds()}
		if r.cfg.Jobs {
			for _, j := range p.jobs {
				if !j.acked {
					continue
				}
				jr := JobRecord{ID: j.id, Seat: p.seat, Runs: j.runs, AtS: math.Round(j.submitAt.Sub(r.start).Seconds()*1000) / 1000,
					SubmitMS: ms(j.ackAt.Sub(j.submitAt)), Files: j.files}
				switch {
				case j.done:
					jr.Status, jr.E2EMS = "completed", ms(j.e2e)
				case j.failed:
					jr.Status, jr.Error = "failed", strings.TrimSpace(j.errType+": "+j.errMsg)
				default:
					jr.Status = "unfinished"
				}
				rep.Jobs = append(rep.Jobs, jr)
			}
		}
		p.mu.Unlock()
		rep.Participants = append(rep.Participants, ps)
		window = append(window, float64(ps.InWindow))
		completed = append(completed, float64(ps.Completed))
		service = append(service, ps.ServiceSeconds)
		if ps.Submitted > 0 {
			share = append(share, float64(ps.Completed)/float64(ps.Submitted))
		}
		if rep.Fairness.MinCompleted < 0 || ps.InWindow < rep.Fairness.MinCompleted {
			rep.Fairness.MinCompleted = ps.InWindow
		}
		rep.Fairness.MaxCompleted = max(rep.Fairness.MaxCompleted, ps.InWindow)
		rep.Fairness.MeanCompleted += float64(ps.InWindow) / float64(len(r.parts))
		if ps.Heavy {
			heavy += float64(ps.InWindow)
		} else {
			light += float64(ps.InWindow)
		}
	}
	if h := r.cfg.Heavy; h > 0 {
		mh := heavy / float64(h)
		rep.Fairness.MeanHeavy = &mh
		if l := len(r.parts) - h; l > 0 {
			ml := light / float64(l)
			rep.Fairness.MeanLight = &ml
		}
	}
	slices.SortFunc(rep.Jobs, func(a, b JobRecord) int { return strings.Compare(a.ID, b.ID) })
	rep.Fairness.JainCompleted, rep.Fairness.JainCompletedAll = Jain(window), Jain(completed)
	rep.Fairness.JainShare, rep.Fairness.JainService = Jain(share), Jain(service)

	// GPUs.
	rep.GPU.Instances = rep.Instances
	r.busyMu.Lock()
	busy := r.busy
	r.busyMu.Unlock()
	if rep.Instances > 0 && rep.ElapsedSeconds > 0 {
		rep.GPU.BusySockets = min(busy.Seconds()/(rep.ElapsedSeconds*float64(rep.Instances)), 1)
	}
	if after != nil {
		gpu := map[string]float64{}
		total := 0.0
		for _, p := range after.Participants {
			gpu[p.UserID] += p.GPUSeconds
			total += p.GPUSeconds
		}
		if before != nil {
			for _, p := range before.Participants {
				gpu[p.UserID] -= p.GPUSeconds
				total -= p.GPUSeconds
			}
		}
		if before != nil && rep.Instances > 0 && rep.ElapsedSeconds > 0 {
			f := min(total/(rep.ElapsedSeconds*float64(rep.Instances)), 1)
			rep.GPU.BusyRun = &f
		}
		var ours []float64
		for _, p := range r.parts {
			ours = append(ours, max(gpu[fmt.Sprintf("user%03d", p.seat)], 0))
		}
		j := Jain(ours)
		rep.Fairness.JainServerGPU = &j
		sum := 0.0
		for _, in := range after.Instances {
			rep.GPU.PerInstance = append(rep.GPU.PerInstance, InstanceBusy(in))
			sum += in.BusyFraction
		}
		if len(after.Instances) > 0 {
			f := sum / float64(len(after.Instances))
			rep.GPU.BusyServer = &f
		}
	}
	if s := rep.Server; s != nil && len(s.End.hists) > 0 {
		s.Inside = map[string]HistogramDelta{}
		for _, h := range serverHists {
			s.Inside[h.key] = delta(s.WithSockets.hists, s.End.hists, h.key)
		}
	}
	if s := rep.Server; s != nil && s.End.CPUSeconds > 0 && s.WithSockets.CPUSeconds > 0 {
		s.CPUSeconds = s.End.CPUSeconds - s.WithSockets.CPUSeconds
		if rep.ElapsedSeconds > 0 {
			s.CPUCores = s.CPUSeconds / rep.ElapsedSeconds
		}
		if rep.Submitted > 0 {
			s.CPUPerJobMS = 1000 * s.CPUSeconds / float64(rep.Submitted)
		}
	}
	rep.Errors = r.errors.list()
	rep.ProbeErrors = r.probeErrors.list()
}

// WriteText writes the report for people.
func (rep *Report) WriteText(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "\n== workshop-load: %d participants, %.3g submissions/s (%s), %s graph, %s, against %s\n",
		c.Participants, c.Rate, c.Arrival, c.Graph, c.Duration, c.Server)
	fmt.Fprintf(w, "setup          joined in %.1fs; %d/%d sockets open in %.1fs; %d GPU instances\n",
		rep.JoinSeconds, rep.SocketsOpen, c.Participants, rep.SocketSeconds, rep.Instances)
	fmt.Fprintf(w, "jobs           %d submitted, %d completed, %d failed, %d unfinished; %d answered 429, %d submit errors\n",
		rep.Submitted, rep.Completed, rep.Failed, rep.Unfinished, rep.Rejected429, rep.SubmitErrors)
	pl := func(name string, p Percentiles) {
		fmt.Fprintf(w, "%-14s p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms  (n=%d)\n", name, p.P50, p.P90, p.P99, p.Max, p.N)
	}
	pl("submit", rep.SubmitLatency)
	pl("end-to-end", rep.EndToEnd)
	fmt.Fprintf(w, "throughput     %.2f jobs/s while submitting (%.1fs), %.2f jobs/s overall (%.1fs); %.1f MiB of outputs\n",
		rep.Throughput, rep.SubmitSeconds, rep.ThroughputOverall, rep.ElapsedSeconds, mib(rep.OutputBytes))
	fmt.Fprintf(w, "socket         %d messages, %d progress, %d previews\n", rep.SocketMessages, rep.ProgressEvents, rep.PreviewFrames)
	f := rep.Fairness
	fmt.Fprintf(w, "fairness       Jain's index: completed while submitting %.4f (all %.4f), completed/submitted %.4f, GPU time %.4f",
		f.JainCompleted, f.JainCompletedAll, f.JainShare, f.JainService)
	if f.JainServerGPU != nil {
		fmt.Fprintf(w, ", server GPU seconds %.4f", *f.JainServerGPU)
	}
	fmt.Fprintf(w, "\n               completed per participant while submitting: min %d, mean %.1f, max %d", f.MinCompleted, f.MeanCompleted, f.MaxCompleted)
	if f.MeanHeavy != nil {
		fmt.Fprintf(w, "; heavy (%d, x%g) mean %.1f", c.Heavy, c.HeavyFactor, *f.MeanHeavy)
		if f.MeanLight != nil {
			fmt.Fprintf(w, ", light mean %.1f", *f.MeanLight)
		}
	}
	fmt.Fprintln(w)
	g := rep.GPU
	fmt.Fprintf(w, "gpu busy       %.1f%% (socket run times)", 100*g.BusySockets)
	if g.BusyRun != nil {
		fmt.Fprintf(w, ", %.1f%% (server GPU seconds this run)", 100**g.BusyRun)
	}
	if g.BusyServer != nil {
		fmt.Fprintf(w, ", %.1f%% (server busy_fraction, whole history)", 100**g.BusyServer)
	}
	fmt.Fprintf(w, " over %d instances\n", g.Instances)
	if s := rep.Server; s != nil {
		who := "server"
		if s.PID > 0 {
			who = fmt.Sprintf("server pid %d", s.PID)
		}
		fmt.Fprintf(w, "%-14s before        %s\n", who, s.Before)
		fmt.Fprintf(w, "%-14s with sockets  %s\n", "", s.WithSockets)
		fmt.Fprintf(w, "%-14s peak          %s\n", "", s.Peak)
		fmt.Fprintf(w, "%-14s end           %s\n", "", s.End)
		fmt.Fprintf(w, "%-14s sockets shut  %s\n", "", s.AfterClose)
		if s.CPUSeconds > 0 {
			fmt.Fprintf(w, "%-14s cpu           %.2f s while the room ran (%.0f%% of one core), %.3f ms per job submitted\n",
				"", s.CPUSeconds, 100*s.CPUCores, s.CPUPerJobMS)
		}
		for _, h := range serverHists {
			if d, ok := s.Inside[h.key]; ok {
				fmt.Fprintf(w, "%-14s %-13s %s\n", "", h.name, d)
			}
		}
	}
	for _, e := range rep.ProbeErrors {
		fmt.Fprintf(w, "server probe   %d x %s", e.Count, e.Kind)
		if e.Example != "" {
			fmt.Fprintf(w, " (%s)", e.Example)
		}
		fmt.Fprintln(w)
	}
	if len(rep.Errors) == 0 {
		fmt.Fprintf(w, "errors         none\n")
	} else {
		fmt.Fprintf(w, "errors\n")
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "  %7d  %s", e.Count, e.Kind)
			if e.Example != "" {
				fmt.Fprintf(w, "  (%s)", e.Example)
			}
			fmt.Fprintln(w)
		}
	}
}
