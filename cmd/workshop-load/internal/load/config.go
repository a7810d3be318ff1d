// Package load simulates a room of workshop participants against a running
// server: each joins by their seat's link, keeps the participant socket
// open, submits graphs through /user/{n}/api/prompt at a given aggregate
// rate, follows their jobs on the socket and downloads every output, as the
// stock ComfyUI frontend does. It measures submission and end-to-end
// latency, throughput, errors, fairness between participants, the GPUs'
// busy fraction and (for a local server) the server's memory and files.
package load

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// Arrival processes.
const (
	ArrivalPoisson = "poisson" // exponential gaps: a room of independent people
	ArrivalEven    = "even"    // one submission every N/R seconds per participant, staggered
)

// Graphs.
const (
	GraphSimple  = "simple"  // EmptyImage -> SaveImage: no models, no steps
	GraphSampler = "sampler" // checkpoint, prompts, KSampler, VAE decode, save: streams progress
)

// Config is one load run.
type Config struct {
	Server       string        // base URL of the server, e.g. http://127.0.0.1:8080
	AdminToken   string        // to list the seats' join codes (and read metrics)
	Participants int           // N
	SeatsFrom    int           // participants take seats SeatsFrom .. SeatsFrom+N-1
	Rate         float64       // submissions per second, all participants together
	Duration     time.Duration // submitting stops after this
	Ramp         time.Duration // participants start submitting spread over this
	Drain        time.Duration // then wait this long at most for jobs in flight
	Arrival      string        // poisson or even
	Graph        string        // simple or sampler
	Steps        int           // sampler steps in the sampler graph
	MaxInflight  int           // per participant; 0: open loop
	Heavy        int           // the first Heavy participants want HeavyFactor times as much
	HeavyFactor  float64       // (rate and max in flight): one who queues twenty jobs
	Insecure     bool          // skip TLS verification (self-signed server)
	ServerPID    int           // a local server's pid: RSS and open files are sampled
	Cleanup      bool          // at the end, cancel this run's unfinished jobs
	Timeout      time.Duration // per HTTP request
	Seed         uint64        // arrival times and graph seeds
	JoinParallel int           // joins and socket dials in flight at once

	// Progress gets a live line every second; nil for none.
	Progress io.Writer
	// Jobs keeps every job in the report (for the soak test).
	Jobs bool
}

// Defaults fills what is unset.
func (c *Config) Defaults() {
	if c.SeatsFrom == 0 {
		c.SeatsFrom = 1
	}
	if c.Arrival == "" {
		c.Arrival = ArrivalPoisson
	}
	if c.Graph == "" {
		c.Graph = GraphSimple
	}
	if c.Steps == 0 {
		c.Steps = 20
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.HeavyFactor == 0 {
		c.HeavyFactor = 5
	}
	if c.JoinParallel == 0 {
		c.JoinParallel = 32
	}
}

// Validate checks the configuration and returns the server's base URL.
func (c *Config) Validate() (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(c.Server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server must be an http:// or https:// URL, not %q", c.Server)
	}
	if u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("--server must be the server's root URL (no path), not %q", c.Server)
	}
	switch {
	case c.AdminToken == "":
		return nil, fmt.Errorf("--admin-token is required (it lists the seats' join codes)")
	case c.Participants < 1:
		return nil, fmt.Errorf("--participants must be at least 1")
	case c.SeatsFrom < 1:
		return nil, fmt.Errorf("--seats-from must be at least 1")
	case c.Rate < 0:
		return nil, fmt.Errorf("--rate must not be negative")
	case c.Duration <= 0:
		return nil, fmt.Errorf("--duration must be positive")
	case c.Ramp < 0 || c.Ramp > c.Duration:
		return nil, fmt.Errorf("--ramp must be from 0 to --duration")
	case c.Drain < 0:
		return nil, fmt.Errorf("--drain must not be negative")
	case c.Arrival != ArrivalPoisson && c.Arrival != ArrivalEven:
		return nil, fmt.Errorf("--arrival must be poisson or even, not %q", c.Arrival)
	case c.Graph != GraphSimple && c.Graph != GraphSampler:
		return nil, fmt.Errorf("--graph must be simple or sampler, not %q", c.Graph)
	case c.Steps < 1 || c.Steps > 10000:
		return nil, fmt.Errorf("--steps must be from 1 to 10000")
	case c.MaxInflight < 0:
		return nil, fmt.Errorf("--max-inflight must not be negative")
	case c.Heavy < 0 || c.Heavy > c.Participants:
		return nil, fmt.Errorf("--heavy must be from 0 to --participants")
	case c.HeavyFactor < 1:
		return nil, fmt.Errorf("--heavy-factor must be at least 1")
	}
	return u, nil
}
