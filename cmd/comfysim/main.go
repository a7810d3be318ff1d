// Command comfysim runs the ComfyUI simulator (package comfy/sim): a
// server that speaks ComfyUI's HTTP and WebSocket API, validates and
// "executes" graphs with timed steps and previews, and writes real,
// deterministic images. It backs tests, the demo and load benchmarks.
//
// It prints "comfysim listening on http://HOST:PORT" on stdout once it
// accepts connections (useful with --listen 127.0.0.1:0) and logs to
// stderr. SIGINT or SIGTERM stop it cleanly.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen, logLevel, logFormat, promptIDs, without string
	stepMS                                          float64
	cfg                                             sim.Config
	viewDelay                                       time.Duration
}

// command is comfysim's command line, parsing into o.
func command(o *options) *cli.Command {
	fs := flag.NewFlagSet("comfysim", flag.ContinueOnError)
	c := &o.cfg
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8188", "`address` to listen on; port 0 picks a free port")
	fs.StringVar(&c.OutputDir, "output-dir", "", "output `folder` (default: a temporary folder, removed on exit)")
	fs.StringVar(&c.InputDir, "input-dir", "", "input `folder` for uploads (default: a temporary folder)")
	fs.StringVar(&c.TempDir, "temp-dir", "", "temp `folder` for previews (default: a temporary folder)")
	fs.StringVar(&c.UserDir, "user-dir", "", "user `folder` for settings and saved workflows (default: a temporary folder)")
	fs.StringVar(&c.ModelsDir, "models-dir", "", "scan this `folder` like ComfyUI's models/ (default: a fixed model list)")
	fs.StringVar(&c.FrontEndRoot, "front-end-root", "", "serve this ComfyUI frontend build `folder` at / (default: the simulator's own page)")
	fs.Float64Var(&o.stepMS, "step-ms", 50, "`milliseconds` per sampler step")
	fs.IntVar(&c.Steps, "steps", 0, "steps per sampler node; 0 uses each node's own steps (20 when it has none)")
	fs.BoolVar(&c.DisableCache, "cache-none", false, "re-run every node of every prompt (ComfyUI's --cache-none)")
	fs.BoolVar(&c.DisableMetadata, "disable-metadata", false, "leave prompt/workflow metadata out of PNGs")
	fs.StringVar(&o.promptIDs, "prompt-ids", "uuid", "client prompt_id `handling`: uuid (current ComfyUI), any, or ignore (ComfyUI before mid-2025)")
	fs.BoolVar(&c.MissingNodeType, "missing-node-type", false, "report unknown nodes as missing_node_type (ComfyUI since Feb 2026)")
	fs.StringVar(&o.without, "without-nodes", "", "comma-separated node `classes` this instance does not have (as one without a custom node)")
	fs.BoolVar(&c.Legacy, "legacy", false, "behave as ComfyUI before mid-2025 (2024-08-15): ignore client prompt_ids, older error shapes, no progress_state or feature flags")
	fs.BoolVar(&c.Instant, "instant", false, "run prompts at once and answer POST /prompt only after every event of the run is sent (as a cached graph on a real ComfyUI)")
	fs.Int64Var(&c.MaxUploadSize, "max-upload-size", 100<<20, "largest request body in `bytes`")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	faults := []string{"fail-node", "fail-message", "oom-node", "hang-node", "crash-node", "drop-ws-at-step", "view-delay", "view-bytes-per-sec", "progress-text"}
	fs.StringVar(&c.Faults.FailNode, "fail-node", "", "this `node` (id or class) raises an exception (execution_error)")
	fs.StringVar(&c.Faults.FailMessage, "fail-message", "", "exception `text` for --fail-node")
	fs.StringVar(&c.Faults.OOMNode, "oom-node", "", "this `node` (id or class; * for every node) fails with torch.OutOfMemoryError, as a GPU out of memory does")
	fs.StringVar(&c.Faults.HangNode, "hang-node", "", "this `node` (id or class) blocks until interrupted")
	fs.StringVar(&c.Faults.CrashNode, "crash-node", "", "the process exits (status 3) when this `node` (id or class) starts")
	fs.IntVar(&c.Faults.DropWSAtStep, "drop-ws-at-step", 0, "cut every WebSocket when a sampler reaches this `step` (once per prompt)")
	fs.DurationVar(&o.viewDelay, "view-delay", 0, "wait this long before answering /view")
	fs.Int64Var(&c.Faults.ViewBytesPerSec, "view-bytes-per-sec", 0, "throttle /view bodies to this `rate`")
	fs.BoolVar(&c.Faults.ProgressText, "progress-text", false, "samplers also send a binary progress-text frame")
	return &cli.Command{
		Name: "comfysim", FlagSet: fs,
		Long: "A ComfyUI simulator: ComfyUI's API, bare and under /api, with simulated execution.\n" +
			"Extra routes: GET /sim/stats, GET|POST /sim/fault, POST /sim/drop_ws.\n" +
			"Per-prompt faults: POST /prompt with extra_data {\"sim\": {\"fail_node\": \"KSampler\", ...}}.",
		Sections: []cli.Section{{Title: "Faults", Flags: faults}},
	}
}

// check validates the parsed flags.
func (o *options) check() error {
	c := &o.cfg
	if o.stepMS < 0 {
		return fmt.Errorf("--step-ms must not be negative")
	}
	if c.Steps < 0 {
		return fmt.Errorf("--steps must not be negative")
	}
	c.StepDelay = time.Duration(o.stepMS * float64(time.Millisecond))
	c.Faults.ViewDelay = sim.Duration(o.viewDelay)
	if o.without != "" {
		c.WithoutNodes = strings.Split(o.without, ",")
	}
	c.PromptIDs = sim.PromptIDPolicy(o.promptIDs)
	switch c.PromptIDs {
	case sim.PromptIDUUID, sim.PromptIDAny, sim.PromptIDIgnore:
	default:
		return fmt.Errorf("--prompt-ids must be uuid, any or ignore, not %q", o.promptIDs)
	}
	return nil
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(o.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", o.logFormat)
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := &options{}
	cmd := command(o)
	cmd.Run = func(ctx context.Context, _ []string) error { return o.serve(ctx, stdout, stderr) }
	return cli.Run(ctx, cmd, args, cli.IO{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
}

// serve runs the simulator until ctx ends.
func (o *options) serve(ctx context.Context, stdout, stderr io.Writer) error {
	if err := o.check(); err != nil {
		return cli.UsageError{Err: err}
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	o.cfg.Logger = log
	s, err := sim.New(o.cfg)
	if err != nil {
		return err
	}
	defer s.Close()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "comfysim listening on http://%s\n", ln.Addr())
	log.Info("listening", "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		log.Error("server stopped", "err", err)
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Stop the simulator first: it drops the sockets, which Shutdown does
	// not wait for, and interrupts a running prompt.
	_ = s.Close()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
		_ = srv.Close()
	}
	return nil
}
