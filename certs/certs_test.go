package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/tunnel"
)

func TestNewRejectsBadConfig(t *testing.T) {
	log, _ := testLogger(t)
	dir := t.TempDir()
	ctx := context.Background()
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no mode", Config{}, []string{"no TLS mode", "acme, files or self-signed"}},
		{"bad mode", Config{Mode: "letsencrypt"}, []string{`unknown TLS mode "letsencrypt"`}},
		{"acme no domain", Config{Mode: ModeACME, Email: "a@b.c", Dir: dir}, []string{"--domain"}},
		{"acme no email", Config{Mode: ModeACME, Domains: []string{"w.example.org"}, Dir: dir}, []string{"--email"}},
		{"acme wildcard", Config{Mode: ModeACME, Domains: []string{"*.example.org"}, Email: "a@b.c", Dir: dir}, []string{"DNS-01"}},
		{"acme url as domain", Config{Mode: ModeACME, Domains: []string{"https://w.example.org"}, Email: "a@b.c", Dir: dir}, []string{"bare name"}},
		{"acme http CA", Config{Mode: ModeACME, Domains: []string{"w.example.org"}, Email: "a@b.c", Dir: dir, CA: "http://ca/dir"}, []string{"https://"}},
		{"acme no dir", Config{Mode: ModeACME, Domains: []string{"w.example.org"}, Email: "a@b.c"}, []string{"directory"}},
		{"acme no challenge", Config{Mode: ModeACME, Domains: []string{"w.example.org"}, Email: "a@b.c", Dir: dir,
			DisableHTTPChallenge: true, DisableTLSALPNChallenge: true}, []string{"both ACME challenges"}},
		{"files no key", Config{Mode: ModeFiles, CertFile: "c.pem"}, []string{"--cert FILE and --key FILE"}},
		{"files missing", Config{Mode: ModeFiles, CertFile: filepath.Join(dir, "nope.pem"), KeyFile: filepath.Join(dir, "nope.key")},
			[]string{"certificate file", "nope.pem", "does not exist"}},
		{"self-signed no dir", Config{Mode: ModeSelfSigned}, []string{"directory"}},
		{"self-signed bad host", Config{Mode: ModeSelfSigned, Dir: dir, Hosts: []string{"http://x"}}, []string{"neither a host name nor an IP"}},
		{"bad listen addr", Config{Mode: ModeSelfSigned, Dir: dir, TLSAddr: "443"}, []string{"HTTPS listen address"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = log
			m, err := New(ctx, tc.cfg)
			if m != nil {
				m.Close()
			}
			mustContain(t, err, tc.want...)
		})
	}
	if m, err := ParseMode(" Self-Signed "); err != nil || m != ModeSelfSigned {
		t.Fatalf("ParseMode: %v %v", m, err)
	}
}

func TestSelfSignedStableAndPinned(t *testing.T) {
	log, _ := testLogger(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Mode: ModeSelfSigned, Dir: dir, Hosts: []string{"localhost", "127.0.0.1", "workshop.lan"}, Logger: log}

	m1, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fp := m1.Fingerprint()
	if _, err := tunnel.ParseFingerprint(fp); err != nil {
		t.Fatalf("fingerprint %q not in the agent's format: %v", fp, err)
	}
	if left := time.Until(m1.Expiry()); left < SelfSignedValidity-2*time.Hour || left > SelfSignedValidity {
		t.Fatalf("expiry in %s", left)
	}
	if st, err := os.Stat(filepath.Join(dir, SelfSignedKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	if m1.Reload() != nil || m1.Fingerprint() != fp {
		t.Fatal("Reload changed a self-signed certificate")
	}

	// A restart on the same directory keeps the certificate and fingerprint,
	// also with the hosts in another order and a subset.
	cfg.Hosts = []string{"workshop.lan", "localhost"}
	m2, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Fingerprint() != fp {
		t.Fatalf("fingerprint changed across restarts: %s -> %s", fp, m2.Fingerprint())
	}
	addr := serveTLS(t, m2.TLSConfig())

	// The agent's pinning, as gpu-agent --server-fingerprint sets it up; the
	// upper-case, colon-separated form openssl prints works too.
	for _, pin := range []string{fp, colonUpper(fp)} {
		ccfg, err := tunnel.TLSOptions{FingerprintSHA256: pin}.Config()
		if err != nil {
			t.Fatal(err)
		}
		ccfg.NextProtos = []string{"h2", "http/1.1"}
		st, err := handshake(addr, ccfg)
		if err != nil {
			t.Fatalf("pinned client: %v", err)
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Fatalf("ALPN %q, want http/1.1 (no h2: fasthttp serves HTTP/1.1 only)", st.NegotiatedProtocol)
		}
		if got := tunnel.CertFingerprint(st.PeerCertificates[0].Raw); got != fp {
			t.Fatalf("served %s, Fingerprint() says %s", got, fp)
		}
	}

	// The agent's tunnel runs over it, pinned.
	agentTLS, _ := tunnel.TLSOptions{FingerprintSHA256: fp}.Config()
	checkTunnel(t, m2.TLSConfig(), agentTLS)

	// A pin of another certificate fails the handshake.
	other, err := New(ctx, Config{Mode: ModeSelfSigned, Dir: t.TempDir(), Hosts: []string{"localhost"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if other.Fingerprint() == fp {
		t.Fatal("two directories gave the same certificate")
	}
	ccfg, _ := tunnel.TLSOptions{FingerprintSHA256: other.Fingerprint()}.Config()
	_, err = handshake(addr, ccfg)
	mustContain(t, err, "does not match the pinned")

	// Without a pin the certificate is, rightly, untrusted...
	_, err = handshake(addr, &tls.Config{ServerName: "localhost"})
	if err == nil {
		t.Fatal("an unpinned client trusted a self-signed certificate")
	}
	// ...and trusting the certificate file itself (gpu-agent --ca-file) works.
	pemBytes, err := os.ReadFile(filepath.Join(dir, SelfSignedCertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	for _, name := range []string{"localhost", "workshop.lan", "127.0.0.1"} {
		if _, err := handshake(addr, &tls.Config{RootCAs: pool, ServerName: name}); err != nil {
			t.Fatalf("client trusting the certificate file, name %s: %v", name, err)
		}
	}

	// A host the certificate does not cover makes a new certificate.
	cfg.Hosts = []string{"localhost", "10.1.2.3"}
	m3, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m3.Fingerprint() == fp {
		t.Fatal("certificate not regenerated for a new host")
	}
	st, err := handshake(serveTLS(t, m3.TLSConfig()), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if ips := st.PeerCertificates[0].IPAddresses; len(ips) != 1 || ips[0].String() != "10.1.2.3" {
		t.Fatalf("IP SANs %v", ips)
	}
}

func TestSelfSignedReplacesCorruptFiles(t *testing.T) {
	log, _ := testLogger(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, SelfSignedCertFile), []byte("garbage"))
	writeFile(t, filepath.Join(dir, SelfSignedKeyFile), []byte("garbage"))
	m, err := New(context.Background(), Config{Mode: ModeSelfSigned, Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if m.Fingerprint() == "" {
		t.Fatal("no certificate")
	}
	leaf := m.cur.Load().Leaf
	if !covers(leaf, []string{"localhost", "127.0.0.1", "::1"}) {
		t.Fatalf("default hosts not covered: %s", certNames(leaf))
	}
}

func colonUpper(fp string) string {
	var parts []string
	for i := 0; i < len(fp); i += 2 {
		parts = append(parts, strings.ToUpper(fp[i:i+2]))
	}
	return strings.Join(parts, ":")
}

func TestFilesReload(t *testing.T) {
	log, _ := testLogger(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	now := time.Now()
	certA, keyA := genPair(t, "a.example.org", now.Add(-time.Hour), now.Add(48*time.Hour))
	certB, keyB := genPair(t, "b.example.org", now.Add(-time.Hour), now.Add(72*time.Hour))
	writeFile(t, certFile, certA)
	writeFile(t, keyFile, keyA)

	m, err := New(context.Background(), Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fpA := tunnel.CertFingerprint(pemFingerprintDER(t, certA))
	fpB := tunnel.CertFingerprint(pemFingerprintDER(t, certB))
	if m.Fingerprint() != fpA {
		t.Fatalf("fingerprint %s, want %s", m.Fingerprint(), fpA)
	}
	addr := serveTLS(t, m.TLSConfig())
	served := func() string {
		t.Helper()
		st, err := handshake(addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return tunnel.CertFingerprint(st.PeerCertificates[0].Raw)
	}
	if served() != fpA {
		t.Fatal("not serving A")
	}

	// New files, then Reload (SIGHUP): B is served, on the same listener.
	writeFile(t, certFile, certB)
	writeFile(t, keyFile, keyB)
	if served() != fpA {
		t.Fatal("changed before Reload")
	}
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if served() != fpB || m.Fingerprint() != fpB {
		t.Fatal("not serving B after Reload")
	}
	if d := m.Expiry().Sub(now.Add(72 * time.Hour)); d < -time.Second || d > time.Second {
		t.Fatalf("Expiry %s", m.Expiry())
	}

	// The agent's tunnel runs over it, pinned to the reloaded certificate.
	agentTLS, _ := tunnel.TLSOptions{FingerprintSHA256: m.Fingerprint()}.Config()
	checkTunnel(t, m.TLSConfig(), agentTLS)

	// Each broken replacement is refused with a clear error; B keeps serving.
	expiredCert, expiredKey := genPair(t, "old.example.org", now.Add(-72*time.Hour), now.Add(-time.Hour))
	broken := []struct {
		name      string
		cert, key []byte
		want      []string
	}{
		{"garbage cert", []byte("not a certificate"), keyB, []string{"certificate file", certFile, "no PEM CERTIFICATE"}},
		{"truncated cert", certB[:len(certB)/2], keyB, []string{"certificate file", certFile}},
		{"key of another cert", certB, keyA, []string{"key file", keyFile, "does not match the certificate"}},
		{"swapped", keyB, certB, []string{"certificate file", "no PEM CERTIFICATE"}},
		{"empty key", certB, []byte{}, []string{"key file", "is empty"}},
		{"expired", expiredCert, expiredKey, []string{"expired on"}},
	}
	for _, b := range broken {
		writeFile(t, certFile, b.cert)
		writeFile(t, keyFile, b.key)
		err := m.Reload()
		mustContain(t, err, append(b.want, "still serving the previous certificate")...)
		if served() != fpB || m.Fingerprint() != fpB {
			t.Fatalf("%s: stopped serving B", b.name)
		}
	}
	os.Remove(keyFile)
	mustContain(t, m.Reload(), "key file", "does not exist")
	if os.Getuid() != 0 { // root reads any file
		writeFile(t, keyFile, keyA)
		os.Chmod(keyFile, 0)
		mustContain(t, m.Reload(), "not readable")
	}
	if served() != fpB {
		t.Fatal("stopped serving B")
	}

	// The same errors stop New, before anything serves.
	writeFile(t, certFile, certA)
	os.Remove(keyFile)
	writeFile(t, keyFile, keyB)
	_, err = New(context.Background(), Config{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, Logger: log})
	mustContain(t, err, "does not match")
}

func TestHTTPHandlerRedirects(t *testing.T) {
	log, _ := testLogger(t)
	dir := t.TempDir()
	m443, err := New(context.Background(), Config{Mode: ModeSelfSigned, Dir: dir, Hosts: []string{"workshop.lan"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m8443, err := New(context.Background(), Config{Mode: ModeSelfSigned, Dir: dir, Hosts: []string{"workshop.lan"},
		TLSAddr: "127.0.0.1:8443", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		m      *Manager
		method string
		host   string
		target string
		want   string
	}{
		{m443, "GET", "workshop.lan", "/user/3/?a=1&b=2", "https://workshop.lan/user/3/?a=1&b=2"},
		{m443, "POST", "workshop.lan:80", "/user/3/api/prompt", "https://workshop.lan/user/3/api/prompt"},
		{m443, "GET", "[fe80::1]:80", "/", "https://[fe80::1]/"},
		{m443, "GET", "10.0.0.5", "//evil.example/x", "https://10.0.0.5//evil.example/x"},
		{m443, "GET", "", "/admin", "https://workshop.lan/admin"},
		{m8443, "GET", "workshop.lan", "/admin", "https://workshop.lan:8443/admin"},
		{m8443, "GET", "[::1]:8080", "/", "https://[::1]:8443/"},
		// not a challenge in files/self-signed mode: redirected too
		{m443, "GET", "workshop.lan", "/.well-known/acme-challenge/abc", "https://workshop.lan/.well-known/acme-challenge/abc"},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://placeholder"+c.target, nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		c.m.HTTPHandler(nil).ServeHTTP(w, r)
		if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != c.want {
			t.Errorf("%s %s%s: %d %q, want 308 %q", c.method, c.host, c.target, w.Code, w.Header().Get("Location"), c.want)
		}
	}

	// A fallback replaces the redirect.
	h := m443.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if w.Code != http.StatusTeapot {
		t.Fatalf("fallback not used: %d", w.Code)
	}
}
