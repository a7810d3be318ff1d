// Package proxy is each participant's ComfyUI server at /user/{n}/: the
// stock ComfyUI frontend talks to it as to its own ComfyUI. Job routes
// (prompt, queue, history, view, uploads, the socket) are answered from the
// workshop's queue and stores, private to the participant; read-only routes
// (the UI's files, object_info, models...) come from a GPU host's ComfyUI
// through the tunnel, cached (package mirror).
package proxy

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/mirror"
	"github.com/comfy-workshop/workshop/sched"
	"github.com/comfy-workshop/workshop/seats"
	"github.com/comfy-workshop/workshop/store"
)

// Mirror is the cached view of a GPU host's ComfyUI (package mirror).
type Mirror interface {
	Serve(c *fiber.Ctx, path string) error
	Get(ctx context.Context, path string) ([]byte, error)
}

// Config wires the participants' surface.
type Config struct {
	Queue  *sched.Queue
	Seats  *seats.Service
	DB     *store.DB
	Files  *store.Files
	Mirror Mirror
	// ObjectInfo is the node list of the GPU hosts, as participants see it
	// (dispatch.Dispatcher.ObjectInfo); nil: none.
	ObjectInfo func(ctx context.Context) ([]byte, error)
	Workers    func() []dispatch.WorkerStatus
	// UserFiles registers the per-participant userdata, settings and users
	// routes (package userfiles).
	UserFiles func(r fiber.Router, userOf func(*fiber.Ctx) string)
	// Extension serves the workshop extension's files; its entry point is
	// added to the extensions list.
	// Workflows are the workshop workflows, offered as a template pack
	// and as the workflow that opens by default; nil: none.
	Workflows      WorkshopFiles
	Extension      fiber.Handler
	ExtensionPath  string
	TestPage       fiber.Handler // the extension with stand-ins, for browser checks
	AdminTokenHash string
	OpenSeats      bool // anyone may open any seat, without a code
	Secure         bool // served over TLS: cookies get Secure
	NodesAllow     []string
	NodesDeny      []string
	MaxUpload      int64
	// UploadQuota caps the bytes of one seat's uploads in all (0: none).
	UploadQuota int64
	// MaxSockets caps one seat's open ComfyUI sockets (default
	// DefaultMaxSockets).
	MaxSockets int
	// MaxNodes caps the nodes of one submitted graph, checked before any
	// validation (default workshop.DefaultMaxNodes).
	MaxNodes int
	Log      *slog.Logger
}

// Proxy serves /join and /user/{n}/.
type Proxy struct {
	cfg Config
	log *slog.Logger

	joinLimit joinLimits
	sockets   *sockets
	info      infoCache
	live      *liveState
	room      *room
}

// New returns the surface; call Register and Run.
func New(cfg Config) *Proxy {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = 100 << 20
	}
	if cfg.MaxSockets <= 0 {
		cfg.MaxSockets = DefaultMaxSockets
	}
	p := &Proxy{cfg: cfg, log: cfg.Log, joinLimit: newJoinLimits(), sockets: newSockets(), live: newLiveState(), room: newRoom()}
	if cfg.Seats != nil {
		cfg.Seats.OnSignOut(p.signedOut)
	}
	return p
}

// Run follows the queue's events (live job state for reconnecting sockets,
// everyone's place in the queue) until ctx ends.
func (p *Proxy) Run(ctx context.Context) {
	go p.room.run(ctx, p.cfg.Queue, p.gpuCount)
	p.live.run(ctx, p.cfg.Queue)
}

// Register adds the routes.
func (p *Proxy) Register(app *fiber.App) {
	app.Get("/", p.start)
	app.Get("/join", p.start)
	app.Get("/join/", p.start)
	app.Get("/join/:code", p.join)
	app.Post("/join/:code", p.join)
	app.Get("/user/:seat", func(c *fiber.Ctx) error {
		return c.Redirect("/user/"+c.Params("seat")+"/", fiber.StatusMovedPermanently)
	})
	// The UI's content-hashed build files are the same for everyone, and
	// the browser fetches some without cookies (the web app manifest).
	app.Get("/user/:seat/assets/*", p.buildAsset)
	u := app.Group("/user/:seat", p.requireSeat)
	p.routes(u)
	// Some clients open the socket at the site root, ignoring the sub-path.
	app.Get("/ws", p.rootSocket)
	// The frontend asks for a few URLs at the site root, missing its
	// sub-path: the favicons (and the progress frames the tab shows while a
	// job runs), model previews, media widgets' /api/view.
	for _, path := range []string{"/assets/*", "/favicon.ico", "/api/view", "/api/experiment/models/preview/*"} {
		app.Get(path, p.fromRoot)
	}
}

// buildAsset serves a hashed build file of the UI without asking who is
// asking; anything else under assets/ goes through the seat check.
func (p *Proxy) buildAsset(c *fiber.Ctx) error {
	if p.cfg.Mirror == nil || !mirror.HashedAsset(c.Path()) {
		return c.Next()
	}
	return p.cfg.Mirror.Serve(c, "/assets/"+c.Params("*"))
}

// fromRoot answers a root-absolute URL of the frontend for a signed-in
// participant from their own surface. Anyone else (the instructor, a bearer
// token, nobody) passes on to the routes of the site root, so the admin
// API under /api is untouched.
func (p *Proxy) fromRoot(c *fiber.Ctx) error {
	ses, ok := p.cfg.Seats.Session(c.Cookies(seats.CookieName))
	if !ok || ses.Admin || ses.Seat == 0 || c.Get(fiber.HeaderAuthorization) != "" {
		return c.Next()
	}
	if seat, err := p.cfg.Seats.Get(ses.Seat); err != nil || seat.Disabled {
		return c.Next()
	}
	c.Locals(keyUser, workshop.UserID(ses.Seat))
	c.Locals(keySeat, ses.Seat)
	if c.Path() == "/api/view" {
		return p.view(c)
	}
	if p.cfg.Mirror == nil {
		return workshop.Errorf(workshop.EUNAVAILABLE, "the GPUs are not connected yet")
	}
	return p.cfg.Mirror.Serve(c, c.Path())
}

// routes registers every ComfyUI route twice: bare and under /api.
func (p *Proxy) routes(u fiber.Router) {
	for _, prefix := range []string{"", "/api"} {
		r := u.Group(prefix)
		r.Get("/prompt", p.promptInfo)
		r.Post("/prompt", p.postPrompt)
		r.Get("/queue", p.getQueue)
		r.Post("/queue", p.postQueue)
		r.Get("/history", p.getHistory)
		r.Get("/history/:id", p.getHistoryOne)
		r.Post("/history", p.postHistory)
		r.Post("/interrupt", p.interrupt)
		r.Get("/view", p.view)
		r.Post("/upload/image", p.upload(false))
		r.Post("/upload/mask", p.upload(true))
		r.Get("/jobs", p.listJobs)
		r.Get("/jobs/:id", p.getJob)
		r.Post("/jobs/cancel", p.cancelMany)
		r.Post("/jobs/:id/cancel", p.cancelOne)
		r.Get("/workflow_templates", p.templates)
		r.Get("/workflow_templates/:pack/*", p.templateFile)
		r.Get("/object_info", p.objectInfo)
		r.Get("/object_info/:class", p.objectInfoOne)
		r.Get("/extensions", p.extensions)
		r.Get("/workshop/me", p.me)
		r.Get("/workshop/outputs", p.outputs)
		if p.cfg.UserFiles != nil {
			p.cfg.UserFiles(r, userOf)
		}
		// Routes that reach the host or other users: not for participants.
		for _, path := range []string{"/free", "/internal/*", "/manager/*", "/logs", "/logs/*", "/customnode/*", "/system_stats/reset"} {
			r.All(path, refuse)
		}
	}
	u.Get("/templates/:file", p.coreIndex)
	u.Get("/ws", p.socket)
	if p.cfg.Extension != nil {
		u.Get("/extensions/workshop/*", p.cfg.Extension)
	}
	if p.cfg.TestPage != nil {
		u.Get("/workshop-test/*", p.cfg.TestPage)
	}
	// Everything else that is read-only comes from a GPU host's ComfyUI.
	u.Get("/*", p.forward)
	u.All("/*", func(c *fiber.Ctx) error {
		return workshop.Errorf(workshop.ENOTFOUND, "no route %s %s", c.Method(), c.Path())
	})
}

func refuse(c *fiber.Ctx) error {
	return workshop.Errorf(workshop.EFORBIDDEN, "%s is not available in the workshop", c.Path())
}

// forward serves a read-only route from the mirror.
func (p *Proxy) forward(c *fiber.Ctx) error {
	if p.cfg.Mirror == nil {
		return workshop.Errorf(workshop.EUNAVAILABLE, "the GPUs are not connected yet")
	}
	// The path below /user/{n}, as sent (still escaped).
	rest := strings.TrimPrefix(c.Path(), "/user/"+c.Params("seat"))
	return p.cfg.Mirror.Serve(c, rest)
}

type ctxKey string

const (
	keyUser ctxKey = "workshop.user"
	keySeat ctxKey = "workshop.seat"
)

// userOf is the participant of a request under /user/{n}/.
func userOf(c *fiber.Ctx) string {
	u, _ := c.Locals(keyUser).(string)
	return u
}

// requireSeat admits a request to /user/{n}/ with a session for seat n,
// the admin token, the instructor's browser session (to look, not to act:
// a change needs its CSRF token, which the ComfyUI frontend does not send),
// or anyone in open-seats mode. A change from a page of another origin is
// refused whatever it carries.
func (p *Proxy) requireSeat(c *fiber.Ctx) error {
	n, err := strconv.Atoi(c.Params("seat"))
	if err != nil || n < 1 || n > seats.MaxSeats {
		return workshop.Errorf(workshop.ENOTFOUND, "no seat %q", c.Params("seat"))
	}
	// Nobody else's page may frame a participant's ComfyUI (clickjacking).
	c.Set(fiber.HeaderXFrameOptions, "SAMEORIGIN")
	c.Set(fiber.HeaderContentSecurityPolicy, "frame-ancestors 'self'")
	// (Sockets from other origins are refused for every route, by the API.)
	changes := !auth.SafeMethod(c.Method())
	if changes && !auth.SameOrigin(c.Get(fiber.HeaderOrigin), c.Get("Sec-Fetch-Site"), string(c.Request().Host())) {
		return workshop.Errorf(workshop.EFORBIDDEN, "cross-site request refused")
	}
	// A disabled seat says so on every route, signed in or not (its
	// sessions ended when it was disabled).
	if seat, err := p.cfg.Seats.Get(n); err != nil {
		return err
	} else if seat.Disabled {
		return disabledSeat(c, n)
	}
	ok := false
	if ses, found := p.cfg.Seats.Session(c.Cookies(seats.CookieName)); found && ses.Seat == n {
		ok = true
	} else if tok := auth.BearerToken(c.Get(fiber.HeaderAuthorization)); tok != "" && auth.TokenMatches(p.cfg.AdminTokenHash, tok) {
		ok = true
	} else if ses, found := p.cfg.Seats.Session(c.Cookies(seats.AdminCookieName)); found && ses.Admin {
		if changes && !seats.CSRFMatches(ses, c.Get("X-CSRF-Token")) {
			return workshop.Errorf(workshop.EFORBIDDEN, "the instructor's session can look into a seat but not act in it: use the seat's join link")
		}
		ok = true
	} else if p.cfg.OpenSeats {
		token, err := p.cfg.Seats.OpenSeat(c.UserContext(), n)
		if err != nil {
			return err
		}
		p.setCookie(c, token)
		ok = true
	}
	if !ok {
		if wantsHTML(c) {
			return signInFirst(c, n)
		}
		return workshop.Errorf(workshop.EUNAUTHORIZED, "sign in with your join link first")
	}
	c.Locals(keyUser, workshop.UserID(n))
	c.Locals(keySeat, n)
	return c.Next()
}

func wantsHTML(c *fiber.Ctx) bool {
	if c.Method() != fiber.MethodGet || websocketUpgrade(c) {
		return false
	}
	return strings.Contains(c.Get(fiber.HeaderAccept), "text/html")
}

func websocketUpgrade(c *fiber.Ctx) bool {
	return strings.EqualFold(c.Get(fiber.HeaderUpgrade), "websocket")
}

func (p *Proxy) setCookie(c *fiber.Ctx, token string) {
	c.Cookie(&fiber.Cookie{
		Name: seats.CookieName, Value: token, Path: "/", HTTPOnly: true, SameSite: "Lax",
		Secure: p.cfg.Secure, MaxAge: int(seats.SessionTTL.Seconds()),
	})
}

// joinLimits count wrong join codes: per address (one venue NAT is many
// people), per code (one misprinted card), and in all (many addresses).
// They change the answer to a wrong code, never to a right one: a valid
// code always joins, as 10 characters of a 31-letter alphabet (49 bits)
// already put guessing out of reach.
type joinLimits struct {
	addr, code, all *auth.Limiter
}

func newJoinLimits() joinLimits {
	return joinLimits{
		addr: auth.NewLimiter(10, time.Minute),
		code: auth.NewLimiter(5, time.Minute),
		all:  auth.NewLimiter(300, time.Minute),
	}
}

// wrong counts a wrong code and reports whether the caller is over a limit.
func (l joinLimits) wrong(ip, code string) bool {
	over := !l.addr.Take(ip)
	over = !l.code.Take(code[:min(len(code), 32)]) || over // bounded keys; real codes are 10 letters
	return !l.all.Take("all") || over
}

// join signs a participant in with their seat's code: GET from the QR code
// or link, POST from the page that asks a browser already in another seat
// before moving it. A valid code always works; wrong ones are counted.
func (p *Proxy) join(c *fiber.Ctx) error {
	ip := c.IP()
	code := normalizeCode(c.Params("code"))
	if c.Method() == fiber.MethodPost {
		if !auth.SameOrigin(c.Get(fiber.HeaderOrigin), c.Get("Sec-Fetch-Site"), string(c.Request().Host())) {
			return sendPage(c, fiber.StatusForbidden, pageData{Title: "Join the workshop", Form: true, Error: "Open the join link directly."})
		}
	} else if cur, ok := p.cfg.Seats.Session(c.Cookies(seats.CookieName)); ok && cur.Seat > 0 {
		if seat, err := p.cfg.Seats.ByCode(code); err == nil {
			if seat.Number == cur.Seat {
				return c.Redirect("/user/"+strconv.Itoa(seat.Number)+"/", fiber.StatusSeeOther)
			}
			return switchSeats(c, cur.Seat, seat.Number, code)
		}
	}
	seat, token, err := p.cfg.Seats.Join(c.UserContext(), code)
	if err != nil {
		switch workshop.ErrorCode(err) {
		case workshop.ENOTFOUND:
			if p.joinLimit.wrong(ip, code) {
				p.log.Warn("many wrong join codes", "ip", ip)
				return tooManyTries(c)
			}
		case workshop.EFORBIDDEN:
		default:
			return err
		}
		return joinFailed(c, code, err)
	}
	p.setCookie(c, token)
	p.log.Info("participant joined", "seat", seat.Number, "ip", ip)
	return c.Redirect("/user/"+strconv.Itoa(seat.Number)+"/", fiber.StatusSeeOther)
}

// Online counts a participant's open ComfyUI sockets.
func (p *Proxy) Online(user string) int { return p.sockets.count(user) }

// signedOut closes the sockets of a seat whose sessions ended: a session
// that is gone must stop receiving the seat's events.
func (p *Proxy) signedOut(seat int) { p.sockets.endAll(workshop.UserID(seat)) }
