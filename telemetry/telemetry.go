// Package telemetry exports the server's Prometheus metrics: queue depth,
// wait and run times, the dispatch gap between jobs on an instance, busy
// instances, agent connects, HTTP latency, and the Go process itself.
package telemetry

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/store"
)

// Metrics holds the registry and the instruments fed from events.
type Metrics struct {
	reg      *prometheus.Registry
	wait     prometheus.Histogram
	run      prometheus.Histogram
	gap      prometheus.Histogram
	connects *prometheus.CounterVec
	http     *prometheus.HistogramVec
	commit   prometheus.Histogram
	disk     prometheus.Histogram
	batch    prometheus.Histogram
}

// New registers every metric. workers may be nil.
func New(q *sched.Queue, workers func() []dispatch.WorkerStatus) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "workshop_job_wait_seconds", Help: "Time from submission to the start of execution.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
		}),
		run: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "workshop_job_run_seconds", Help: "Time from the start of execution to completion (outputs stored).",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
		}),
		gap: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "workshop_dispatch_gap_seconds", Help: "Idle time of an instance between one job's end and the next job's start.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "workshop_agent_connects_total", Help: "GPU agent tunnel connections, by agent (reconnects included).",
		}, []string{"agent"}),
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "workshop_http_request_duration_seconds", Help: "HTTP request latency by route and status class.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"method", "route", "code"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "workshop_store_commit_seconds", Help: "Time of one group commit of the store, from its start to durable.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}),
		disk: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "workshop_store_disk_seconds", Help: "Time of one commit spent writing pages and fsyncing them.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "workshop_store_commit_writes", Help: "Writes sharing one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
	}
	reg.MustRegister(m.wait, m.run, m.gap, m.connects, m.http, m.commit, m.disk, m.batch,
		// With the scheduler's latencies and the GC's pauses, so that a
		// slow request can be told apart from a busy CPU or a collection.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{
			Matcher: regexp.MustCompile(`^/sched/latencies:seconds$|^/sched/pauses/total/gc:seconds$`),
		})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&stateCollector{q: q, workers: workers})
	return m
}

// stateCollector reads the queue and instances at scrape time.
type stateCollector struct {
	q       *sched.Queue
	workers func() []dispatch.WorkerStatus
}

var (
	descJobs      = prometheus.NewDesc("workshop_jobs", "Jobs by status.", []string{"status"}, nil)
	descPaused    = prometheus.NewDesc("workshop_queue_paused", "1 while the queue is paused.", nil, nil)
	descBusy      = prometheus.NewDesc("workshop_instance_busy", "1 while the instance executes a job.", []string{"instance"}, nil)
	descConnected = prometheus.NewDesc("workshop_instance_connected", "1 while the instance is reachable through its agent.", []string{"instance"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJobs
	ch <- descPaused
	ch <- descBusy
	ch <- descConnected
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.q.Status()
	for s, n := range st.Counts {
		ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(n), string(s))
	}
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, b2f(st.Paused))
	if c.workers == nil {
		return
	}
	for _, w := range c.workers() {
		ch <- prometheus.MustNewConstMetric(descBusy, prometheus.GaugeValue, b2f(w.State == "busy"), w.ID)
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b2f(w.Connected), w.ID)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Run feeds the event-driven metrics until ctx ends.
func (m *Metrics) Run(ctx context.Context, bus *sched.Bus) {
	ended := map[string]time.Time{} // instance -> its last job's end
	bus.Follow(ctx, 8192, func(e sched.Event) bool {
		return e.Type == sched.EventJobProgress || e.Type == sched.EventJobUpdated || e.Type == sched.EventAgent
	}, func(e sched.Event) { m.observe(e, ended) })
}

func (m *Metrics) observe(e sched.Event, ended map[string]time.Time) {
	switch e.Type {
	case sched.EventJobProgress:
		p := e.Progress
		switch p.Stage {
		case "collecting":
			ended[p.Worker] = time.Now()
		case "executing":
			if t, ok := ended[p.Worker]; ok && p.Node == "" && p.Max == 0 {
				m.gap.Observe(time.Since(t).Seconds())
				delete(ended, p.Worker)
			}
		}
	case sched.EventJobUpdated:
		j := e.Job
		if j.Status != workshop.StatusCompleted || j.StartedAt == nil || j.CompletedAt == nil {
			return
		}
		m.wait.Observe(j.StartedAt.Sub(j.CreatedAt).Seconds())
		m.run.Observe(j.CompletedAt.Sub(*j.StartedAt).Seconds())
	case sched.EventAgent:
		var d struct{ Agent, Action string }
		if json.Unmarshal(e.Data, &d) == nil && d.Action == "connected" {
			m.connects.WithLabelValues(d.Agent).Inc()
		}
	}
}

// ObserveCommit records one store commit (store.DB.OnCommit).
func (m *Metrics) ObserveCommit(st store.CommitStats) {
	m.commit.Observe(st.Took.Seconds())
	m.disk.Observe(st.Disk.Seconds())
	m.batch.Observe(float64(st.Writes))
}

// Middleware times every HTTP request by its route pattern (not its path,
// which would make a series per job id) and its status class. An error
// from further in is answered here, by the app's error handler, so the
// status counted is the one sent (a 404 is a 4xx, not a 5xx).
func (m *Metrics) Middleware(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := c.App().Config().ErrorHandler(c, err); herr != nil {
			c.Status(fiber.StatusInternalServerError)
		}
	}
	code := c.Response().StatusCode()
	// Fiber's strings point into buffers it reuses: copy what the registry keeps.
	m.http.WithLabelValues(strings.Clone(c.Method()), strings.Clone(routeOf(c)), strconv.Itoa(code/100)+"xx").Observe(time.Since(start).Seconds())
	return nil
}

// routeOf is the pattern of the last route a request reached. One that
// stopped in a group's middleware (a 401 under /api) is the group with
// "/*"; one that no route but the root middleware took is "unmatched".
// Fiber does not say which routes are middleware: a pattern without
// parameters that is not the path itself matched as a prefix.
func routeOf(c *fiber.Ctx) string {
	r := c.Route()
	switch {
	case r == nil:
		return "unmatched"
	case strings.ContainsAny(r.Path, ":*+") || strings.EqualFold(r.Path, c.Path()):
		return r.Path
	case strings.TrimSuffix(r.Path, "/") == "":
		return "unmatched"
	}
	return strings.TrimSuffix(r.Path, "/") + "/*"
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
