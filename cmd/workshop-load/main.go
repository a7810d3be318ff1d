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
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/comfy-workshop/workshop/cmd/workshop-load/internal/load"
	"github.com/comfy-workshop/workshop/internal/cli"
)

const (
	exitOK       = cli.ExitOK
	exitFailure  = cli.ExitFailure
	exitBadUsage = cli.ExitUsage
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

// command is workshop-load's command line, parsing into o.
func command(o *options) *cli.Command {
	c := &o.cfg
	fs := flag.NewFlagSet("workshop-load", flag.ContinueOnError)
	fs.StringVar(&c.Server, "server", "http://127.0.0.1:8080", "the running server's root `URL`")
	fs.StringVar(&c.AdminToken, "admin-token", "", "the admin `token`, to list the seats' join codes and read metrics")
	fs.IntVar(&c.Participants, "participants", 20, "simulated participants, one seat each")
	fs.IntVar(&c.SeatsFrom, "seats-from", 1, "first `seat` to use: participants take seats K..K+N-1")
	fs.Float64Var(&c.Rate, "rate", 1, "submissions per second, all participants together (spread over them)")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "how long to submit")
	fs.DurationVar(&c.Drain, "drain", time.Minute, "then wait at most this long for the jobs in flight")
	fs.DurationVar(&c.Ramp, "ramp", 0, "participants start submitting one after another over this (0: all at once)")
	fs.StringVar(&c.Arrival, "arrival", load.ArrivalPoisson, "arrival `process`: poisson (independent people) or even (a fixed interval each, staggered)")
	fs.StringVar(&c.Graph, "graph", load.GraphSimple, "`graph` to submit: simple (EmptyImage, SaveImage) or sampler (KSampler: streams progress and previews)")
	fs.IntVar(&c.Steps, "steps", 20, "sampler steps in the sampler graph (a simulator's --steps overrides it)")
	fs.IntVar(&c.MaxInflight, "max-inflight", 0, "jobs one participant keeps open at most before waiting (0: open loop)")
	fs.IntVar(&c.Heavy, "heavy", 0, "the first K participants want --heavy-factor times as much (rate and --max-inflight)")
	fs.Float64Var(&c.HeavyFactor, "heavy-factor", 5, "how much more the --heavy participants want")
	fs.BoolVar(&c.Insecure, "insecure", false, "do not verify the server's TLS certificate (self-signed)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "`pid` of a local server: sample its RSS and open files from /proc")
	fs.BoolVar(&c.Cleanup, "cleanup", true, "at the end, cancel this run's unfinished jobs (as their owners can)")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "timeout of one HTTP request")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of arrival times and graph seeds")
	fs.IntVar(&c.JoinParallel, "parallel", 32, "joins and socket dials in flight at once")
	fs.StringVar(&o.jsonPath, "json", "", "also write the report as JSON to this `file` (- for stdout)")
	fs.BoolVar(&c.Jobs, "jobs", false, "list every acknowledged job (id, status, files) in the JSON report")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress line")
	fs.BoolVar(&o.strict, "strict", false, "exit 3 when any job failed or did not finish, or any error happened")
	return &cli.Command{
		Name: "workshop-load", FlagSet: fs, Env: "WORKSHOP", EnvFlags: []string{"server", "admin-token"},
		Long: "Simulates N participants (--participants) against a running workshop server, which needs at\n" +
			"least --seats-from+N-1 seats ('workshop serve --seats N'; from one machine, past about 1,000\n" +
			"participants, also --max-conns-per-ip 0). Live progress goes to stderr, the report to stdout.",
		Footer: "Exit status: 0, 1 when the run failed, 2 on invalid flags, 3 with --strict when a job failed,\n" +
			"was lost or errored.\n\nExample:\n" +
			"  workshop-load --server http://127.0.0.1:8080 --admin-token T --participants 200 --rate 20 --duration 60s",
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o := &options{}
	cmd := command(o)
	cmd.Run = func(ctx context.Context, _ []string) error { return o.run(ctx, stdout, stderr) }
	return cli.Run(ctx, cmd, args, cli.IO{Stdout: stdout, Stderr: stderr, Getenv: getenv})
}

func (o *options) run(ctx context.Context, stdout, stderr io.Writer) error {
	o.cfg.Defaults()
	if _, err := o.cfg.Validate(); err != nil {
		return cli.UsageError{Err: err}
	}
	if !o.quiet {
		o.cfg.Progress = stderr
	}
	r, err := load.New(o.cfg)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	rep, err := r.Run(ctx)
	if err != nil {
		return err
	}
	rep.WriteText(stdout)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		b = append(b, '\n')
		if o.jsonPath == "-" {
			stdout.Write(b)
		} else if err := os.WriteFile(o.jsonPath, b, 0o644); err != nil {
			return err
		}
	}
	if o.strict && (rep.Failed > 0 || rep.Unfinished > 0 || len(rep.Errors) > 0 || rep.SubmitErrors > 0) {
		return cli.ExitError{Code: exitStrict}
	}
	return nil
}
