package certs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

func (m *Manager) initACME() error {
	cfg := &m.cfg
	if len(cfg.Domains) == 0 {
		return errors.New("certs: acme mode needs the server's public domain name: pass --domain workshop.example.org (its DNS must point at this server)")
	}
	seen := map[string]bool{}
	domains := make([]string, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if err := checkDomain(d); err != nil {
			return err
		}
		if !seen[d] {
			seen[d] = true
			domains = append(domains, d)
		}
	}
	cfg.Domains = domains
	if strings.TrimSpace(cfg.Email) == "" || !strings.Contains(cfg.Email, "@") {
		return fmt.Errorf("certs: acme mode needs a contact email for the CA account: pass --email you@example.org (got %q)", cfg.Email)
	}
	if cfg.CA == "" {
		cfg.CA = LetsEncryptCA
	}
	u, err := url.Parse(cfg.CA)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("certs: ACME CA %q is not an https:// directory URL (for example %s)", cfg.CA, LetsEncryptStagingCA)
	}
	if cfg.Dir == "" {
		return errors.New("certs: acme mode needs a directory to keep the account and certificates in (the data dir's certs/ folder)")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("certs: cannot create certificate directory: %w", err)
	}
	if cfg.DisableHTTPChallenge && cfg.DisableTLSALPNChallenge {
		return errors.New("certs: both ACME challenges are disabled: enable HTTP-01 (port 80) or TLS-ALPN-01 (port 443)")
	}
	httpHost, httpPort, _ := splitAddr(cfg.HTTPAddr)
	tlsHost, tlsPort, _ := splitAddr(cfg.TLSAddr)
	listenHost := tlsHost
	if cfg.DisableTLSALPNChallenge {
		listenHost = httpHost
	}

	zl := zapLogger(m.log)
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: cfg.renewCheckInterval,
		Logger:             zl,
	})
	magic = certmagic.New(m.cache, certmagic.Config{
		Storage:            &certmagic.FileStorage{Path: cfg.Dir},
		Logger:             zl,
		DefaultServerName:  cfg.Domains[0], // clients that send no SNI (by IP) still get a certificate
		RenewalWindowRatio: cfg.renewalWindowRatio,
	})
	m.issuer = certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      cfg.CA,
		Email:                   cfg.Email,
		Agreed:                  true, // choosing --tls acme accepts the CA's terms; never prompt on stdin
		TrustedRoots:            cfg.CARoots,
		DisableHTTPChallenge:    cfg.DisableHTTPChallenge,
		DisableTLSALPNChallenge: cfg.DisableTLSALPNChallenge,
		ListenHost:              listenHost,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          tlsPort,
		CertObtainTimeout:       cfg.ObtainTimeout,
		Logger:                  zl,
	})
	magic.Issuers = []certmagic.Issuer{m.issuer}
	m.magic = magic
	return nil
}

func checkDomain(d string) error {
	switch {
	case d == "":
		return errors.New("certs: empty domain name")
	case strings.HasPrefix(d, "*."):
		return fmt.Errorf("certs: wildcard %q needs the DNS-01 challenge, which the workshop server does not do: list each name", d)
	case strings.ContainsAny(d, "/:@ "):
		return fmt.Errorf("certs: %q is not a domain name: pass the bare name, like workshop.example.org", d)
	case d == "localhost" || strings.HasSuffix(d, ".localhost"):
		return fmt.Errorf("certs: no CA issues certificates for %q: use --tls self-signed on a LAN", d)
	}
	return nil
}

func (m *Manager) startACME(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ObtainTimeout)
	defer cancel()
	start := time.Now()
	m.log.Info("getting TLS certificates", "domains", m.cfg.Domains, "ca", m.cfg.CA, "dir", m.cfg.Dir)
	if err := m.magic.ManageSync(ctx, m.cfg.Domains); err != nil {
		return m.explainACME(ctx, err)
	}
	m.log.Info("TLS certificates ready", "domains", m.cfg.Domains, "expires", m.acmeExpiry(),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (m *Manager) explainACME(ctx context.Context, err error) error {
	var how []string
	if !m.cfg.DisableHTTPChallenge {
		how = append(how, "port 80 (HTTP-01)")
	}
	if !m.cfg.DisableTLSALPNChallenge {
		how = append(how, "port 443 (TLS-ALPN-01)")
	}
	hint := fmt.Sprintf("check that the DNS of %s points at this server, that %s is reachable from the internet and served by this process",
		strings.Join(m.cfg.Domains, ", "), strings.Join(how, " or "))
	if m.cfg.CA == LetsEncryptCA {
		hint += fmt.Sprintf("; to debug without hitting Let's Encrypt's rate limits, try --acme-ca %s", LetsEncryptStagingCA)
	}
	msg := err.Error()
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(msg, "provisioning client") || strings.Contains(msg, "registering account") {
		// The CA itself did not answer, before any challenge.
		hint = "check the --acme-ca URL and that this server can make outbound HTTPS connections"
	}
	if ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("certs: no certificate from %s within %s: %v; %s", m.cfg.CA, m.cfg.ObtainTimeout, err, hint)
	}
	return fmt.Errorf("certs: getting a certificate from %s failed: %v; %s", m.cfg.CA, err, hint)
}

func (m *Manager) acmeExpiry() time.Time {
	var min time.Time
	for _, d := range m.cfg.Domains {
		for _, c := range m.cache.AllMatchingCertificates(d) {
			if c.Leaf == nil {
				continue
			}
			if min.IsZero() || c.Leaf.NotAfter.Before(min) {
				min = c.Leaf.NotAfter
			}
		}
	}
	return min
}
