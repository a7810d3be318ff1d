package certs

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/comfy-workshop/workshop/tunnel"
)

// checkTunnel serves the agent tunnel over HTTPS with serverTLS (as the
// workshop server does), runs a gpu-agent end with agentTLS against it, and
// fetches a page from the agent's local instance through the tunnel.
func checkTunnel(t *testing.T, serverTLS, agentTLS *tls.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	instance := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from the instance")
	}))
	defer instance.Close()

	ts := tunnel.NewServer(tunnel.ServerConfig{Token: "agent-token"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/tunnel", ts)
	srv := &http.Server{Handler: mux, ErrorLog: newDiscardLog()}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(tls.NewListener(ln, serverTLS))
	}()
	defer func() {
		ts.Close()
		srv.Close()
		<-served
	}()

	agent, err := tunnel.NewAgent(tunnel.AgentConfig{
		ServerURL: "https://" + ln.Addr().String(),
		Token:     "agent-token",
		Name:      "gpu1",
		Instances: []tunnel.Instance{{Name: "0", URL: instance.URL}},
		TLSConfig: agentTLS,
	})
	if err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- agent.Run(agentCtx) }()
	defer func() {
		stopAgent()
		<-ran
	}()

	if _, err := ts.WaitAgent(ctx, "gpu1"); err != nil {
		t.Fatalf("agent did not connect over TLS: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: ts.Dialer("gpu1", "0")}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://instance/", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request through the tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "from the instance" {
		t.Fatalf("through the tunnel: %q", body)
	}
}
