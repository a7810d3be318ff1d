// Package api serves the workshop's REST and WebSocket API over Fiber.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/activity"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
	"github.com/comfy-workshop/workshop/tunnel"
)

// Config wires the API to the rest of the server.
type Config struct {
	Queue     *sched.Queue
	Tunnel    *tunnel.Server // nil: no GPU agents
	Workers   Workers        // nil: no GPU instances
	Files     *store.Files
	Seats     *seats.Service
	DB        *store.DB
	PublicURL string // how participants reach the server, for join links
	Version   string // of the build, for /health
	Mount     []func(*fiber.App)
	// TLS reports the certificate in use (mode, expiry) for /health; nil
	// without TLS.
	TLS func() (mode string, expires time.Time)
	// Activity records an entry in the activity log; nil: none is kept.
	// ActivityList reads it: newest first, of one kind (or any), containing
	// text (or anything); JobActivity the entries about one job.
	Activity     func(activity.Entry)
	ActivityList func(kind, text string, limit int) ([]activity.Entry, error)
	JobActivity  func(jobID string, created time.Time, limit int) ([]activity.Entry, error)
	WorkflowsDir string // the workshop workflows every participant sees
	// Metrics serves Prometheus metrics at /metrics, to the admin.
	Metrics http.Handler
	// Online counts a participant's open ComfyUI sockets.
	Online         func(user string) int
	AdminTokenHash string
	Log            *slog.Logger
	// BodyLimit caps the request bodies of signed-in callers (the admin, a
	// seat); a workflow with its UI graph embedded is rarely over 1 MiB.
	// Default MaxWorkflowSize + 64 KiB. Anonymous callers get
	// AnonymousBodyLimit.
	BodyLimit int
	// LargeBody gives the routes that take more (uploads) their cap, for
	// signed-in callers; 0 for others. Nil: none.
	LargeBody func(path string) int
	// OpenSeats says participants need no session (--open-seats), so
	// requests under /user/ count as signed in.
	OpenSeats bool
	// HeaderTimeout bounds the time a client has to send a request's
	// headers (default 10 s): slow-header connections are closed.
	HeaderTimeout time.Duration
	// MaxConnsPerIP caps the open connections from one address; 0: none.
	MaxConnsPerIP int
	// AgentTokens are the GPU hosts' own tokens; nil: none can be made.
	AgentTokens *auth.AgentTokens
	// SharedAgentToken says the one --agent-token is accepted too.
	SharedAgentToken bool
}

// AnonymousBodyLimit caps the body of a request whose headers carry no
// valid session or token: a login or a join is far smaller.
const AnonymousBodyLimit = 64 << 10

// Read timeouts of request bodies, set once the headers are in: small
// bodies, and the large ones of uploads over a venue's Wi-Fi.
const (
	bodyTimeout      = 2 * time.Minute
	largeBodyTimeout = 30 * time.Minute
)

// Server is the HTTP side of the workshop server.
type Server struct {
	cfg      Config
	app      *fiber.App
	log      *slog.Logger
	started  time.Time
	draining atomic.Bool

	loginLimit *auth.Limiter
	hashSlots  chan struct{} // password checks running (argon2id, 64 MiB each)
}

// New builds the Fiber app with every route.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = workshop.MaxWorkflowSize + 64<<10
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Log, started: time.Now(), loginLimit: auth.NewLimiter(10, time.Minute), hashSlots: make(chan struct{}, hashSlots)}
	s.app = fiber.New(fiber.Config{
		AppName:               "comfyui-workshop",
		DisableStartupMessage: true,
		// Raised per request, once the headers show who is calling
		// (requestLimits).
		BodyLimit:    AnonymousBodyLimit,
		ErrorHandler: s.fiberError,
		// Until the headers are in; the body gets its own deadline, and
		// hijacked connections (sockets, the agent tunnel) none. No write
		// timeout: downloads of outputs and exports are long streams.
		ReadTimeout: cfg.HeaderTimeout,
		IdleTimeout: 2 * time.Minute,
		// Routes like /user/7/api/userdata/a%2Fb.json need the escaped path.
		UnescapePath: false,
		// /user/7 and /user/7/ differ: the ComfyUI frontend needs the slash.
		StrictRouting: true,
		JSONEncoder:   encodeJSON,
	})
	srv := s.app.Server()
	srv.HeaderReceived = s.requestLimits
	srv.MaxConnsPerIP = cfg.MaxConnsPerIP
	s.routes()
	return s
}

// encodeJSON is encoding/json, but a value that writes its own JSON (a
// job) is asked directly: through json.Marshal its output would be checked
// and copied again.
func encodeJSON(v any) ([]byte, error) {
	if a, ok := v.(interface{ AppendJSON([]byte) ([]byte, error) }); ok {
		return a.AppendJSON(make([]byte, 0, 512))
	}
	return json.Marshal(v)
}

// App exposes the Fiber app so other adapters can add their routes.
func (s *Server) App() *fiber.App { return s.app }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting, lets in-flight requests finish for up to timeout,
// and closes open sockets.
func (s *Server) Shutdown(timeout time.Duration) error {
	s.draining.Store(true)
	return s.app.ShutdownWithTimeout(timeout)
}

func (s *Server) routes() {
	// Before any route: every rule below sees the canonical path, and no
	// page of another origin opens a socket with someone's cookie.
	s.app.Use(canonicalPath, sameOriginSockets)
	// Other adapters (the participants' surface) come first: some of their
	// routes pass on to the API's when they are not theirs.
	for _, mount := range s.cfg.Mount {
		mount(s.app)
	}
	s.app.Get("/health", s.health)
	s.app.Get("/api/health", s.health)
	s.app.Get("/ws", s.requireAdmin, s.eventsSocket)
	s.app.Post("/admin/login", s.login)
	s.app.Post("/admin/logout", s.logout)
	s.app.Get("/admin/session", s.session)
	s.app.Get("/tunnel", s.agentTunnel)
	if s.cfg.Metrics != nil {
		s.app.Get("/metrics", s.requireAdmin, adaptor.HTTPHandler(s.cfg.Metrics))
	}
	// Go's profiler, for the operator chasing a slow or growing server;
	// admin-only, as profiles show code paths and memory.
	s.app.Get("/debug/pprof/*", s.requireAdmin, adaptor.HTTPHandler(profiler()))

	a := s.app.Group("/api", s.requireAdmin)
	a.Post("/jobs", s.submitJob)
	a.Get("/jobs", s.listJobs)
	a.Get("/jobs/:id", s.getJob)
	a.Get("/jobs/:id/outputs/:name", s.jobOutput)
	a.Delete("/jobs/:id", s.cancelJob)
	a.Patch("/jobs/:id/priority", s.setPriority)
	a.Post("/queue/pause", s.pause)
	a.Post("/queue/resume", s.resume)
	a.Put("/queue/mode", s.setMode)
	a.Get("/queue/status", s.queueStatus)
	a.Get("/workers", s.listWorkers)
	a.Get("/agents", s.listAgents)
	a.Post("/agents", s.addAgent)
	a.Delete("/agents/:name", s.revokeAgent)
	a.Get("/seats", s.listSeats)
	a.Post("/seats", s.addSeat)
	a.Patch("/seats/:n", s.updateSeat)
	a.Delete("/seats/:n", s.deleteSeat)
	a.Post("/seats/:n/signout", s.signOutSeat)
	a.Get("/announcements", s.listAnnouncements)
	a.Post("/announcements", s.announce)
	a.Delete("/announcements/:id", s.withdraw)
	a.Put("/admin/password", s.setPassword)
	a.Post("/jobs/:id/move", s.moveJob)
	a.Post("/jobs/:id/retry", s.retryJob)
	a.Get("/seats/:n/qr.png", s.seatQR)
	a.Get("/outputs", s.listOutputs)
	a.Get("/spotlight", s.getSpotlight)
	a.Post("/spotlight", s.setSpotlight)
	a.Delete("/spotlight", s.clearSpotlight)
	a.Get("/workflows", s.listWorkflows)
	a.Put("/workflows/:name", s.putWorkflow)
	a.Delete("/workflows/:name", s.deleteWorkflow)
	a.Put("/workflows/:name/default", s.markDefault)
	a.Delete("/workflows/:name/default", s.unmarkDefault)
	a.Get("/activity", s.listActivity)
	a.Get("/metrics", s.metrics)
	a.Get("/backup", s.backup)
	a.Post("/prune", s.prune)
	a.Post("/preflight", s.preflight)
	a.Get("/export/jobs.csv", s.exportCSV)
	a.Get("/export/outputs.zip", s.exportZip)
	a.Post("/workers/:agent/:instance/drain", s.drainWorker(true))
	a.Post("/workers/:agent/:instance/undrain", s.drainWorker(false))
	a.Post("/workers/:agent/:instance/put-back", s.putBackWorker)
	a.Delete("/workers/:agent/:instance", s.forgetWorker)
	// The admin page's job desk and QR sheet.
	a.Get("/jobs/:id/detail", s.jobDetail)
	a.Post("/queue/cancel", s.cancelMany)
	a.Get("/sheet", s.getSheet)
	a.Put("/sheet", s.putSheet)
	a.Get("/sheet/wifi.png", s.wifiQR)
	a.Use(func(c *fiber.Ctx) error {
		return workshop.Errorf(workshop.ENOTFOUND, "no API route %s %s", c.Method(), c.Path())
	})
}

// health answers anyone with the server's state only; the admin (token or
// session) also gets its version, uptime, queue and certificate, which
// tell an outsider what to attack and when.
func (s *Server) health(c *fiber.Ctx) error {
	status := "ok"
	if s.draining.Load() {
		status = "shutting_down"
	}
	if !s.isAdmin(c) {
		return c.JSON(fiber.Map{"status": status})
	}
	st := s.cfg.Queue.Status()
	var tls any
	if s.cfg.TLS != nil {
		mode, exp := s.cfg.TLS()
		tls = fiber.Map{"mode": mode, "expires": exp}
	}
	return c.JSON(fiber.Map{
		"tls":      tls,
		"status":   status,
		"version":  s.cfg.Version,
		"uptime_s": int(time.Since(s.started).Seconds()),
		"queue":    fiber.Map{"mode": st.Mode, "paused": st.Paused, "pending": st.Counts[workshop.StatusPending], "running": st.Counts[workshop.StatusRunning]},
	})
}

// isAdmin reports whether the request carries the admin token or session.
func (s *Server) isAdmin(c *fiber.Ctx) bool {
	if token := auth.BearerToken(c.Get(fiber.HeaderAuthorization)); token != "" {
		return auth.TokenMatches(s.cfg.AdminTokenHash, token)
	}
	_, ok := s.adminSession(c)
	return ok
}

// requireAdmin admits requests with the admin bearer token (header, or
// ?token= for WebSockets, which browsers cannot give headers), or with an
// admin browser session, whose state changes must carry its CSRF token.
func (s *Server) requireAdmin(c *fiber.Ctx) error {
	token := auth.BearerToken(c.Get(fiber.HeaderAuthorization))
	if token == "" && strings.HasSuffix(c.Path(), "/ws") {
		token = c.Query("token")
	}
	if token != "" {
		if !auth.TokenMatches(s.cfg.AdminTokenHash, token) {
			return workshop.Errorf(workshop.EUNAUTHORIZED, "the admin token is not valid")
		}
		return s.nextRecorded(c)
	}
	if ses, ok := s.adminSession(c); ok {
		c.Locals(localActor, sessionActor(ses))
		if changes(c) {
			if err := s.checkCSRF(c); err != nil {
				return err
			}
		}
		return s.nextRecorded(c)
	}
	return workshop.Errorf(workshop.EUNAUTHORIZED, "an admin token is required (Authorization: Bearer <token>), or sign in at /admin")
}

func changes(c *fiber.Ctx) bool { return !auth.SafeMethod(c.Method()) }

// nextRecorded runs the handler and notes a successful admin change in the
// activity log. Job submissions are logged by the queue's own events.
func (s *Server) nextRecorded(c *fiber.Ctx) error {
	err := c.Next()
	if err == nil && changes(c) && c.Response().StatusCode() < 400 && !(c.Method() == fiber.MethodPost && c.Path() == "/api/jobs") {
		if e, ok := s.adminEntry(c); ok {
			s.record(e)
		}
	}
	return err
}

// errorStatus maps error codes to HTTP statuses.
var errorStatus = map[string]int{
	workshop.EINVALID:      fiber.StatusBadRequest,
	workshop.ENOTFOUND:     fiber.StatusNotFound,
	workshop.ECONFLICT:     fiber.StatusConflict,
	workshop.ETOOMANY:      fiber.StatusTooManyRequests,
	workshop.EUNAUTHORIZED: fiber.StatusUnauthorized,
	workshop.EFORBIDDEN:    fiber.StatusForbidden,
	workshop.ETOOLARGE:     fiber.StatusRequestEntityTooLarge,
	workshop.EUNAVAILABLE:  fiber.StatusServiceUnavailable,
	workshop.EINTERNAL:     fiber.StatusInternalServerError,
}

// fiberError writes every error as {"error":{"code","message"}}.
func (s *Server) fiberError(c *fiber.Ctx, err error) error {
	code, msg := workshop.ErrorCode(err), workshop.ErrorMessage(err)
	status := errorStatus[code]
	var fe *fiber.Error
	if errors.As(err, &fe) {
		// Fiber's own errors: unknown route, body too large, bad method.
		status, code, msg = fe.Code, codeForStatus(fe.Code), fe.Message
	}
	if status >= 500 {
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	}
	return c.Status(status).JSON(fiber.Map{"error": fiber.Map{"code": code, "message": msg}})
}

func codeForStatus(status int) string {
	for code, st := range errorStatus {
		if st == status {
			return code
		}
	}
	if status < 500 {
		return workshop.EINVALID
	}
	return workshop.EINTERNAL
}

// profiler serves net/http/pprof's handlers under /debug/pprof/ on the
// admin routes. (Importing it also registers them on http.DefaultServeMux,
// which nothing here serves.)
func profiler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine, allocs...
	mux.HandleFunc("/debug/pprof/cmdline", cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// cmdline is pprof's cmdline with the values of secret flags hidden: a
// profile handed around while debugging must not carry the admin token.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, strings.Join(RedactArgs(os.Args), "\x00"))
}

// RedactArgs hides the values of flags whose names say they are secret
// (--admin-token T, --agent-token=T, --admin-password P...).
func RedactArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !secretFlag(name) {
			continue
		}
		if inline {
			out[i] = a[:strings.IndexByte(a, '=')+1] + "REDACTED"
		} else if i+1 < len(out) {
			i++
			out[i] = "REDACTED"
		}
	}
	return out
}

func secretFlag(name string) bool {
	name = strings.ToLower(name)
	return strings.Contains(name, "token") || strings.Contains(name, "password") || strings.Contains(name, "secret")
}
