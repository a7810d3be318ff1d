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
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	adminui "github.com/comfy-workshop/workshop/admin-ui"
	"github.com/comfy-workshop/workshop/api"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/certs"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/extension"
	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/internal/version"
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
	SetAsideAfter  int
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
	// Limits on what participants, visitors and GPU hosts can make the
	// server do (see docs/SECURITY.md).
	MaxNodes         int
	UploadQuotaMB    int64
	MaxSockets       int
	HeaderTimeout    time.Duration
	MaxConnsPerIP    int
	MaxOutputs       int
	MaxOutputMB      int64
	MemoryLimitMB    int64
	SharedAgentToken bool

	// Set by demo, not by flags.
	out     io.Writer               // where the one-time lines for the operator go
	local   bool                    // on this machine on purpose (the demo): no loopback warning
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
	fs.StringVar(&c.Data, "data", "./data", "`directory` for the store (workshop.db) and file stores")
	fs.StringVar(&c.Listen, "listen", "", "HTTP(S) `address` (default :443, or 127.0.0.1:8080 with --tls off)")
	fs.StringVar(&c.TLS, "tls", "acme", "TLS `mode`: acme (automatic certificates), files, self-signed or off")
	fs.StringVar(&c.Domain, "domain", "", "acme: the server's domain `name`")
	fs.StringVar(&c.Email, "email", "", "acme: the contact `address` given to the certificate authority")
	fs.StringVar(&c.ACMECA, "acme-ca", "", "acme: directory `URL` of the certificate authority (default: Let's Encrypt)")
	fs.StringVar(&c.CertFile, "cert", "", "files: certificate chain PEM `file` (SSL_CERT_PATH); reloaded on SIGHUP")
	fs.StringVar(&c.KeyFile, "key", "", "files: private key PEM `file` (SSL_KEY_PATH)")
	fs.StringVar(&c.Hosts, "hosts", "", "self-signed: comma-separated `names` and IPs the certificate covers (default: localhost and this host)")
	fs.StringVar(&c.AdminPassword, "admin-password", "", "set the `password` for the /admin login (stored as an argon2id hash); the admin token works there too")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "also serve Prometheus /metrics without auth on this `address` (e.g. 127.0.0.1:9100); on the main address it needs the admin token")
	fs.BoolVar(&c.TestPages, "extension-test-page", false, "serve the workshop extension's test page at /user/{n}/workshop-test/ (for browser checks)")
	fs.StringVar(&c.HTTPListen, "http-listen", "", "plain HTTP `address` for ACME HTTP-01 challenges and redirects to HTTPS (default :80 with --tls acme; off otherwise)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer `token` for the admin API (default: generated on first start, printed once, stored hashed)")
	fs.IntVar(&c.Seats, "seats", 20, "number of participant seats (NUM_USERS)")
	fs.StringVar(&c.QueueMode, "queue-mode", "round-robin", "queue `order` within a priority: fifo or round-robin (QUEUE_MODE)")
	fs.IntVar(&c.MaxPending, "max-pending", 10, "pending jobs one participant may hold (0: unlimited)")
	fs.BoolVar(&c.EnablePriority, "enable-priority", true, "order by job priority first (ENABLE_PRIORITY)")
	fs.IntVar(&c.MaxAttempts, "max-attempts", 3, "dispatches before a job whose worker keeps failing is failed")
	fs.StringVar(&c.AgentToken, "agent-token", "", "`token` GPU agents authenticate with (default: generated on first start, printed once, stored hashed)")
	fs.IntVar(&c.Prefetch, "prefetch", 1, "jobs queued on each ComfyUI instance behind the running one, so the GPU never waits (0: off)")
	fs.DurationVar(&c.Grace, "grace", 60*time.Second, "how long a job waits for its lost GPU agent or instance to come back before it is requeued")
	fs.DurationVar(&c.JobTimeout, "job-timeout", time.Hour, "a job running longer is interrupted and failed")
	fs.IntVar(&c.SetAsideAfter, "set-aside-after", 3, "set a GPU instance aside (no new jobs until put back) after `N` jobs in a row fail there for its own reasons: out of memory, a crash (0: never)")
	fs.BoolVar(&c.OpenSeats, "open-seats", false, "no join codes: anyone may open any seat (trusted LAN only)")
	fs.StringVar(&c.PublicURL, "public-url", "", "the `URL` participants reach this server at, for join links and the QR sheet, e.g. https://workshop.example.org or http://192.168.1.20:8080 (default: the address the admin page was opened at)")
	fs.StringVar(&c.NodesAllow, "nodes-allow", "", "comma-separated node `types` participants may use (default: all)")
	fs.StringVar(&c.NodesDeny, "nodes-deny", "", "comma-separated node `types` participants may not use")
	fs.StringVar(&c.Workflows, "workflows", "", "extra `folder` of workshop workflows (*.json) shown to every participant, besides DATA/workflows")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log `format`: text or json")
	fs.IntVar(&c.MaxNodes, "max-nodes", workshop.DefaultMaxNodes, "most nodes in one participant's graph, refused before validation")
	fs.Int64Var(&c.UploadQuotaMB, "upload-quota-mb", 1024, "`MB` of uploads one seat may keep (0: no quota)")
	fs.IntVar(&c.MaxSockets, "max-sockets", proxy.DefaultMaxSockets, "ComfyUI pages (sockets) one seat may have open")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", 10*time.Second, "time a client has to send a request's headers; slower connections are closed")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 2000, "open connections from one address (a venue's NAT is one address for the whole room; 0: no cap)")
	fs.IntVar(&c.MaxOutputs, "max-outputs", dispatch.DefaultMaxOutputs, "output files one job may bring back; a job with more fails")
	fs.Int64Var(&c.MemoryLimitMB, "memory-limit-mb", 192, "soft `MB` limit of the server's memory: below it garbage is collected at 5x the live heap (less CPU per request), near it as often as needed (0: Go's defaults; GOGC and GOMEMLIMIT win)")
	fs.Int64Var(&c.MaxOutputMB, "max-output-mb", dispatch.DefaultMaxOutputBytes>>20, "`MB` of output files one job may bring back; a job with more fails")
	fs.BoolVar(&c.SharedAgentToken, "shared-agent-token", true, "accept the shared --agent-token (any agent name without a token of its own); false: only tokens from 'workshop agents add'")
}

// defaultServeConfig is serve's configuration with every flag at its
// default.
func defaultServeConfig() serveConfig {
	var c serveConfig
	serveFlags(flag.NewFlagSet("serve", flag.ContinueOnError), &c)
	return c
}

func serveCommand() *cli.Command {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs, &c)
	fs.String("config", "", "YAML `file` with any of these flags as keys (flags and WORKSHOP_* variables win)")
	applyEnvAliases()
	return &cli.Command{
		Name:  "serve",
		Short: "run the workshop server",
		Long: "Runs the server. Every flag can also be set as WORKSHOP_<FLAG> in the environment\n" +
			"(for example WORKSHOP_DATA, WORKSHOP_ADMIN_TOKEN) or in the --config YAML file.",
		FlagSet: fs, Env: "WORKSHOP", Config: "config",
		Sections: []cli.Section{
			{Title: "TLS", Flags: []string{"tls", "domain", "email", "acme-ca", "cert", "key", "hosts", "http-listen"}},
			{Title: "Queue and GPUs", Flags: []string{"queue-mode", "max-pending", "enable-priority", "max-attempts", "prefetch", "grace", "job-timeout", "agent-token"}},
			{Title: "Participants", Flags: []string{"seats", "public-url", "open-seats", "nodes-allow", "nodes-deny", "workflows"}},
			{Title: "Limits (docs/SECURITY.md)", Flags: []string{"max-nodes", "upload-quota-mb", "max-sockets", "max-outputs", "max-output-mb", "header-timeout", "max-conns-per-ip", "shared-agent-token"}},
		},
		Run: func(ctx context.Context, _ []string) error {
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
	if c.SetAsideAfter < 0 {
		return usagef("--set-aside-after %d: want 0 (never) or more", c.SetAsideAfter)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return usagef("--public-url %q: want http(s)://HOST[:PORT], without a path", c.PublicURL)
		}
		c.PublicURL = u.Scheme + "://" + u.Host
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return cli.UsageError{Err: err}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return usagef("--log-format %q: want text or json", c.LogFormat)
	}
	if c.MaxNodes < 1 {
		return usagef("--max-nodes %d: want 1 or more", c.MaxNodes)
	}
	if c.UploadQuotaMB < 0 || c.MaxConnsPerIP < 0 || c.MemoryLimitMB < 0 {
		return usagef("--upload-quota-mb, --max-conns-per-ip and --memory-limit-mb: want 0 (none) or more")
	}
	if c.MaxSockets < 1 || c.MaxOutputs < 1 || c.MaxOutputMB < 1 {
		return usagef("--max-sockets, --max-outputs and --max-output-mb: want 1 or more")
	}
	if c.HeaderTimeout < 100*time.Millisecond {
		return usagef("--header-timeout %s: want at least 100ms", c.HeaderTimeout)
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
	tuneGC(c.MemoryLimitMB)
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
	agentTokens := auth.NewAgentTokens(db)
	tunnels := tunnel.NewServer(tunnel.ServerConfig{
		Identify: agentIdentity(agentTokens, agentHash, c.SharedAgentToken),
		Reserved: agentTokens.Has,
		Logger:   log.With("part", "tunnel"),
	})
	disp := dispatch.New(dispatch.Config{
		Queue: q, Files: files, Tunnels: tunnels, DB: db, Log: log.With("part", "dispatch"),
		Prefetch: c.Prefetch, Grace: c.Grace, JobTimeout: c.JobTimeout, SetAsideAfter: c.SetAsideAfter,
		MaxOutputs: c.MaxOutputs, MaxOutputBytes: c.MaxOutputMB << 20,
		NodeListFile: filepath.Join(c.Data, "object_info.json"),
	})
	mir, closeMirror := newMirror(disp, c.Data, log)
	defer closeMirror()
	if err := os.MkdirAll(filepath.Join(c.Data, "workflows"), 0o750); err != nil {
		return err
	}
	userFiles, err := newUserFiles(c, log)
	if err != nil {
		return err
	}
	defer userFiles.Close()
	participants := proxy.New(proxy.Config{
		Queue: q, Seats: seatSvc, DB: db, Files: files, Workers: disp.Workers,
		Mirror: mir, ObjectInfo: disp.ObjectInfo, UserFiles: userFiles.Register, Workflows: userFiles,
		Extension: adaptor.HTTPHandler(extension.Handler()), ExtensionPath: extension.Path, TestPage: testPage(c),
		AdminTokenHash: adminHash, OpenSeats: c.OpenSeats, Secure: c.TLS != "off",
		NodesAllow: splitList(c.NodesAllow), NodesDeny: splitList(c.NodesDeny), Log: log.With("part", "participants"),
		MaxNodes: c.MaxNodes, UploadQuota: c.UploadQuotaMB << 20, MaxSockets: c.MaxSockets,
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
		LargeBody: participants.BodyLimit, OpenSeats: c.OpenSeats,
		HeaderTimeout: c.HeaderTimeout, MaxConnsPerIP: c.MaxConnsPerIP,
		AgentTokens: agentTokens, SharedAgentToken: c.SharedAgentToken,
		Queue: q, Tunnel: tunnels, Workers: disp, Files: files, Seats: seatSvc, DB: db,
		PublicURL: linkBase(c, scheme, ln.Addr()), Version: version.String(), AdminTokenHash: adminHash, Log: log,
		Mount: []func(*fiber.App){
			func(app *fiber.App) { app.Use(prom.Middleware) },
			participants.Register,
			func(app *fiber.App) { adminui.Register(app, adminui.Config{}) },
		},
		Metrics:  prom.Handler(),
		Activity: actLog.Record, ActivityList: actLog.List, JobActivity: actLog.OfJob,
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
	if freshAgent != "" && c.SharedAgentToken {
		fmt.Fprintf(c.out, "workshop: agent token (shown once, stored hashed): %s\n", freshAgent)
	}
	abs, _ := filepath.Abs(c.Data)
	log.Info("serving", "url", base, "data", abs, "queue_mode", q.Status().Mode, "seats", c.Seats, "prefetch", c.Prefetch, "grace", c.Grace, "version", version.String())
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
	printWelcome(c, publicBase(c, scheme, ln.Addr()), freshAdmin != "", log)
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

// publicBase is the address people open: --public-url, the ACME domain,
// or the listening address (this machine's name for an unspecified one).
func publicBase(c serveConfig, scheme string, addr net.Addr) string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	host, port, _ := net.SplitHostPort(addr.String())
	if d := splitList(c.Domain); c.TLS == "acme" && len(d) > 0 {
		host = d[0]
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil && name != "" {
			host = name
		}
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// linkBase is what join links are built on: --public-url, or with ACME
// the domain; else "" (the address each request came to).
func linkBase(c serveConfig, scheme string, addr net.Addr) string {
	if c.PublicURL == "" && (c.TLS != "acme" || c.Domain == "") {
		return ""
	}
	return publicBase(c, scheme, addr)
}

// printWelcome tells the operator where the admin page is, how to sign in
// and where the join links are; and warns when the links would point at
// this machine only.
func printWelcome(c serveConfig, public string, freshToken bool, log *slog.Logger) {
	signIn := "the admin token you set or were shown at the first start"
	if freshToken {
		signIn = "the admin token above"
	}
	if c.AdminPassword != "" {
		signIn += ", or the --admin-password"
	}
	fmt.Fprintf(c.out, "workshop: admin page: %s/admin (sign in with %s)\n", public, signIn)
	fmt.Fprintf(c.out, "workshop: join links and the printable QR sheet: the admin page's Participants view, or 'workshop seats list'\n")
	fmt.Fprintf(c.out, "workshop: participants without a link open %s/ and type the code from their card\n", public)
	if u, err := url.Parse(public); err == nil && !c.local && api.IsLoopback(u.Hostname()) {
		why := "join links and QR codes use the address the admin page is opened at: open it at an address participants can reach, or set --public-url"
		if c.PublicURL != "" {
			why = "--public-url points at this machine only: participants' devices cannot open the join links"
		}
		log.Warn(why, "public_url", public)
	}
}

// agentIdentity says who an agent token is: a GPU host's own token (bound
// to its name), or the shared token (any name without one of its own).
func agentIdentity(tokens *auth.AgentTokens, sharedHash string, shared bool) func(string) (tunnel.Identity, bool) {
	return func(token string) (tunnel.Identity, bool) {
		if t, ok := tokens.Identify(token); ok {
			return tunnel.Identity{Key: t.Hash, Name: t.Name}, true
		}
		if shared && auth.TokenMatches(sharedHash, token) {
			return tunnel.Identity{Key: sharedHash}, true
		}
		return tunnel.Identity{}, false
	}
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

// tuneGC trades memory the server does not need for CPU: its live heap is
// tens of MB, so Go's default (collect each time the heap doubles) spent a
// fifth of a busy server's CPU collecting. Collecting at 5x the live heap
// under a soft limit keeps memory bounded (the limit makes collection
// eager near it). The operator's GOGC and GOMEMLIMIT win.
func tuneGC(limitMB int64) {
	if limitMB == 0 {
		return
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limitMB << 20)
	}
}
