package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names of the self-signed certificate under Config.Dir.
const (
	SelfSignedCertFile = "self-signed.crt"
	SelfSignedKeyFile  = "self-signed.key"
)

func (m *Manager) initSelfSigned() error {
	cfg := &m.cfg
	if cfg.Dir == "" {
		return errors.New("certs: self-signed mode needs a directory to keep the certificate in (the data dir's certs/ folder), so its fingerprint stays the same across restarts")
	}
	hosts, err := selfSignedHosts(cfg.Hosts)
	if err != nil {
		return err
	}
	cfg.Hosts = hosts
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("certs: cannot create certificate directory: %w", err)
	}
	certPath := filepath.Join(cfg.Dir, SelfSignedCertFile)
	keyPath := filepath.Join(cfg.Dir, SelfSignedKeyFile)

	now := time.Now()
	c, err := loadPair(certPath, keyPath, now)
	reason := ""
	switch {
	case err == nil && !covers(c.Leaf, hosts):
		reason = fmt.Sprintf("it covers %s, not all of %s", certNames(c.Leaf), strings.Join(hosts, ", "))
	case err == nil && c.Leaf.NotAfter.Sub(now) < SelfSignedRenewBefore:
		reason = "it expires on " + c.Leaf.NotAfter.UTC().Format(time.RFC3339)
	case err == nil:
		m.cur.Store(c)
		m.log.Info("serving the self-signed certificate", "file", certPath, "names", certNames(c.Leaf),
			"fingerprint", m.Fingerprint(), "expires", c.Leaf.NotAfter)
		return nil
	case !exists(certPath):
		reason = "there is none yet"
	case !exists(keyPath):
		reason = "its key file is missing"
	case isPermission(certPath) || isPermission(keyPath):
		// Unreadable, not broken: do not overwrite what we cannot read.
		return err
	default:
		reason = err.Error() // corrupt, mismatched or expired
	}

	old := ""
	if c != nil {
		m.cur.Store(c)
		old = m.Fingerprint()
	}
	certPEM, keyPEM, err := generateSelfSigned(hosts, now)
	if err != nil {
		return err
	}
	// Key first: a crash in between leaves a key that does not match the old
	// certificate, which the next start regenerates.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return err
	}
	if c, err = loadPair(certPath, keyPath, now); err != nil {
		return fmt.Errorf("certs: reading back the generated certificate: %w", err)
	}
	m.cur.Store(c)
	if old != "" {
		m.log.Warn("generated a new self-signed certificate: its fingerprint changed, so agents pinning the old one must be given the new --server-fingerprint",
			"why", reason, "fingerprint", m.Fingerprint(), "previous", old, "names", certNames(c.Leaf))
	} else {
		m.log.Info("generated a self-signed certificate", "why", reason, "file", certPath,
			"fingerprint", m.Fingerprint(), "names", certNames(c.Leaf), "expires", c.Leaf.NotAfter)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func isPermission(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return errors.Is(err, fs.ErrPermission)
	}
	f.Close()
	return false
}

// selfSignedHosts normalises the host list, with defaults.
func selfSignedHosts(in []string) ([]string, error) {
	if len(in) == 0 {
		in = []string{"localhost", "127.0.0.1", "::1"}
		if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
			in = append(in, h)
		}
	}
	var out []string
	for _, h := range in {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		} else if strings.ContainsAny(h, "/:@ ") {
			return nil, fmt.Errorf("certs: %q is neither a host name nor an IP address", h)
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("certs: self-signed mode needs at least one host name or IP address")
	}
	return out, nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func generateSelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generating serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"ComfyUI Workshop (self-signed)"}},
		NotBefore:             now.Add(-time.Hour), // tolerate small clock skew on clients
		NotAfter:              now.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFileAtomic writes data to a temporary file beside name, syncs it and
// renames it over name.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: writing %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("certs: writing %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("certs: writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("certs: writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: writing %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("certs: writing %s: %w", name, err)
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
