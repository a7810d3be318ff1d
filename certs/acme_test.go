package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/comfy-workshop/workshop/tunnel"
)

// testPebble is an in-process Pebble ACME CA.
type testPebble struct {
	dirURL  string         // ACME directory
	caRoots *x509.CertPool // trusts the directory's HTTPS certificate
	root    *x509.Certificate
	orders  atomic.Int32 // new-order requests
}

// startPebble runs Pebble's WFE, CA and VA in this process, the VA checking
// HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort and resolving names with the
// DNS server at dnsAddr. Everything stops at the end of the test.
func startPebble(t *testing.T, httpPort, tlsPort int, dnsAddr string, logs io.Writer) *testPebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random 0-5 s sleeps before validating
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no random badNonce errors
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: 7 * 24 * 3600},
	})
	validator := va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	p := &testPebble{root: authority.GetRootCert(0).Cert}
	handler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(logs, "pebble-http ", 0)
	srv.StartTLS() // httptest's own certificate for 127.0.0.1
	p.dirURL = srv.URL + wfe.DirectoryPath
	p.caRoots = x509.NewCertPool()
	p.caRoots.AddCert(srv.Certificate())

	t.Cleanup(func() {
		srv.Close()
		stopVA(t, validator)
	})
	return p
}

// stopVA ends the VA's task loop: Pebble has no Stop, and its loop ranges
// over an unexported channel that nothing closes.
func stopVA(t *testing.T, v *va.VAImpl) {
	f := reflect.ValueOf(v).Elem().FieldByName("tasks")
	if !f.IsValid() || f.Kind() != reflect.Chan {
		t.Log("pebble's VA has no tasks channel any more: its goroutine is left running")
		return
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Close()
}

// startDNS answers A queries for names (FQDN, lower case) over TCP on
// loopback, NXDOMAIN for any other name, and returns its address.
func startDNS(t *testing.T, names map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			name := strings.ToLower(q.Name)
			ip, ok := names[name]
			if !ok && strings.HasSuffix(name, "."+testDomain+".") {
				ip, ok = names[testDomain+"."] // subdomains too
			}
			if !ok {
				m.Rcode = dns.RcodeNameError
				continue
			}
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A:   net.ParseIP(ip),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{Listener: ln, Handler: mux}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func port(t *testing.T, ln net.Listener) int {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// acmeRig is a Pebble CA, a DNS server resolving workshop.test to
// 127.0.0.1, and the server's :80 and :443 listeners on loopback ports.
type acmeRig struct {
	pebble        *testPebble
	ln80, ln443   net.Listener
	logs          *logBuf
	httpChallenge atomic.Int32 // HTTP-01 requests answered 200 on ln80
	alpnHellos    atomic.Int32 // acme-tls/1 handshakes on ln443
}

const testDomain = "workshop.test"

func newACMERig(t *testing.T) *acmeRig {
	t.Helper()
	// Registered first, so it runs last: after the servers, managers, Pebble
	// and DNS server below have been stopped, none of their goroutines is left.
	t.Cleanup(func() {
		waitGoroutines(t, "letsencrypt/pebble", "caddyserver/certmagic", "mholt/acmez", "miekg/dns", "workshop/certs.")
	})
	_, logs := testLogger(t)
	r := &acmeRig{ln80: listen(t), ln443: listen(t), logs: logs}
	dnsAddr := startDNS(t, map[string]string{testDomain + ".": "127.0.0.1"})
	r.pebble = startPebble(t, port(t, r.ln80), port(t, r.ln443), dnsAddr, logs)
	return r
}

func (r *acmeRig) config(t *testing.T, dir string) Config {
	return Config{
		Mode:          ModeACME,
		Domains:       []string{testDomain},
		Email:         "ops@workshop.test",
		CA:            r.pebble.dirURL,
		CARoots:       r.pebble.caRoots,
		Dir:           dir,
		HTTPAddr:      r.ln80.Addr().String(),
		TLSAddr:       r.ln443.Addr().String(),
		ObtainTimeout: 30 * time.Second,
		Logger:        slogTo(r.logs),
	}
}

// serve puts m on the rig's listeners the way the server does.
func (r *acmeRig) serve(t *testing.T, m *Manager) {
	t.Helper()
	tc := m.TLSConfig()
	get := tc.GetCertificate
	tc.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == ProtoACMETLS {
			r.alpnHellos.Add(1)
		}
		return get(h)
	}
	serveTLSOn(t, r.ln443, tc)
	h := m.HTTPHandler(nil)
	serveHTTPOn(t, r.ln80, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, req)
		if strings.HasPrefix(req.URL.Path, "/.well-known/acme-challenge/") && rec.code == http.StatusOK {
			r.httpChallenge.Add(1)
		}
	}))
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// verify connects like a browser that trusts Pebble's root and returns the
// served leaf.
func (r *acmeRig) verify(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	return r.verifyName(t, addr, testDomain)
}

func (r *acmeRig) verifyName(t *testing.T, addr, domain string) *x509.Certificate {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(r.pebble.root)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: domain, NextProtos: []string{"h2", ProtoHTTP11}},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("HTTPS client trusting Pebble's root: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	st := resp.TLS
	if len(st.VerifiedChains) == 0 || !st.VerifiedChains[0][len(st.VerifiedChains[0])-1].Equal(r.pebble.root) {
		t.Fatal("chain not verified up to Pebble's root")
	}
	if st.NegotiatedProtocol != ProtoHTTP11 {
		t.Fatalf("ALPN %q", st.NegotiatedProtocol)
	}
	leaf := st.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain {
		t.Fatalf("leaf names %v", leaf.DNSNames)
	}
	return leaf
}

func TestACMEPebble(t *testing.T) {
	for _, chal := range []string{"http-01", "tls-alpn-01"} {
		t.Run(chal, func(t *testing.T) {
			r := newACMERig(t)
			ctx := context.Background()
			dir := t.TempDir()
			cfg := r.config(t, dir)
			cfg.DisableHTTPChallenge = chal != "http-01"
			cfg.DisableTLSALPNChallenge = chal != "tls-alpn-01"
			m, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			if !m.Expiry().IsZero() || m.Fingerprint() != "" {
				t.Fatal("certificate before Start")
			}
			r.serve(t, m)

			start := time.Now()
			if err := m.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			t.Logf("%s: certificate obtained in %s", chal, time.Since(start).Round(time.Millisecond))

			// The challenge was answered by the server's own listeners
			// (certmagic could not bind them: they are in use).
			if chal == "http-01" && (r.httpChallenge.Load() == 0 || r.alpnHellos.Load() != 0) {
				t.Fatalf("http-01 answered %d times, acme-tls/1 hellos %d", r.httpChallenge.Load(), r.alpnHellos.Load())
			}
			if chal == "tls-alpn-01" && (r.alpnHellos.Load() == 0 || r.httpChallenge.Load() != 0) {
				t.Fatalf("acme-tls/1 hellos %d, http-01 answered %d", r.alpnHellos.Load(), r.httpChallenge.Load())
			}

			leaf := r.verify(t, r.ln443.Addr().String())
			if !m.Expiry().Equal(leaf.NotAfter) {
				t.Fatalf("Expiry %s, served certificate expires %s", m.Expiry(), leaf.NotAfter)
			}
			if m.Fingerprint() != "" {
				t.Fatal("ACME certificates must not be offered for pinning")
			}
			// The agent's tunnel runs over it, verified against the CA's root
			// (as gpu-agent --ca-file would).
			roots := x509.NewCertPool()
			roots.AddCert(r.pebble.root)
			agentTLS, _ := tunnel.TLSOptions{RootCAs: roots, ServerName: testDomain}.Config()
			checkTunnel(t, m.TLSConfig(), agentTLS)

			// A client sending no SNI (by IP) still gets the domain's certificate.
			st, err := handshake(r.ln443.Addr().String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil || st.PeerCertificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Fatalf("no-SNI handshake: %v", err)
			}

			// :80 redirects everything else to HTTPS on the TLS port.
			noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, _ := http.NewRequest("GET", "http://"+r.ln80.Addr().String()+"/user/7/?x=1", nil)
			req.Host = testDomain
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			noRedirect.CloseIdleConnections()
			want := "https://" + testDomain + ":" + strconv.Itoa(port(t, r.ln443)) + "/user/7/?x=1"
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Fatalf("redirect %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}

			if chal != "http-01" {
				m.Close()
				noLocks(t, dir)
				return
			}
			// A restart on the same directory serves the stored certificate
			// without a new order.
			orders := r.pebble.orders.Load()
			m.Close()
			m2, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m2.Close)
			if err := m2.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if r.pebble.orders.Load() != orders {
				t.Fatalf("restart placed %d new orders", r.pebble.orders.Load()-orders)
			}
			leaf2 := r.verify(t, serveTLS(t, m2.TLSConfig()))
			if leaf2.SerialNumber.Cmp(leaf.SerialNumber) != 0 || !m2.Expiry().Equal(leaf.NotAfter) {
				t.Fatal("restart did not reuse the stored certificate")
			}
			m2.Close()
			noLocks(t, dir)
		})
	}
}

func TestACMEErrors(t *testing.T) {
	t.Run("validation fails", func(t *testing.T) {
		r := newACMERig(t)
		dir := t.TempDir()
		cfg := r.config(t, dir)
		cfg.Domains = []string{"nowhere.test"} // NXDOMAIN for Pebble's VA
		cfg.DisableTLSALPNChallenge = true
		m, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		r.serve(t, m)
		err = m.Start(context.Background())
		mustContain(t, err, "getting a certificate from "+r.pebble.dirURL, "nowhere.test", "check that the DNS of nowhere.test points at this server", "port 80 (HTTP-01)")
		if !m.Expiry().IsZero() {
			t.Fatal("expiry without a certificate")
		}
		m.Close()
		noLocks(t, dir)
	})

	t.Run("timeout", func(t *testing.T) {
		t.Cleanup(func() { waitGoroutines(t, "caddyserver/certmagic", "mholt/acmez", "workshop/certs.") })
		_, logs := testLogger(t)
		// A CA that accepts connections and never answers.
		hang := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}))
		hang.Config.ErrorLog = newDiscardLog()
		hang.StartTLS()
		t.Cleanup(hang.Close)
		roots := x509.NewCertPool()
		roots.AddCert(hang.Certificate())
		dir := t.TempDir()
		m, err := New(context.Background(), Config{
			Mode: ModeACME, Domains: []string{testDomain}, Email: "ops@workshop.test",
			CA: hang.URL + "/dir", CARoots: roots, Dir: dir,
			HTTPAddr: "127.0.0.1:1", TLSAddr: "127.0.0.1:1", ObtainTimeout: 500 * time.Millisecond, Logger: slogTo(logs),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		start := time.Now()
		err = m.Start(context.Background())
		mustContain(t, err, "no certificate from "+hang.URL+"/dir within 500ms", "check the --acme-ca URL")
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Start took %s with a 500ms timeout", d)
		}
		m.Close()
		noLocks(t, dir)
	})
}

var renewRuns atomic.Int32

func TestACMERenewsInBackground(t *testing.T) {
	r := newACMERig(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfg := r.config(t, dir)
	// certmagic keeps renewal backoff per name for the whole process: a
	// fresh name per run keeps -count=N runs independent.
	domain := fmt.Sprintf("renew%d.%s", renewRuns.Add(1), testDomain)
	cfg.Domains = []string{domain}
	cfg.renewCheckInterval = 50 * time.Millisecond
	cfg.renewalWindowRatio = 1 // every certificate is due at once
	m, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	r.serve(t, m)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := r.verifyName(t, r.ln443.Addr().String(), domain)

	// The maintenance loop renews through the same listeners and the
	// listener's TLS config serves the new certificate without a restart.
	deadline := time.Now().Add(20 * time.Second)
	for {
		leaf := r.verifyName(t, r.ln443.Addr().String(), domain)
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			// The first certificate is this rig's first order, so a renewal
			// is at least its second. (A snapshot taken after the first
			// handshake can already include the renewal: every certificate
			// is due at once.)
			if n := r.pebble.orders.Load(); n < 2 {
				t.Fatalf("new certificate after %d order(s): renewed without a new order", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("certificate not renewed in the background")
		}
		time.Sleep(20 * time.Millisecond) // polling for the renewal, bounded by deadline
	}
	// Close cancels renewals in flight; they end and release their locks
	// before the test's directory goes away.
	m.Close()
	waitGoroutines(t, "caddyserver/certmagic", "mholt/acmez")
	noLocks(t, dir)
}
