package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/peterbourgon/ff/v3/ffyaml"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	adminui "github.com/comfy-workshop/workshop/admin-ui"
	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/certs"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/extension"
	"github.com/comfy-workshop/workshop/proxy"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/telemetry"
	"github.com/comfy-workshop/workshop/tunnel"
)

// serveConfig is everything `workshop serve` is told.
type serveConfig struct {
	Data           string
	Listen         string
	TLS            string
	AdminToken     string
	Seats          int
	QueueMode      string
	MaxPending     int
	EnablePriority bool
	MaxAttempts    int
	AgentToken     string
	Prefetch       int
	Grace          time.Duration
	JobTimeout     time.Duration
	OpenSeats      bool
	PublicURL      string
	NodesAllow     string
	NodesDeny      string
	Workflows      string
	Domain         string
	Email          string
	ACMECA         string
	CertFile       string
	KeyFile        string
	Hosts          string
	HTTPListen     string
	TestPages      bool
	AdminPassword  string
	MetricsListen  string
	LogLevel       string
	LogFormat      string

	// Set by demo, not by flags.
	out     io.Writer               // where the one-time lines for the operator go
	onReady func(base string) error // called once the server listens
}

// envAliases are the first plan's environment names, honoured when the
// WORKSHOP_ names are unset.
var envAliases = map[string]string{
	"NUM_USERS":       "WORKSHOP_SEATS",
	"QUEUE_MODE":      "WORKSHOP_QUEUE_MODE",
	"ENABLE_PRIORITY": "WORKSHOP_ENABLE_PRIORITY",
	"SSL_CERT_PATH":   "WORKSHOP_CERT",
	"SSL_KEY_PATH":    "WORKSHOP_KEY",
	"DOMAIN":          "WORKSHOP_DOMAIN",
}

func applyEnvAliases() {
	for old, cur := range envAliases {
		if v, ok := os.LookupEnv(old); ok {
			if _, set := os.LookupEnv(cur); !set {
				os.Setenv(cur, v)
			}
		}
	}
}

func serveFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.Data, "data", "./data", "directory for the store (workshop.db) and file stores")
	fs.StringVar(&c.Listen, "listen", "", "HTTP(S) address (default :443, or 127.0.0.1:8080 with --tls off)")
	fs.StringVar(&c.TLS, "tls", "acme", "TLS mode: acme (automatic certificates), files, self-signed or off")
	fs.StringVar(&c.Domain, "domain", "", "acme: the server's domain name")
	fs.StringVar(&c.Email, "email", "", "acme: the contact address given to the certificate authority")
	fs.StringVar(&c.ACMECA, "acme-ca", "", "acme: directory URL of the certificate authority (default: Let's Encrypt)")
	fs.StringVar(&c.CertFile, "cert", "", "files: certificate chain PEM file (SSL_CERT_PATH); reloaded on SIGHUP")
	fs.StringVar(&c.KeyFile, "key", "", "files: private key PEM file (SSL_KEY_PATH)")
	fs.StringVar(&c.Hosts, "hosts", "", "self-signed: comma-separated names and IPs the certificate covers (default: localhost and this host)")
	fs.StringVar(&c.AdminPassword, "admin-password", "", "set the password for the /admin login (stored as an argon2id hash); the admin token works there too")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "also serve Prometheus /metrics without auth on this address (e.g. 127.0.0.1:9100); on the main address it needs the admin token")
	fs.BoolVar(&c.TestPages, "extension-test-page", false, "serve the workshop extension's test page at /user/{n}/workshop-test/ (for browser checks)")
	fs.StringVar(&c.HTTPListen, "http-listen", "", "plain HTTP address for ACME HTTP-01 challenges and redirects to HTTPS (default :80 with --tls acme; off otherwise)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token for the admin API (default: generated on first start, printed once, stored hashed)")
	fs.IntVar(&c.Seats, "seats", 20, "number of participant seats (NUM_USERS)")
	fs.StringVar(&c.QueueMode, "queue-mode", "round-robin", "queue order within a priority: fifo or round-robin (QUEUE_MODE)")
	fs.IntVar(&c.MaxPending, "max-pending", 10, "pending jobs one participant may hold (0: unlimited)")
	fs.BoolVar(&c.EnablePriority, "enable-priority", true, "order by job priority first (ENABLE_PRIORITY)")
	fs.IntVar(&c.MaxAttempts, "max-attempts", 3, "dispatches before a job whose worker keeps failing is failed")
	fs.StringVar(&c.AgentToken, "agent-token", "", "token GPU agents authenticate with (default: generated on first start, printed once, stored hashed)")
	fs.IntVar(&c.Prefetch, "prefetch", 1, "jobs queued on each ComfyUI instance behind the running one, so the GPU never waits (0: off)")
	fs.DurationVar(&c.Grace, "grace", 60*time.Second, "how long a job waits for its lost GPU agent or instance to come back before it is requeued")
	fs.DurationVar(&c.JobTimeout, "job-timeout", time.Hour, "a job running longer is interrupted and failed")
	fs.BoolVar(&c.OpenSeats, "open-seats", false, "no join codes: anyone may open any seat (trusted LAN only)")
	fs.StringVar(&c.PublicURL, "public-url", "", "how participants reach this server, for join links (default: as each request came)")
	fs.StringVar(&c.NodesAllow, "nodes-allow", "", "comma-separated node types participants may use (default: all)")
	fs.StringVar(&c.NodesDeny, "nodes-deny", "", "comma-separated node types participants may not use")
	fs.StringVar(&c.Workflows, "workflows", "", "extra folder of workshop workflows (*.json) shown to every participant, besides DATA/workflows")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
}

func serveCommand() *ffcli.Command {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, &c)
	fs.String("config", "", "YAML file with any of these flags as keys (flags and WORKSHOP_* variables win)")
	applyEnvAliases()
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "workshop serve [flags]",
		ShortHelp:  "run the workshop server",
		LongHelp: "Runs the server. Every flag can also be set as WORKSHOP_<FLAG> in the environment\n" +
			"(for example WORKSHOP_DATA, WORKSHOP_ADMIN_TOKEN) or in the --config YAML file.",
		FlagSet: fs,
		Options: []ff.Option{
			ff.WithEnvVarPrefix("WORKSHOP"),
			ff.WithConfigFileFlag("config"),
			ff.WithConfigFileParser(ffyaml.Parser),
		},
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("serve takes no arguments, got %q", args)
			}
			c.out = os.Stdout
			return serve(ctx, c)
		},
	}
}

func (c *serveConfig) check() error {
	switch c.TLS {
	case "off":
		if c.Listen == "" {
			c.Listen = "127.0.0.1:8080"
		}
	case "acme", "files", "self-signed":
		if c.Listen == "" {
			c.Listen = ":443"
		}
		if c.TLS == "acme" && c.HTTPListen == "" {
			c.HTTPListen = ":80"
		}
		if c.TLS == "acme" && (c.Domain == "" || c.Email == "") {
			return usagef("--tls acme needs --domain and --email (or use --tls self-signed, files or off)")
		}
		if c.TLS == "files" && (c.CertFile == "" || c.KeyFile == "") {
			return usagef("--tls files needs --cert and --key")
		}
	default:
		return usagef("--tls %q: want acme, files, self-signed or off", c.TLS)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return usagef("--listen %q: want host:port (%v)", c.Listen, err)
	}
	if c.Seats < 1 || c.Seats > 10000 {
		return usagef("--seats %d: want 1 to 10000", c.Seats)
	}
	if _, err := workshop.ParseQueueMode(c.QueueMode); err != nil {
		return usagef("--queue-mode %q: want fifo or round-robin", c.QueueMode)
	}
	if c.MaxPending < 0 {
		return usagef("--max-pending %d: want 0 (unlimited) or more", c.MaxPending)
	}
	if c.MaxAttempts < 1 {
		return usagef("--max-attempts %d: want 1 or more", c.MaxAttempts)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return usagef("--admin-token: use at least 16 characters")
	}
	if c.AgentToken != "" && len(c.AgentToken) < 16 {
		return usagef("--agent-token: use at least 16 characters")
	}
	if c.Prefetch < 0 || c.Prefetch > 8 {
		return usagef("--prefetch %d: want 0 to 8", c.Prefetch)
	}
	if c.Grace < time.Second {
		return usagef("--grace %s: want at least 1s", c.Grace)
	}
	if c.JobTimeout < time.Second {
		return usagef("--job-timeout %s: want at least 1s", c.JobTimeout)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return usageError{err}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return usagef("--log-format %q: want text or json", c.LogFormat)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(c serveConfig) *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// checkWritable fails early, with the path in the message, when the data
// directory cannot be written.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func serve(ctx context.Context, c serveConfig) error {
	if err := c.check(); err != nil {
		return err
	}
	log := newLogger(c)
	if err := checkWritable(c.Data); err != nil {
		return err
	}
	db, err := store.Open(c.Data, log)
	if err != nil {
		return err
	}
	defer db.Close()

	mode, _ := workshop.ParseQueueMode(c.QueueMode)
	q, err := sched.Open(db, sched.Config{
		Mode: mode, MaxPending: c.MaxPending, IgnorePriority: !c.EnablePriority,
		MaxAttempts: c.MaxAttempts, RestartGrace: c.Grace, Log: log,
	})
	if err != nil {
		return err
	}
	files, err := store.NewFiles(c.Data)
	if err != nil {
		return err
	}
	adminHash, freshAdmin, err := auth.EnsureToken(ctx, db, auth.AdminToken, c.AdminToken)
	if err != nil {
		return err
	}
	agentHash, freshAgent, err := auth.EnsureToken(ctx, db, auth.AgentToken, c.AgentToken)
	if err != nil {
		return err
	}

	if c.AdminPassword != "" {
		if err := api.SetAdminPassword(ctx, db, c.AdminPassword); err != nil {
			return usagef("--admin-password: %v", err)
		}
	}
	actLog := activity.New(db, q.Events(), log.With("part", "activity"))
	seatSvc := seats.New(db)
	if err := seatSvc.Ensure(ctx, c.Seats); err != nil {
		return err
	}
	if all, err := seatSvc.List(); err == nil {
		for _, seat := range all {
			if seat.MaxPending != nil {
				q.SetQuota(workshop.UserID(seat.Number), *seat.MaxPending)
			}
		}
	}

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	scheme := "http"
	var tlsm *certs.Manager
	if c.TLS != "off" {
		scheme = "https"
		mode, _ := certs.ParseMode(c.TLS)
		tlsm, err = certs.New(ctx, certs.Config{
			Mode: mode, Domains: splitList(c.Domain), Email: c.Email, CA: c.ACMECA,
			Dir: filepath.Join(c.Data, "certs"), CertFile: c.CertFile, KeyFile: c.KeyFile, Hosts: splitList(c.Hosts),
			HTTPAddr: c.HTTPListen, TLSAddr: c.Listen, Logger: log.With("part", "tls"),
		})
		if err != nil {
			ln.Close()
			return err
		}
		defer tlsm.Close()
		ln = tls.NewListener(ln, tlsm.TLSConfig())
		if c.HTTPListen != "" {
			hln, err := net.Listen("tcp", c.HTTPListen)
			if err != nil {
				return fmt.Errorf("listen on %s (ACME challenges and redirects; --http-listen): %w", c.HTTPListen, err)
			}
			hs := &http.Server{Handler: tlsm.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
			go hs.Serve(hln)
			defer hs.Close()
		}
	}
	go reloadOnHangup(ctx, tlsm, log)
	tunnels := tunnel.NewServer(tunnel.ServerConfig{
		CheckToken: func(token string) bool { return auth.TokenMatches(agentHash, token) },
		Logger:     log.With("part", "tunnel"),
	})
	disp := dispatch.New(dispatch.Config{
		Queue: q, Files: files, Tunnels: tunnels, DB: db, Log: log.With("part", "dispatch"),
		Prefetch: c.Prefetch, Grace: c.Grace, JobTimeout: c.JobTimeout,
	})
	mir, closeMirror := newMirror(disp, c.Data, log)
	defer closeMirror()
	if err := os.MkdirAll(filepath.Join(c.Data, "workflows"), 0o750); err != nil {
		return err
	}
	userFiles, closeUserFiles, err := newUserFiles(c, log)
	if err != nil {
		return err
	}
	defer closeUserFiles()
	participants := proxy.New(proxy.Config{
		Queue: q, Seats: seatSvc, DB: db, Files: files, Workers: disp.Workers,
		Mirror: mir, UserFiles: userFiles,
		Extension: adaptor.HTTPHandler(extension.Handler()), ExtensionPath: extension.Path, TestPage: testPage(c),
		AdminTokenHash: adminHash, OpenSeats: c.OpenSeats, Secure: c.TLS != "off",
		NodesAllow: splitList(c.NodesAllow), NodesDeny: splitList(c.NodesDeny), Log: log.With("part", "participants"),
	})
	prom := telemetry.New(q, disp.Workers)
	db.OnCommit(prom.ObserveCommit)
	if c.MetricsListen != "" {
		mln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			return fmt.Errorf("listen on %s (--metrics-listen): %w", c.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", prom.Handler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(mln)
		defer ms.Close()
	}
	srv := api.New(api.Config{
		BodyLimit: 110 << 20, // uploads: ComfyUI's default limit is 100 MiB
		Queue:     q, Tunnel: tunnels, Workers: disp, Files: files, Seats: seatSvc, DB: db,
		PublicURL: c.PublicURL, AdminTokenHash: adminHash, Log: log,
		Mount: []func(*fiber.App){
			func(app *fiber.App) { app.Use(prom.Middleware) },
			participants.Register,
			func(app *fiber.App) { adminui.Register(app, adminui.Config{}) },
		},
		Metrics:  prom.Handler(),
		Activity: actLog.Admin, ActivityList: func(kind, text string, limit int) (any, error) { return actLog.List(kind, text, limit) },
		WorkflowsDir: filepath.Join(c.Data, "workflows"), Online: participants.Online,
		TLS: tlsInfo(tlsm, c.TLS),
	})

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go q.Run(runCtx, time.Second)
	go participants.Run(runCtx)
	go actLog.Run(runCtx)
	go prom.Run(runCtx, q.Events())
	go store.WatchDisk(runCtx, c.Data, log)
	dispDone := make(chan struct{})
	go func() { defer close(dispDone); disp.Run(runCtx) }()

	base := scheme + "://" + ln.Addr().String()
	fmt.Fprintf(c.out, "workshop: listening on %s\n", base)
	if freshAdmin != "" {
		fmt.Fprintf(c.out, "workshop: admin token (shown once, stored hashed): %s\n", freshAdmin)
	}
	if freshAgent != "" {
		fmt.Fprintf(c.out, "workshop: agent token (shown once, stored hashed): %s\n", freshAgent)
	}
	abs, _ := filepath.Abs(c.Data)
	log.Info("serving", "url", base, "data", abs, "queue_mode", q.Status().Mode, "seats", c.Seats, "prefetch", c.Prefetch, "grace", c.Grace, "version", version)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if tlsm != nil {
		// After the listeners: ACME challenges are answered on them.
		if err := tlsm.Start(ctx); err != nil {
			srv.Shutdown(5 * time.Second)
			return err
		}
		if fp := tlsm.Fingerprint(); fp != "" {
			fmt.Fprintf(c.out, "workshop: certificate fingerprint (for gpu-agent --server-fingerprint): %s\n", fp)
		}
		if exp := tlsm.Expiry(); !exp.IsZero() {
			log.Info("certificate", "mode", c.TLS, "expires", exp)
		}
	}
	if c.onReady != nil {
		if err := c.onReady(base); err != nil {
			srv.Shutdown(5 * time.Second)
			return err
		}
	}
	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight")
	cancel()
	<-dispDone
	tunnels.Close()
	if err := srv.Shutdown(30 * time.Second); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	log.Info("stopped")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// reloadOnHangup re-reads certificate files on SIGHUP (for --tls files, when
// the operator has renewed them). It also keeps SIGHUP from stopping the
// server in the other modes.
func reloadOnHangup(ctx context.Context, m *certs.Manager, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if m == nil {
				log.Info("SIGHUP: nothing to reload without TLS")
				continue
			}
			if err := m.Reload(); err != nil {
				log.Error("certificate reload failed; the old certificate stays in use", "err", err)
			} else {
				log.Info("certificate reloaded")
			}
		}
	}
}

func testPage(c serveConfig) fiber.Handler {
	if !c.TestPages {
		return nil
	}
	return adaptor.HTTPHandler(extension.TestPage())
}

func tlsInfo(m *certs.Manager, mode string) func() (string, time.Time) {
	if m == nil {
		return nil
	}
	return func() (string, time.Time) { return mode, m.Expiry() }
}
