package tunnel

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// TLSOptions describe how the agent checks the server's certificate on an
// https server URL. The zero value verifies against the system roots.
type TLSOptions struct {
	// CAFile is a PEM file of extra root certificates to trust, in addition
	// to RootCAs (or the system roots when RootCAs is nil).
	CAFile string
	// RootCAs replaces the system roots when set.
	RootCAs *x509.CertPool
	// Insecure skips all verification of the server's certificate.
	Insecure bool
	// FingerprintSHA256 pins the server's leaf certificate: the hex SHA-256
	// of its DER bytes (colons and letter case ignored), as
	// `openssl x509 -noout -fingerprint -sha256` prints it. With a pin the
	// chain is not verified (self-signed certificates work), only the pin.
	FingerprintSHA256 string
	// ServerName overrides the name sent in SNI and verified; default: the
	// server URL's host.
	ServerName string
}

// Config builds the tls.Config for the options.
func (o TLSOptions) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: o.ServerName,
		RootCAs:    o.RootCAs,
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tunnel: CA file: %w", err)
		}
		pool := o.RootCAs
		if pool == nil {
			if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		} else {
			pool = pool.Clone()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tunnel: CA file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.Insecure {
		cfg.InsecureSkipVerify = true
	}
	if o.FingerprintSHA256 != "" {
		pin, err := ParseFingerprint(o.FingerprintSHA256)
		if err != nil {
			return nil, err
		}
		cfg.InsecureSkipVerify = true // the pin replaces chain verification
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tunnel: server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], pin) != 1 {
				return fmt.Errorf("tunnel: server certificate fingerprint %s does not match the pinned %s",
					hex.EncodeToString(got[:]), hex.EncodeToString(pin))
			}
			return nil
		}
	}
	return cfg, nil
}

// ParseFingerprint parses a hex SHA-256 fingerprint, with or without colons.
func ParseFingerprint(s string) ([]byte, error) {
	clean := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
	clean = strings.TrimPrefix(clean, "sha256=")
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("tunnel: fingerprint %q is not 64 hex digits of SHA-256", s)
	}
	return b, nil
}

// CertFingerprint returns the hex SHA-256 of a DER certificate, the form
// TLSOptions.FingerprintSHA256 takes.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
