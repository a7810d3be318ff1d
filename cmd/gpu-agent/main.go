// Command gpu-agent runs on a GPU host. It dials out to the workshop server
// (no listening socket, no VPN), authenticates with the agent token, and
// carries a yamux tunnel through which the server reaches the host's local
// ComfyUI instances. It reports their health and the GPUs' load every few
// seconds and reconnects by itself after any network loss.
//
// With --models it first makes sure the model files of a manifest are in
// ComfyUI's models folder (downloading, resuming and verifying them; see
// package models), and only then connects: a host without its models must
// not take jobs.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/internal/version"
	"github.com/comfy-workshop/workshop/models"
	"github.com/comfy-workshop/workshop/tunnel"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK       = cli.ExitOK
	exitFailure  = cli.ExitFailure
	exitBadUsage = cli.ExitUsage
	exitModels   = 3 // a model cannot be had without a fix (404, wrong hash, full disk)
)

// envPrefix makes every flag --some-flag default to $GPU_AGENT_SOME_FLAG.
const envPrefix = "GPU_AGENT"

// Environment variables named in messages and tests.
var (
	envServer            = cli.EnvName(envPrefix, "server")
	envToken             = cli.EnvName(envPrefix, "token")
	envComfy             = cli.EnvName(envPrefix, "comfy")
	envName              = cli.EnvName(envPrefix, "name")
	envInterval          = cli.EnvName(envPrefix, "report-interval")
	envInsecure          = cli.EnvName(envPrefix, "insecure")
	envFingerprint       = cli.EnvName(envPrefix, "server-fingerprint")
	envModels            = cli.EnvName(envPrefix, "models")
	envModelsDir         = cli.EnvName(envPrefix, "models-dir")
	envModelsOptional    = cli.EnvName(envPrefix, "models-optional")
	envModelsConcurrency = cli.EnvName(envPrefix, "models-concurrency")
)

// run is main, testable: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o := &options{}
	cmd := command(o)
	cmd.Run = func(context.Context, []string) error {
		if err := o.check(); err != nil {
			return cli.UsageError{Err: err}
		}
		return o.run(getenv, stderr)
	}
	return cli.Run(context.Background(), cmd, args, cli.IO{Stdout: stdout, Stderr: stderr, Getenv: getenv})
}

// run connects the agent until SIGINT or SIGTERM.
func (o *options) run(getenv func(string) string, stderr io.Writer) error {
	log := newLogger(stderr, o.logFormat, o.logLevel)
	tlsCfg, err := tunnel.TLSOptions{
		CAFile:            o.caFile,
		Insecure:          o.insecure,
		FingerprintSHA256: o.fingerprint,
	}.Config()
	if err != nil {
		return cli.UsageError{Err: err}
	}
	probe := newProber(o.instances, log)
	agent, err := tunnel.NewAgent(tunnel.AgentConfig{
		ServerURL:      o.server,
		Token:          o.token,
		Name:           o.name,
		Version:        version.String(),
		Instances:      o.instances,
		TLSConfig:      tlsCfg,
		Report:         probe.Report,
		ReportInterval: o.reportInterval,
		QueueTarget:    cmp.Or(o.queueTarget, -1), // the config's 0 is its default
		Logger:         log,
	})
	if err != nil {
		return cli.UsageError{Err: err}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	names := make([]string, len(o.instances))
	for i, in := range o.instances {
		names[i] = in.Name + "=" + in.URL
	}
	log.Info("gpu-agent starting", "version", version.String(), "server", redact(o.server), "name", o.name,
		"instances", strings.Join(names, " "), "report_interval", o.reportInterval, "nvidia_smi", probe.smi != "")
	// Models first: the agent connects only once the host can run the jobs.
	if code, ok := syncModels(ctx, o, getenv, log, stderr, probe); !ok {
		if code == exitOK {
			return nil
		}
		return cli.ExitError{Code: code}
	}
	err = agent.Run(ctx)
	switch {
	case errors.Is(err, tunnel.ErrUnauthorized):
		return fmt.Errorf("the server rejected the agent token (check --token or %s): %v", envToken, err)
	case err != nil:
		return err
	}
	log.Info("gpu-agent stopped")
	return nil
}

type options struct {
	server         string
	token          string
	tokenFile      string
	comfy          cli.List
	name           string
	reportInterval time.Duration
	queueTarget    time.Duration
	insecure       bool
	fingerprint    string
	caFile         string
	logFormat      string
	logLevel       string

	modelsFile        string
	modelsDir         string
	modelsOptional    bool
	modelsConcurrency int

	instances    []tunnel.Instance
	modelEntries []models.Entry
}

// command is gpu-agent's command line, parsing into o.
func command(o *options) *cli.Command {
	fs := flag.NewFlagSet("gpu-agent", flag.ContinueOnError)
	fs.StringVar(&o.server, "server", "", "the workshop server's base `URL`, http:// or https://")
	fs.StringVar(&o.token, "token", "", "the agent `token`, as 'workshop serve' printed it")
	fs.StringVar(&o.tokenFile, "token-file", "", "read the token from this `file` instead")
	fs.Var(&o.comfy, "comfy", "a local ComfyUI instance's `URL`, repeatable; instances are named 0, 1, ... in order, "+
		"or write NAME=URL (the variable takes a comma-separated list)")
	fs.StringVar(&o.name, "name", "", "the agent's `name` on the server (default: the hostname); a second agent with the same name replaces the first")
	fs.DurationVar(&o.reportInterval, "report-interval", 5*time.Second, "time between status reports")
	fs.DurationVar(&o.queueTarget, "queue-target", tunnel.DefaultQueueTarget, "the queueing `delay` a large output on its way to the server may add, on a slow uplink, "+
		"to the host's other requests and events: past it the output is paced; 0 turns pacing off")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server's TLS certificate")
	fs.StringVar(&o.fingerprint, "server-fingerprint", "", "accept exactly the server certificate with this SHA-256 `fingerprint` "+
		"(hex, colons allowed), e.g. a self-signed one")
	fs.StringVar(&o.caFile, "ca-file", "", "also trust the CA certificates in this PEM `file`")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format` on stderr: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&o.modelsFile, "models", "", "the model manifest, a YAML `file` (below)")
	fs.StringVar(&o.modelsDir, "models-dir", "", "ComfyUI's models `folder`, e.g. /opt/ComfyUI/models")
	fs.BoolVar(&o.modelsOptional, "models-optional", false, "connect even if some models could not be had; they are logged as missing")
	fs.IntVar(&o.modelsConcurrency, "models-concurrency", 2, "files downloaded at once")
	return &cli.Command{
		Name: "gpu-agent", FlagSet: fs, Env: envPrefix,
		Long: `Runs on a GPU host. It dials out to the workshop server over its HTTP(S) port
(GET /tunnel with an HTTP upgrade, so no port needs to be open on the GPU host),
authenticates with the agent token and carries a multiplexed tunnel through
which the server reaches the local ComfyUI instances. It reports their health
(GET /system_stats) and the GPUs' load (nvidia-smi, when present) every few
seconds, and reconnects by itself with backoff after any network loss. SIGINT
or SIGTERM stops it cleanly.

--server, --token (or --token-file) and --comfy are required. Every flag can
also be set by the environment variable shown; a flag wins.`,
		Sections: []cli.Section{{
			Title: "Models (optional)",
			Text: "Before connecting, make sure every model of a manifest is in ComfyUI's models folder with the right sha256; " +
				"download what is missing or wrong (resuming partial downloads, verified hashes, progress in the log). " +
				"The agent connects only when all are in place. Verified hashes are cached in DIR/.workshop-models.json, " +
				"so a restart does not hash the files again.",
			Flags: []string{"models", "models-dir", "models-optional", "models-concurrency"},
		}},
		Footer: `A manifest lists the models:
  - folder: checkpoints
    file: sd_xl_base_1.0.safetensors
    url: https://huggingface.co/.../sd_xl_base_1.0.safetensors
    sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b
    size: 6938078334        # optional, bytes
Gated models: HF_TOKEN is sent to huggingface.co, CIVITAI_TOKEN to civitai.com.

Exit status: 0 after SIGINT/SIGTERM, 1 when the server rejects the token or
model downloads failed on network errors (start again to resume), 2 on invalid
flags or manifest, 3 when a model cannot be had without a fix (404, access
denied, wrong sha256 or size, full disk).

Example:
  GPU_AGENT_TOKEN=... gpu-agent --server https://workshop.example.org \
      --comfy http://127.0.0.1:8188 --comfy http://127.0.0.1:8189`,
	}
}

// check validates the parsed flags and derives the instances and models.
func (o *options) check() error {
	if o.server == "" {
		return fmt.Errorf("--server (or %s) is required", envServer)
	}
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: want an http:// or https:// URL", o.server)
	}
	if o.token == "" && o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %v", err)
		}
		o.token = strings.TrimSpace(string(b))
	}
	if o.token == "" {
		return fmt.Errorf("--token (or %s, or --token-file) is required", envToken)
	}
	if len(o.comfy) == 0 {
		return fmt.Errorf("--comfy (or %s) is required: the URL of at least one local ComfyUI", envComfy)
	}
	if o.instances, err = parseInstances(o.comfy); err != nil {
		return err
	}
	if o.name == "" {
		if o.name, err = os.Hostname(); err != nil || o.name == "" {
			return errors.New("--name is required: the hostname is unknown")
		}
	}
	if !tunnel.ValidName(o.name) {
		return fmt.Errorf("--name %q: use 1-128 letters, digits, '.', '_', ':', '@' or '-'", o.name)
	}
	if o.reportInterval < 100*time.Millisecond {
		return fmt.Errorf("--report-interval %v: must be at least 100ms", o.reportInterval)
	}
	if o.queueTarget < 0 {
		return fmt.Errorf("--queue-target %v: must not be negative", o.queueTarget)
	}
	if o.fingerprint != "" {
		if _, err := tunnel.ParseFingerprint(o.fingerprint); err != nil {
			return fmt.Errorf("--server-fingerprint: %v", err)
		}
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return err
	}
	return o.parseModels()
}

// parseInstances names instances "0", "1", ... by position, or NAME=URL.
func parseInstances(specs []string) ([]tunnel.Instance, error) {
	var out []tunnel.Instance
	seen := map[string]bool{}
	for i, spec := range specs {
		name, raw := strconv.Itoa(i), spec
		if eq := strings.Index(spec, "="); eq > 0 {
			if scheme := strings.Index(spec, "://"); scheme < 0 || eq < scheme {
				name, raw = spec[:eq], spec[eq+1:]
			}
		}
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--comfy %q: want http://HOST:PORT or NAME=http://HOST:PORT", spec)
		}
		if !tunnel.ValidName(name) {
			return nil, fmt.Errorf("--comfy %q: invalid instance name %q", spec, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("--comfy %q: instance name %q used twice", spec, name)
		}
		seen[name] = true
		out = append(out, tunnel.Instance{Name: name, URL: strings.TrimSuffix(u.String(), "/")})
	}
	return out, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// redact hides a password in a URL.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}

// parseModels loads and checks the models manifest and folder.
func (o *options) parseModels() error {
	if o.modelsFile == "" {
		return nil
	}
	if o.modelsDir == "" {
		return errNoModelsDir
	}
	fi, err := os.Stat(o.modelsDir)
	if err != nil {
		return fmt.Errorf("--models-dir: %v (it should be ComfyUI's models folder)", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--models-dir %s: not a directory", o.modelsDir)
	}
	if o.modelsConcurrency < 1 || o.modelsConcurrency > 16 {
		return fmt.Errorf("--models-concurrency %d: want 1 to 16", o.modelsConcurrency)
	}
	o.modelEntries, err = models.LoadManifest(o.modelsFile)
	if err != nil {
		return fmt.Errorf("--models: %v", err)
	}
	return nil
}
