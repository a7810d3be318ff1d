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
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/comfy-workshop/workshop/models"
	"github.com/comfy-workshop/workshop/tunnel"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func agentVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK       = 0
	exitFailure  = 1
	exitBadUsage = 2
	exitModels   = 3 // a model cannot be had without a fix (404, wrong hash, full disk)
)

// run is main, testable: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "gpu-agent: %v\nRun 'gpu-agent --help' for usage.\n", err)
		return exitBadUsage
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "gpu-agent", agentVersion())
		return exitOK
	}
	log := newLogger(stderr, opts.logFormat, opts.logLevel)

	tlsCfg, err := tunnel.TLSOptions{
		CAFile:            opts.caFile,
		Insecure:          opts.insecure,
		FingerprintSHA256: opts.fingerprint,
	}.Config()
	if err != nil {
		fmt.Fprintf(stderr, "gpu-agent: %v\n", err)
		return exitBadUsage
	}
	probe := newProber(opts.instances, log)
	agent, err := tunnel.NewAgent(tunnel.AgentConfig{
		ServerURL:      opts.server,
		Token:          opts.token,
		Name:           opts.name,
		Version:        agentVersion(),
		Instances:      opts.instances,
		TLSConfig:      tlsCfg,
		Report:         probe.Report,
		ReportInterval: opts.reportInterval,
		Logger:         log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "gpu-agent: %v\n", err)
		return exitBadUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	names := make([]string, len(opts.instances))
	for i, in := range opts.instances {
		names[i] = in.Name + "=" + in.URL
	}
	log.Info("gpu-agent starting", "version", agentVersion(), "server", redact(opts.server), "name", opts.name,
		"instances", strings.Join(names, " "), "report_interval", opts.reportInterval, "nvidia_smi", probe.smi != "")
	// Models first: the agent connects only once the host can run the jobs.
	if code, ok := syncModels(ctx, opts, getenv, log, stderr, probe); !ok {
		return code
	}
	err = agent.Run(ctx)
	switch {
	case errors.Is(err, tunnel.ErrUnauthorized):
		fmt.Fprintf(stderr, "gpu-agent: the server rejected the agent token (check --token or %s): %v\n", envToken, err)
		return exitFailure
	case err != nil:
		fmt.Fprintf(stderr, "gpu-agent: %v\n", err)
		return exitFailure
	}
	log.Info("gpu-agent stopped")
	return exitOK
}

// Environment variables, each the default of a flag.
const (
	envServer      = "GPU_AGENT_SERVER"
	envToken       = "GPU_AGENT_TOKEN"
	envTokenFile   = "GPU_AGENT_TOKEN_FILE"
	envComfy       = "GPU_AGENT_COMFY"
	envName        = "GPU_AGENT_NAME"
	envInterval    = "GPU_AGENT_REPORT_INTERVAL"
	envInsecure    = "GPU_AGENT_INSECURE"
	envFingerprint = "GPU_AGENT_SERVER_FINGERPRINT"
	envCAFile      = "GPU_AGENT_CA_FILE"
	envLogFormat   = "GPU_AGENT_LOG_FORMAT"
	envLogLevel    = "GPU_AGENT_LOG_LEVEL"

	envModels            = "GPU_AGENT_MODELS"
	envModelsDir         = "GPU_AGENT_MODELS_DIR"
	envModelsOptional    = "GPU_AGENT_MODELS_OPTIONAL"
	envModelsConcurrency = "GPU_AGENT_MODELS_CONCURRENCY"
)

type options struct {
	server         string
	token          string
	tokenFile      string
	comfy          stringList
	name           string
	reportInterval time.Duration
	insecure       bool
	fingerprint    string
	caFile         string
	logFormat      string
	logLevel       string
	showVersion    bool

	modelsFile        string
	modelsDir         string
	modelsOptional    bool
	modelsConcurrency int

	instances    []tunnel.Instance
	modelEntries []models.Entry
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

const usageText = `Usage: gpu-agent --server URL --token TOKEN --comfy URL [--comfy URL ...] [flags]

gpu-agent runs on a GPU host. It dials out to the workshop server over its
HTTP(S) port (GET /tunnel with an HTTP upgrade, so no port needs to be open on
the GPU host), authenticates with the agent token and carries a multiplexed
tunnel through which the server reaches the local ComfyUI instances. It
reports their health (GET /system_stats) and the GPUs' load (nvidia-smi, when
present) every few seconds, and reconnects by itself with backoff after any
network loss. SIGINT or SIGTERM stops it cleanly.

Every flag can also be set by the environment variable shown; a flag wins.

Flags:
  --server URL             server base URL, http:// or https:// ($GPU_AGENT_SERVER)
  --token TOKEN            agent token, as printed by 'workshop serve' ($GPU_AGENT_TOKEN)
  --token-file FILE        read the token from FILE instead ($GPU_AGENT_TOKEN_FILE)
  --comfy URL              a local ComfyUI instance, repeatable; instances are named
                           0, 1, ... in order, or write NAME=URL
                           ($GPU_AGENT_COMFY, comma-separated)
  --name NAME              agent name shown on the server; default: the hostname.
                           A second agent with the same name replaces the first.
                           ($GPU_AGENT_NAME)
  --report-interval D      time between status reports, e.g. 5s ($GPU_AGENT_REPORT_INTERVAL)
  --insecure               do not verify the server's TLS certificate ($GPU_AGENT_INSECURE)
  --server-fingerprint HEX accept exactly the server certificate with this SHA-256
                           fingerprint (hex, colons allowed), e.g. a self-signed one
                           ($GPU_AGENT_SERVER_FINGERPRINT)
  --ca-file FILE           also trust the CA certificates in this PEM file ($GPU_AGENT_CA_FILE)
  --log-format text|json   log format on stderr, default text ($GPU_AGENT_LOG_FORMAT)
  --log-level LEVEL        debug, info, warn or error, default info ($GPU_AGENT_LOG_LEVEL)

Models (optional): before connecting, make sure every model of a manifest is in
ComfyUI's models folder with the right sha256; download what is missing or wrong
(resuming partial downloads, verified hashes, progress in the log). The agent
connects only when all are in place. Verified hashes are cached in
DIR/.workshop-models.json so a restart does not hash the files again.
  --models FILE            the manifest, YAML ($GPU_AGENT_MODELS):
                             - folder: checkpoints
                               file: sd_xl_base_1.0.safetensors
                               url: https://huggingface.co/.../sd_xl_base_1.0.safetensors
                               sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b
                               size: 6938078334        # optional, bytes
  --models-dir DIR         ComfyUI's models folder, e.g. /opt/ComfyUI/models ($GPU_AGENT_MODELS_DIR)
  --models-optional        connect even if some models could not be had; they are
                           logged as missing ($GPU_AGENT_MODELS_OPTIONAL)
  --models-concurrency N   files downloaded at once, default 2 ($GPU_AGENT_MODELS_CONCURRENCY)
  Gated models: HF_TOKEN is sent to huggingface.co, CIVITAI_TOKEN to civitai.com.

  --version                print the version and exit
  --help                   show this help

Exit status: 0 after SIGINT/SIGTERM, 1 when the server rejects the token or
model downloads failed on network errors (start again to resume), 2 on invalid
flags or manifest, 3 when a model cannot be had without a fix (404, access
denied, wrong sha256 or size, full disk).

Example:
  GPU_AGENT_TOKEN=... gpu-agent --server https://workshop.example.org \
      --comfy http://127.0.0.1:8188 --comfy http://127.0.0.1:8189
`

// parseArgs parses flags over environment defaults; --help prints the usage
// to stdout and returns flag.ErrHelp.
func parseArgs(args []string, getenv func(string) string, stdout io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("gpu-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.server, "server", getenv(envServer), "")
	fs.StringVar(&o.token, "token", getenv(envToken), "")
	fs.StringVar(&o.tokenFile, "token-file", getenv(envTokenFile), "")
	fs.Var(&o.comfy, "comfy", "")
	fs.StringVar(&o.name, "name", getenv(envName), "")
	fs.DurationVar(&o.reportInterval, "report-interval", 5*time.Second, "")
	fs.BoolVar(&o.insecure, "insecure", false, "")
	fs.StringVar(&o.fingerprint, "server-fingerprint", getenv(envFingerprint), "")
	fs.StringVar(&o.caFile, "ca-file", getenv(envCAFile), "")
	fs.StringVar(&o.logFormat, "log-format", or(getenv(envLogFormat), "text"), "")
	fs.StringVar(&o.logLevel, "log-level", or(getenv(envLogLevel), "info"), "")
	fs.BoolVar(&o.showVersion, "version", false, "")
	fs.StringVar(&o.modelsFile, "models", getenv(envModels), "")
	fs.StringVar(&o.modelsDir, "models-dir", getenv(envModelsDir), "")
	fs.BoolVar(&o.modelsOptional, "models-optional", false, "")
	fs.IntVar(&o.modelsConcurrency, "models-concurrency", 2, "")

	// Environment defaults that need parsing.
	if v := getenv(envInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %v", envInterval, v, err)
		}
		o.reportInterval = d
	}
	if v := getenv(envInsecure); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want true or false", envInsecure, v)
		}
		o.insecure = b
	}
	if v := getenv(envModelsOptional); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want true or false", envModelsOptional, v)
		}
		o.modelsOptional = b
	}
	if v := getenv(envModelsConcurrency); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want a number", envModelsConcurrency, v)
		}
		o.modelsConcurrency = n
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.showVersion {
		return o, nil
	}

	if o.server == "" {
		return nil, fmt.Errorf("--server (or %s) is required", envServer)
	}
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want an http:// or https:// URL", o.server)
	}
	if o.token == "" && o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %v", err)
		}
		o.token = strings.TrimSpace(string(b))
	}
	if o.token == "" {
		return nil, fmt.Errorf("--token (or %s, or --token-file) is required", envToken)
	}
	if len(o.comfy) == 0 {
		for v := range strings.SplitSeq(getenv(envComfy), ",") {
			if v = strings.TrimSpace(v); v != "" {
				o.comfy = append(o.comfy, v)
			}
		}
	}
	if len(o.comfy) == 0 {
		return nil, fmt.Errorf("--comfy (or %s) is required: the URL of at least one local ComfyUI", envComfy)
	}
	if o.instances, err = parseInstances(o.comfy); err != nil {
		return nil, err
	}
	if o.name == "" {
		if o.name, err = os.Hostname(); err != nil || o.name == "" {
			return nil, errors.New("--name is required: the hostname is unknown")
		}
	}
	if !tunnel.ValidName(o.name) {
		return nil, fmt.Errorf("--name %q: use 1-128 letters, digits, '.', '_', ':', '@' or '-'", o.name)
	}
	if o.reportInterval < 100*time.Millisecond {
		return nil, fmt.Errorf("--report-interval %v: must be at least 100ms", o.reportInterval)
	}
	if o.fingerprint != "" {
		if _, err := tunnel.ParseFingerprint(o.fingerprint); err != nil {
			return nil, fmt.Errorf("--server-fingerprint: %v", err)
		}
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return nil, err
	}
	if err := o.parseModels(); err != nil {
		return nil, err
	}
	return o, nil
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

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
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
