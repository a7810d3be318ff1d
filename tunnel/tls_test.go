package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startTLSServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	srv := NewServer(ServerConfig{Token: testToken, Logger: testLogger(t)})
	mux := http.NewServeMux()
	mux.Handle("GET /tunnel", srv)
	ts := httptest.NewTLSServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = srv.Close() })
	return srv, ts
}

func TestTLSOptions(t *testing.T) {
	_, ts := startTLSServer(t)
	cert := ts.Certificate()
	pin := CertFingerprint(cert.Raw)
	addr := ts.Listener.Addr().String()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	colons := strings.ToUpper(pin[:2])
	for i := 2; i < len(pin); i += 2 {
		colons += ":" + strings.ToUpper(pin[i:i+2])
	}
	wrongPin := strings.Repeat("0", 64)

	cases := []struct {
		name    string
		opts    TLSOptions
		wantErr string
	}{
		{"system roots refuse a test cert", TLSOptions{ServerName: "example.com"}, "certificate"},
		{"pin", TLSOptions{FingerprintSHA256: pin}, ""},
		{"pin with colons, upper case", TLSOptions{FingerprintSHA256: colons}, ""},
		{"wrong pin", TLSOptions{FingerprintSHA256: wrongPin}, "does not match the pinned"},
		{"wrong pin even when insecure", TLSOptions{FingerprintSHA256: wrongPin, Insecure: true}, "does not match the pinned"},
		{"insecure", TLSOptions{Insecure: true}, ""},
		{"CA file", TLSOptions{CAFile: caFile, ServerName: "example.com"}, ""},
	}
	for _, tc := range cases {
		cfg, err := tc.opts.Config()
		if err != nil {
			t.Fatalf("%s: Config: %v", tc.name, err)
		}
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.wantErr)
		}
	}
	if _, err := (TLSOptions{FingerprintSHA256: "xyz"}).Config(); err == nil {
		t.Error("bad fingerprint accepted")
	}
	if _, err := (TLSOptions{CAFile: filepath.Join(t.TempDir(), "missing.pem")}).Config(); err == nil {
		t.Error("missing CA file accepted")
	}
}

func TestAgentOverHTTPSWithPin(t *testing.T) {
	srv, ts := startTLSServer(t)
	cfg, err := TLSOptions{FingerprintSHA256: CertFingerprint(ts.Certificate().Raw)}.Config()
	if err != nil {
		t.Fatal(err)
	}
	comfy := comfyStandIn(t, "TLS")
	startAgent(t, AgentConfig{ServerURL: ts.URL + "/", Name: "secure", TLSConfig: cfg, Instances: []Instance{{Name: "0", URL: comfy.URL}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(ctx, "secure"); err != nil {
		t.Fatal(err)
	}
	client := httpClientVia(srv, "secure", "0")
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://x/label")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
