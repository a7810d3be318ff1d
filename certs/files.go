package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

func (m *Manager) initFiles() error {
	if m.cfg.CertFile == "" || m.cfg.KeyFile == "" {
		return errors.New("certs: files mode needs both --cert FILE and --key FILE (PEM; or SSL_CERT_PATH and SSL_KEY_PATH)")
	}
	c, err := loadPair(m.cfg.CertFile, m.cfg.KeyFile, time.Now())
	if err != nil {
		return err
	}
	m.cur.Store(c)
	m.log.Info("serving certificate from files", "cert", m.cfg.CertFile, "key", m.cfg.KeyFile,
		"names", certNames(c.Leaf), "expires", c.Leaf.NotAfter, "fingerprint", m.Fingerprint())
	if left := time.Until(c.Leaf.NotAfter); left < 14*24*time.Hour {
		m.log.Warn("certificate expires soon: replace the files and send SIGHUP", "expires", c.Leaf.NotAfter, "left", left.Round(time.Hour))
	}
	return nil
}

// loadPair reads and checks a PEM certificate chain and private key.
func loadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := readPEMFile("certificate", certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readPEMFile("key", keyFile)
	if err != nil {
		return nil, err
	}
	if !hasBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return nil, fmt.Errorf("certs: certificate file %s holds no PEM CERTIFICATE block (is it the key, or DER?)", certFile)
	}
	if !hasBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return nil, fmt.Errorf("certs: key file %s holds no PEM PRIVATE KEY block (is it the certificate?)", keyFile)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "does not match"):
			return nil, fmt.Errorf("certs: key file %s does not match the certificate in %s: install the key that belongs to this certificate", keyFile, certFile)
		case strings.Contains(msg, "private key"):
			return nil, fmt.Errorf("certs: key file %s: %v", keyFile, err)
		default:
			return nil, fmt.Errorf("certs: certificate file %s: %v", certFile, err)
		}
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: certificate file %s: %v", certFile, err)
		}
	}
	if now.After(c.Leaf.NotAfter) {
		return nil, fmt.Errorf("certs: the certificate in %s (%s) expired on %s: install a current one",
			certFile, certNames(c.Leaf), c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.Leaf.NotBefore) {
		return nil, fmt.Errorf("certs: the certificate in %s is not valid before %s: check the clock of this machine",
			certFile, c.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

func readPEMFile(what, name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("certs: %s file %s does not exist: check the path", what, name)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("certs: %s file %s is not readable by this process (user %d): fix its permissions", what, name, os.Getuid())
	case err != nil:
		return nil, fmt.Errorf("certs: reading %s file: %w", what, err)
	case len(b) == 0:
		return nil, fmt.Errorf("certs: %s file %s is empty", what, name)
	}
	return b, nil
}

func hasBlock(data []byte, want func(string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if want(b.Type) {
			return true
		}
	}
}

func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = append(names, c.Subject.CommonName)
	}
	return strings.Join(names, ", ")
}
