// Package certs gives the workshop server everything it needs to terminate
// TLS itself, independent of the HTTP framework: a *tls.Config for the
// server's own :443 listener, an http.Handler for its :80 listener, and the
// facts `workshop status` and the GPU agent need (expiry, fingerprint).
//
// # Modes
//
//   - [ModeACME]: certificates from an ACME CA (Let's Encrypt production by
//     default; [Config.CA] for staging or another CA), obtained and renewed by
//     certmagic's managed config and kept under [Config.Dir]. Challenges are
//     HTTP-01 (answered by [Manager.HTTPHandler] on :80) and TLS-ALPN-01
//     (answered by [Manager.TLSConfig] on :443). certmagic's HTTPS() helper is
//     deliberately not used: its 5-second timeouts would break WebSockets and
//     the agent tunnel.
//   - [ModeFiles]: an existing certificate and key (PEM files), read at start
//     and again on [Manager.Reload] (the server calls it on SIGHUP). A bad new
//     pair is refused with a clear error and the old certificate keeps serving.
//   - [ModeSelfSigned]: an ECDSA certificate for [Config.Hosts], generated once
//     and kept under [Config.Dir], so its SHA-256 fingerprint (the form
//     `gpu-agent --server-fingerprint` takes) is stable across restarts.
//
// # Wiring
//
//	m, err := certs.New(ctx, certs.Config{Mode: certs.ModeACME, Domains: ..., Email: ...,
//		Dir: filepath.Join(dataDir, "certs"), HTTPAddr: ":80", TLSAddr: ":443", Logger: log})
//	defer m.Close()
//	ln443, _ := net.Listen("tcp", ":443")
//	go app.Listener(tls.NewListener(ln443, m.TLSConfig()))
//	ln80, _ := net.Listen("tcp", ":80")
//	go (&http.Server{Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}).Serve(ln80)
//	if err := m.Start(ctx); err != nil { ... exit: err says what to fix ... }
//
// Start obtains the ACME certificate (or loads it from Dir) synchronously,
// bounded by [Config.ObtainTimeout], and from then on certmagic renews it in
// the background; for the other modes it does nothing. Start after the
// listeners are up, so that the challenges are answered by them.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/comfy-workshop/workshop/tunnel"
)

// Mode selects where the server's certificate comes from.
type Mode string

const (
	// ModeACME obtains and renews certificates from an ACME CA.
	ModeACME Mode = "acme"
	// ModeFiles serves an existing certificate and key from PEM files.
	ModeFiles Mode = "files"
	// ModeSelfSigned serves a generated, persisted self-signed certificate.
	ModeSelfSigned Mode = "self-signed"
)

// Modes lists the valid modes, in the order a flag's help should show them.
var Modes = []Mode{ModeACME, ModeFiles, ModeSelfSigned}

// ParseMode checks a --tls flag value.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if strings.EqualFold(strings.TrimSpace(s), string(m)) {
			return m, nil
		}
	}
	return "", fmt.Errorf("certs: unknown TLS mode %q: use acme, files or self-signed", s)
}

// ACME directory URLs of Let's Encrypt.
const (
	LetsEncryptCA        = certmagic.LetsEncryptProductionCA
	LetsEncryptStagingCA = certmagic.LetsEncryptStagingCA
)

// Defaults.
const (
	DefaultObtainTimeout = 3 * time.Minute
	// SelfSignedValidity is the lifetime of a generated certificate (Apple's
	// limit for TLS server certificates); it is regenerated, with a new
	// fingerprint, when less than SelfSignedRenewBefore is left.
	SelfSignedValidity    = 825 * 24 * time.Hour
	SelfSignedRenewBefore = 30 * 24 * time.Hour
)

// Protocols offered in ALPN. Fiber/fasthttp serves HTTP/1.1 only, so h2 is
// never offered; acme-tls/1 is added in ACME mode for TLS-ALPN-01.
const (
	ProtoHTTP11  = "http/1.1"
	ProtoACMETLS = "acme-tls/1"
)

// Config configures a Manager.
type Config struct {
	Mode Mode

	// ACME mode.
	Domains []string // names to get certificates for (one certificate each); the first is served to clients that send no SNI
	Email   string   // the CA account's contact address (required)
	CA      string   // ACME directory URL; default LetsEncryptCA
	// CARoots, when set, are the only roots trusted for the CA's own HTTPS
	// endpoint (a test CA such as Pebble); nil means the system roots.
	CARoots *x509.CertPool
	// DisableHTTPChallenge and DisableTLSALPNChallenge turn a challenge type
	// off (for example when port 80 is blocked upstream).
	DisableHTTPChallenge    bool
	DisableTLSALPNChallenge bool
	// ObtainTimeout bounds Start; default DefaultObtainTimeout.
	ObtainTimeout time.Duration

	// HTTPAddr and TLSAddr are the addresses the server's plain-HTTP and
	// HTTPS listeners bind (default ":80" and ":443"). In ACME mode the
	// challenges are answered through those listeners; certmagic binds the
	// address itself only while nothing listens there. TLSAddr's port also
	// goes into the :80 redirect when it is not 443.
	HTTPAddr string
	TLSAddr  string

	// Dir holds ACME account keys and certificates, or the self-signed
	// certificate (required for acme and self-signed; created 0700).
	Dir string

	// Files mode: PEM certificate (chain, leaf first) and private key.
	CertFile string
	KeyFile  string

	// Self-signed mode: DNS names and IP addresses the certificate covers;
	// default localhost, 127.0.0.1, ::1 and the machine's host name.
	Hosts []string

	Logger *slog.Logger // default slog.Default()

	// Test knobs for renewal (zero: certmagic's defaults, a check every
	// 10 minutes, renewing in the last third of the lifetime or per ARI).
	renewCheckInterval time.Duration
	renewalWindowRatio float64
}

// Manager serves the server's certificate for one mode. Its methods are safe
// for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	tlsConfig *tls.Config
	httpsPort string // "" for 443

	// files and self-signed: the certificate being served.
	cur      atomic.Pointer[tls.Certificate]
	reloadMu sync.Mutex

	// acme
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache

	closeOnce sync.Once
}

// New checks cfg and prepares a Manager. It reads the certificate files
// (files mode) or loads or generates the certificate (self-signed mode); in
// ACME mode it touches no network: call Start once the listeners are up.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":80"
	}
	if cfg.TLSAddr == "" {
		cfg.TLSAddr = ":443"
	}
	if cfg.ObtainTimeout <= 0 {
		cfg.ObtainTimeout = DefaultObtainTimeout
	}
	if _, _, err := splitAddr(cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("certs: HTTP listen address %q: %v", cfg.HTTPAddr, err)
	}
	_, tlsPort, err := splitAddr(cfg.TLSAddr)
	if err != nil {
		return nil, fmt.Errorf("certs: HTTPS listen address %q: %v", cfg.TLSAddr, err)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "certs", "tls_mode", string(cfg.Mode))}
	if tlsPort != 443 && tlsPort != 0 {
		m.httpsPort = strconv.Itoa(tlsPort)
	}

	switch cfg.Mode {
	case ModeACME:
		err = m.initACME()
	case ModeFiles:
		err = m.initFiles()
	case ModeSelfSigned:
		err = m.initSelfSigned()
	case "":
		err = errors.New("certs: no TLS mode given: use acme, files or self-signed")
	default:
		_, err = ParseMode(string(cfg.Mode))
	}
	if err != nil {
		return nil, err
	}

	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{ProtoHTTP11},
	}
	if cfg.Mode == ModeACME {
		tc.GetCertificate = m.magic.GetCertificate
		tc.NextProtos = append(tc.NextProtos, ProtoACMETLS)
	} else {
		tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.cur.Load(), nil
		}
	}
	m.tlsConfig = tc
	return m, nil
}

// Mode returns the manager's mode.
func (m *Manager) Mode() Mode { return m.cfg.Mode }

// TLSConfig returns a tls.Config for the server's HTTPS listener
// (tls.NewListener). Each call returns a fresh copy.
func (m *Manager) TLSConfig() *tls.Config { return m.tlsConfig.Clone() }

// Start, in ACME mode, loads each domain's certificate from Dir or obtains it
// from the CA, synchronously and within Config.ObtainTimeout (or ctx, if
// sooner), and leaves certmagic renewing it in the background until Close.
// Call it after the :80 and :443 listeners serve HTTPHandler and TLSConfig.
// In the other modes it does nothing.
func (m *Manager) Start(ctx context.Context) error {
	if m.cfg.Mode != ModeACME {
		return nil
	}
	return m.startACME(ctx)
}

// Fingerprint returns the hex SHA-256 of the served leaf certificate, the
// form `gpu-agent --server-fingerprint` takes (tunnel.CertFingerprint). In
// ACME mode it returns "": those certificates change at every renewal, so an
// agent must verify them against the system roots, not pin them.
func (m *Manager) Fingerprint() string {
	if m.cfg.Mode == ModeACME {
		return ""
	}
	c := m.cur.Load()
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	return tunnel.CertFingerprint(c.Certificate[0])
}

// Expiry returns when the served certificate expires; in ACME mode the
// earliest expiry among the domains' certificates. Zero when none is loaded
// yet (ACME before Start).
func (m *Manager) Expiry() time.Time {
	if m.cfg.Mode == ModeACME {
		return m.acmeExpiry()
	}
	c := m.cur.Load()
	if c == nil || c.Leaf == nil {
		return time.Time{}
	}
	return c.Leaf.NotAfter
}

// Reload re-reads the certificate and key files (files mode; the server calls
// it on SIGHUP). When the new pair is unusable it returns an error saying
// why, and the previous certificate keeps serving. In the other modes it does
// nothing (certmagic renews ACME certificates by itself).
func (m *Manager) Reload() error {
	if m.cfg.Mode != ModeFiles {
		return nil
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	c, err := loadPair(m.cfg.CertFile, m.cfg.KeyFile, time.Now())
	if err != nil {
		m.log.Error("certificate reload failed; still serving the previous certificate",
			"err", err, "fingerprint", m.Fingerprint(), "expires", m.Expiry())
		return fmt.Errorf("%w (still serving the previous certificate)", err)
	}
	old := m.Fingerprint()
	m.cur.Store(c)
	m.log.Info("certificate reloaded", "cert", m.cfg.CertFile, "fingerprint", m.Fingerprint(),
		"previous", old, "expires", c.Leaf.NotAfter)
	return nil
}

// Close stops background renewal (ACME). It is safe to call more than once.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		if m.cache != nil {
			m.cache.Stop()
		}
	})
}

// HTTPHandler returns the handler for the server's plain-HTTP (:80)
// listener: it answers ACME HTTP-01 challenges (ACME mode) and passes every
// other request to fallback, or, when fallback is nil, redirects it with 308
// to the same host and path over HTTPS.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.HandlerFunc(m.redirect)
	}
	if m.issuer == nil {
		return fallback
	}
	iss := m.issuer
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if iss.HandleHTTPChallenge(w, r) {
			return
		}
		fallback.ServeHTTP(w, r)
	})
}

func (m *Manager) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, "/\\@?#% ") {
		host = m.defaultHost()
	}
	if host == "" {
		http.Error(w, "use https:// with this server's name", http.StatusBadRequest)
		return
	}
	if m.httpsPort != "" {
		host = net.JoinHostPort(host, m.httpsPort)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	target := "https://" + host + r.URL.RequestURI()
	w.Header().Set("Connection", "close")
	http.Redirect(w, r, target, http.StatusPermanentRedirect)
}

func (m *Manager) defaultHost() string {
	switch {
	case len(m.cfg.Domains) > 0:
		return m.cfg.Domains[0]
	case len(m.cfg.Hosts) > 0:
		return m.cfg.Hosts[0]
	}
	return ""
}

// splitAddr splits a listen address; the port must be numeric.
func splitAddr(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number", p)
	}
	return h, n, nil
}
