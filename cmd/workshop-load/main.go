// Command workshop-load simulates a room of participants against a running
// workshop server: each joins by their seat's link, keeps their ComfyUI
// socket open, submits graphs through /user/{n}/api/prompt at an aggregate
// rate, follows progress and downloads every output. It prints a live line
// every second and, at the end, submission and end-to-end latency
// percentiles, throughput, errors by kind, fairness between participants
// (Jain's index), the GPUs' busy fraction and, for a local server given by
// --server-pid, its memory and open files.
//
//	workshop serve --tls off --listen 127.0.0.1:8080 --seats 200 --admin-token T ...
//	workshop-load --server http://127.0.0.1:8080 --admin-token T --participants 200 --rate 20 --duration 60s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/comfy-workshop/workshop/cmd/workshop-load/internal/load"
)

const (
	exitOK       = 0
	exitFailure  = 1
	exitBadUsage = 2
	exitStrict   = 3 // --strict and some job failed, was lost or errored
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

type options struct {
	cfg      load.Config
	jsonPath string
	quiet    bool
	strict   bool
}

func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("workshop-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: workshop-load --server URL --admin-token T --participants N --rate R --duration D [flags]\n\n"+
			"Simulates N participants against a running workshop server (which needs at least\n"+
			"--seats-from+N-1 seats: `workshop serve --seats N`; from one machine, past about\n"+
			"1,000 participants also --max-conns-per-ip 0). Live progress goes to stderr,\n"+
			"the report to stdout.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	server := getenv("WORKSHOP_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.Server, "server", server, "the running server's root URL (WORKSHOP_SERVER)")
	fs.StringVar(&c.AdminToken, "admin-token", getenv("WORKSHOP_ADMIN_TOKEN"), "the admin token, to list the seats' join codes and read metrics (WORKSHOP_ADMIN_TOKEN)")
	fs.IntVar(&c.Participants, "participants", 20, "simulated participants, one seat each")
	fs.IntVar(&c.SeatsFrom, "seats-from", 1, "first seat to use: participants take seats K..K+N-1")
	fs.Float64Var(&c.Rate, "rate", 1, "submissions per second, all participants together (spread over them)")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "how long to submit")
	fs.DurationVar(&c.Drain, "drain", time.Minute, "then wait at most this long for the jobs in flight")
	fs.DurationVar(&c.Ramp, "ramp", 0, "participants start submitting one after another over this (0: all at once)")
	fs.StringVar(&c.Arrival, "arrival", load.ArrivalPoisson, "arrival process: poisson (independent people) or even (a fixed interval each, staggered)")
	fs.StringVar(&c.Graph, "graph", load.GraphSimple, "graph to submit: simple (EmptyImage, SaveImage) or sampler (KSampler: streams progress and previews)")
	fs.IntVar(&c.Steps, "steps", 20, "sampler steps in the sampler graph (a simulator's --steps overrides it)")
	fs.IntVar(&c.MaxInflight, "max-inflight", 0, "jobs one participant keeps open at most before waiting (0: open loop)")
	fs.IntVar(&c.Heavy, "heavy", 0, "the first K participants want --heavy-factor times as much (rate and --max-inflight)")
	fs.Float64Var(&c.HeavyFactor, "heavy-factor", 5, "how much more the --heavy participants want")
	fs.BoolVar(&c.Insecure, "insecure", false, "do not verify the server's TLS certificate (self-signed)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "pid of a local server: sample its RSS and open files from /proc")
	fs.BoolVar(&c.Cleanup, "cleanup", true, "at the end, cancel this run's unfinished jobs (as their owners can)")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "timeout of one HTTP request")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of arrival times and graph seeds")
	fs.IntVar(&c.JoinParallel, "parallel", 32, "joins and socket dials in flight at once")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this file (- for stdout)")
	fs.BoolVar(&c.Jobs, "jobs", false, "list every acknowledged job (id, status, files) in the JSON report")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress line")
	fs.BoolVar(&o.strict, "strict", false, "exit 3 when any job failed or did not finish, or any error happened")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Defaults()
	if _, err := c.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "workshop-load: %v\nRun 'workshop-load --help' for usage.\n", err)
		return exitBadUsage
	}
	if !o.quiet {
		o.cfg.Progress = stderr
	}
	r, err := load.New(o.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "workshop-load: %v\n", err)
		return exitBadUsage
	}
	rep, err := r.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "workshop-load: %v\n", err)
		return exitFailure
	}
	rep.WriteText(stdout)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		b = append(b, '\n')
		if o.jsonPath == "-" {
			stdout.Write(b)
		} else if err := os.WriteFile(o.jsonPath, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "workshop-load: %v\n", err)
			return exitFailure
		}
	}
	if o.strict && (rep.Failed > 0 || rep.Unfinished > 0 || len(rep.Errors) > 0 || rep.SubmitErrors > 0) {
		return exitStrict
	}
	return exitOK
}
