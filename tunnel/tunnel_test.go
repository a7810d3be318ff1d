package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// comfyStandIn is a tiny ComfyUI stand-in: /system_stats, /big (a large
// deterministic body) and /ws (a WebSocket echo).
func comfyStandIn(t testing.TB, label string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /system_stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"system":{"os":"posix","comfyui_version":"0.3.0"},"devices":[{"name":"cuda:0 %s","type":"cuda","index":0,"vram_total":85899345920,"vram_free":80000000000}]}`, label)
	})
	mux.HandleFunc("GET /label", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, label)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(bigBody)))
		_, _ = w.Write(bigBody)
	})
	upgrader := websocket.Upgrader{}
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

var bigBody = func() []byte {
	b := make([]byte, 5<<20+123)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}()

func httpClientVia(srv *Server, agent, instance string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: srv.Dialer(agent, instance)}}
}

func TestHelloReportsHTTPAndWebSocket(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	events, cancel := srv.Subscribe()
	defer cancel()
	comfy := comfyStandIn(t, "A")

	var reports atomic.Int64
	ra := startAgent(t, AgentConfig{
		ServerURL:      ts.URL,
		Name:           "gpu-a",
		Version:        "1.2.3",
		Instances:      []Instance{{Name: "0", URL: comfy.URL}},
		ReportInterval: 20 * time.Millisecond,
		Report: func(ctx context.Context) Report {
			n := reports.Add(1)
			return Report{
				Instances: []InstanceStatus{{Name: "0", Healthy: true, SystemStats: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}},
				GPUs:      []GPUStats{{Index: 0, Name: "H100", UtilizationPct: 42, MemoryUsedMiB: 1000, MemoryTotalMiB: 80000}},
			}
		},
	})

	e := nextEvent(t, events, AgentConnected)
	if e.Agent.Name != "gpu-a" || e.Agent.Version != "1.2.3" || e.Agent.SessionID == 0 {
		t.Fatalf("connected event: %+v", e.Agent)
	}
	in, ok := e.Agent.Report.Instance("0")
	if !ok || in.URL != comfy.URL || !in.Healthy || len(in.SystemStats) == 0 {
		t.Fatalf("hello instance: %+v", e.Agent.Report.Instances)
	}
	if id := within(t, ra.conns, 10*time.Second, "agent OnConnect"); id != e.Agent.SessionID {
		t.Fatalf("agent got session %d, server says %d", id, e.Agent.SessionID)
	}

	r := nextEvent(t, events, AgentReported)
	if len(r.Agent.Report.GPUs) != 1 || r.Agent.Report.GPUs[0].UtilizationPct != 42 || r.Agent.ReportedAt.IsZero() {
		t.Fatalf("report: %+v", r.Agent.Report)
	}
	if got := srv.Agents(); len(got) != 1 || got[0].Name != "gpu-a" {
		t.Fatalf("Agents() = %+v", got)
	}

	// HTTP through the tunnel.
	client := httpClientVia(srv, "gpu-a", "0")
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://comfy/system_stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "cuda:0 A") {
		t.Fatalf("GET /system_stats: %d %s", resp.StatusCode, body)
	}
	resp, err = client.Get("http://comfy/big")
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || sha256.Sum256(body) != sha256.Sum256(bigBody) {
		t.Fatalf("GET /big: err %v, %d bytes, want %d identical bytes", err, len(body), len(bigBody))
	}

	// WebSocket through the tunnel.
	dialer := websocket.Dialer{NetDialContext: srv.Dialer("gpu-a", "0")}
	ws, _, err := dialer.Dial("ws://comfy/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.ReadMessage()
		if err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	if err := ws.WriteMessage(websocket.BinaryMessage, big); err != nil {
		t.Fatal(err)
	}
	if _, got, err := ws.ReadMessage(); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("binary echo: %d bytes, %v", len(got), err)
	}
}

func TestHalfClose(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "h", Instances: []Instance{{Name: "echo", Addr: echoServer(t), URL: "tcp://echo"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	c, err := srv.DialInstance(ctx, "h", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("half-close "), 10000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The echo server sees EOF only through the half-close, answers in full
	// and then half-closes its side: we read everything, then EOF.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes (want %d), err %v", len(got), len(msg), err)
	}
}

func TestWrongTokenStopsAgent(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	events, cancel := srv.Subscribe()
	defer cancel()
	ra := startAgent(t, AgentConfig{
		ServerURL: ts.URL,
		Token:     "wrong",
		Name:      "intruder",
		Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:1"}},
	})
	err := within(t, ra.done, 10*time.Second, "Run to return")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run returned %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("error %q does not mention the 401", err)
	}
	if got := srv.Agents(); len(got) != 0 {
		t.Fatalf("agents registered: %+v", got)
	}
	select {
	case e := <-events:
		t.Fatalf("unexpected event %v", e.Type)
	default:
	}
	ra.done <- err // for the cleanup
}

func TestServeHTTPRefusals(t *testing.T) {
	_, ts := startServer(t, ServerConfig{})
	do := func(auth, upgrade string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", ts.URL+"/tunnel", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if upgrade != "" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", upgrade)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, auth := range []string{"", "Bearer nope", "Basic " + testToken, testToken} {
		resp, body := do(auth, UpgradeProtocol)
		if resp.StatusCode != 401 || !strings.Contains(body, `"error"`) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("auth %q: %d %s", auth, resp.StatusCode, body)
		}
	}
	if resp, body := do("Bearer "+testToken, ""); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("no upgrade: %d %s", resp.StatusCode, body)
	}
	if resp, body := do("bearer "+testToken, "websocket"); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("wrong protocol: %d %s", resp.StatusCode, body)
	}
}

func TestAuthorize(t *testing.T) {
	s := NewServer(ServerConfig{CheckToken: TokenChecker("a", "b")})
	for h, ok := range map[string]bool{"Bearer a": true, "bearer b": true, "Bearer  a ": true, "Bearer c": false, "Bearer ": false, "a": false, "": false} {
		if err := s.Authorize(h); (err == nil) != ok {
			t.Errorf("Authorize(%q) = %v", h, err)
		} else if err != nil && !errors.Is(err, ErrUnauthorized) {
			t.Errorf("Authorize(%q) = %v, want ErrUnauthorized", h, err)
		}
	}
	if err := NewServer(ServerConfig{}).Authorize("Bearer "); err == nil {
		t.Error("a server without token accepted an empty token")
	}
}

func TestReconnectAfterConnectionLoss(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	events, cancel := srv.Subscribe()
	defer cancel()
	rl := newRelay(t, ts.Listener.Addr().String(), 0)
	comfy := comfyStandIn(t, "A")
	ra := startAgent(t, AgentConfig{ServerURL: rl.URL(), Name: "r", Instances: []Instance{{Name: "0", URL: comfy.URL}}})

	first := nextEvent(t, events, AgentConnected)
	within(t, ra.conns, 10*time.Second, "agent connect")
	for i := range 3 {
		rl.KillAll()
		gone := nextEvent(t, events, AgentDisconnected)
		if gone.Agent.SessionID != first.Agent.SessionID {
			t.Fatalf("disconnect of session %d, want %d", gone.Agent.SessionID, first.Agent.SessionID)
		}
		within(t, ra.drops, 10*time.Second, "agent OnDisconnect")
		back := nextEvent(t, events, AgentConnected)
		if back.Agent.SessionID <= first.Agent.SessionID {
			t.Fatalf("round %d: reconnect reused session id %d", i, back.Agent.SessionID)
		}
		within(t, ra.conns, 10*time.Second, "agent reconnect")
		first = back
	}
	// The new session works.
	client := httpClientVia(srv, "r", "0")
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://x/label")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestHalfOpenTunnelDetected(t *testing.T) {
	sc := SessionConfig{KeepAliveInterval: 200 * time.Millisecond, KeepAliveTimeout: time.Second}
	srv, ts := startServer(t, ServerConfig{Session: sc})
	events, cancel := srv.Subscribe()
	defer cancel()
	rl := newRelay(t, ts.Listener.Addr().String(), 0)
	ra := startAgent(t, AgentConfig{
		ServerURL: rl.URL(), Name: "ho", Session: sc, ConnectTimeout: 2 * time.Second,
		Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:1"}},
	})
	first := nextEvent(t, events, AgentConnected)
	within(t, ra.conns, 10*time.Second, "agent connect")

	rl.Pause() // packets vanish; no FIN, no RST
	stalled := time.Now()
	gone := nextEvent(t, events, AgentDisconnected)
	took := time.Since(stalled)
	if gone.Agent.SessionID != first.Agent.SessionID {
		t.Fatalf("disconnect of session %d, want %d", gone.Agent.SessionID, first.Agent.SessionID)
	}
	bound := sc.KeepAliveInterval + sc.KeepAliveTimeout
	if took > bound+time.Second {
		t.Errorf("dead tunnel detected after %v, want within %v", took, bound)
	}
	t.Logf("server detected the dead tunnel after %v (bound %v); reason: %v", took, bound, gone.Err)
	within(t, ra.drops, 10*time.Second, "agent detects the dead tunnel")

	rl.Resume()
	back := nextEvent(t, events, AgentConnected)
	if back.Agent.SessionID == first.Agent.SessionID {
		t.Fatal("no new session")
	}
	within(t, ra.conns, 10*time.Second, "agent reconnect")
}

func TestDefaultKeepaliveBound(t *testing.T) {
	c := SessionConfig{}.withDefaults()
	if b := c.KeepAliveInterval + c.KeepAliveTimeout; b > 15*time.Second {
		t.Fatalf("default dead-tunnel detection bound %v exceeds 15 s", b)
	}
	if c.StreamWindow < 16<<20 {
		t.Fatalf("default stream window %d < 16 MiB", c.StreamWindow)
	}
}

func TestSameNameReplacesSession(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	events, cancel := srv.Subscribe()
	defer cancel()
	comfyA, comfyB := comfyStandIn(t, "A"), comfyStandIn(t, "B")
	// The first agent, once replaced, waits a long time before it retries.
	old := startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "twin", MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Instances: []Instance{{Name: "0", URL: comfyA.URL}}})
	first := nextEvent(t, events, AgentConnected)
	within(t, old.conns, 10*time.Second, "old agent connect")

	startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "twin", Instances: []Instance{{Name: "0", URL: comfyB.URL}}})
	gone := nextEvent(t, events, AgentDisconnected)
	if gone.Agent.SessionID != first.Agent.SessionID || !errors.Is(gone.Err, ErrReplaced) {
		t.Fatalf("disconnect: session %d err %v; want session %d, ErrReplaced", gone.Agent.SessionID, gone.Err, first.Agent.SessionID)
	}
	second := nextEvent(t, events, AgentConnected)
	if second.Agent.SessionID == first.Agent.SessionID {
		t.Fatal("same session")
	}
	within(t, old.drops, 10*time.Second, "old agent sees its session end")
	if got := srv.Agents(); len(got) != 1 || got[0].SessionID != second.Agent.SessionID {
		t.Fatalf("Agents() = %+v", got)
	}
	client := httpClientVia(srv, "twin", "0")
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://x/label")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "B" {
		t.Fatalf("dialed the old agent's instance: %q", b)
	}
}

func TestDialErrors(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "d", Instances: []Instance{
		{Name: "0", URL: comfyStandIn(t, "A").URL},
		{Name: "down", URL: "http://" + deadAddr},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(ctx, "d"); err != nil {
		t.Fatal(err)
	}

	// What the server knows fails the dial itself.
	if _, err := srv.DialInstance(ctx, "nobody", "0"); !errors.Is(err, ErrAgentNotConnected) {
		t.Errorf("unknown agent: %v", err)
	}
	if _, err := srv.DialInstance(ctx, "d", "nope"); !errors.Is(err, ErrUnknownInstance) || !strings.Contains(err.Error(), "0, down") {
		t.Errorf("unknown instance: %v", err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := srv.DialInstance(cctx, "d", "0"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dial: %v", err)
	}

	// The agent's refusal comes with the first read, and stays.
	c, err := srv.DialInstance(ctx, "d", "down")
	if err != nil {
		t.Fatalf("optimistic dial: %v", err)
	}
	if err := c.Handshake(ctx); !errors.Is(err, ErrInstanceUnavailable) || !strings.Contains(err.Error(), deadAddr) {
		t.Errorf("instance down, Handshake: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrInstanceUnavailable) {
		t.Errorf("instance down, Read: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrInstanceUnavailable) {
		t.Errorf("instance down, Write: %v", err)
	}
	c.Close()

	// A request through an HTTP client fails with the refusal.
	client := httpClientVia(srv, "d", "down")
	if _, err := client.Get("http://comfy/system_stats"); !errors.Is(err, ErrInstanceUnavailable) {
		t.Errorf("GET through a refused stream: %v", err)
	}

	// A write bigger than the stream window, sent before the refusal is
	// known, ends with the refusal instead of waiting for a window that
	// never opens.
	c, err = srv.DialInstance(ctx, "d", "down")
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 2*DefaultStreamWindow))
		wrote <- err
	}()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrInstanceUnavailable) {
		t.Errorf("big write, Read: %v", err)
	}
	if err := within(t, wrote, 10*time.Second, "the big write to end"); !errors.Is(err, ErrInstanceUnavailable) {
		t.Errorf("big write: %v", err)
	}
	c.Close()

	// The agent refuses unknown instances itself too (the server's check
	// is only a shortcut).
	srv.mu.Lock()
	ac := srv.agents["d"]
	srv.mu.Unlock()
	c, err = ac.dial(ctx, "nope")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err = c.Read(make([]byte, 1)); !errors.Is(err, ErrUnknownInstance) || !strings.Contains(err.Error(), `has no instance "nope"`) {
		t.Errorf("agent-side unknown instance: %v", err)
	}
}

// TestRequestRidesBehindHeader: what the server writes on a new stream
// goes out right behind the header, before the agent's answer (one round
// trip for a request on a new connection, not two). This agent reads the
// request before it answers, so waiting for the answer first would hang.
// An agent that does not answer at all fails the read after DialTimeout.
func TestRequestRidesBehindHeader(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{DialTimeout: 300 * time.Millisecond})
	fakeAgent(t, ts.URL, "f", []string{"upper", "mute"}, func(st *yamux.Stream, h streamHeader) {
		if h.Instance == "mute" {
			_, _ = io.Copy(io.Discard, st) // never answers
			return
		}
		req := make([]byte, 5)
		if _, err := io.ReadFull(st, req); err != nil {
			return
		}
		_ = writeFrame(st, streamReply{OK: true})
		_, _ = st.Write(bytes.ToUpper(req))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	c, err := srv.DialInstance(ctx, "f", "upper")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "HELLO" {
		t.Fatalf("answer %q, %v", got, err)
	}

	c, err = srv.DialInstance(ctx, "f", "mute")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Fatalf("no answer: %v", err)
	}
}

// TestCloseDropsLocalConnection: a full Close on the server makes the agent
// drop the local connection at once, even while the instance is still
// sending (yamux alone would wait for its stream close timeout).
func TestCloseDropsLocalConnection(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	localDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			localDone <- err
			return
		}
		defer c.Close()
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil { // endless "download"
				localDone <- err
				return
			}
		}
	}()
	startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "c", Instances: []Instance{{Name: "0", Addr: ln.Addr().String(), URL: "tcp://x"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	c, err := srv.DialInstance(ctx, "c", "0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	within(t, localDone, 10*time.Second, "the local connection to be dropped")
}

func TestAgentStopsOnCancel(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	events, cancel := srv.Subscribe()
	defer cancel()
	ra := startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "s", Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:1"}}})
	nextEvent(t, events, AgentConnected)
	ra.cancel()
	if err := within(t, ra.done, 10*time.Second, "Run to return"); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	ra.done <- nil
	nextEvent(t, events, AgentDisconnected)
	if len(srv.Agents()) != 0 {
		t.Fatal("agent still listed")
	}
}

func TestServerCloseEndsSessions(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	events, cancel := srv.Subscribe()
	defer cancel()
	startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "x", Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:1"}}})
	nextEvent(t, events, AgentConnected)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, AgentDisconnected)
	if _, ok := <-events; ok {
		t.Fatal("events channel not closed after Close")
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	if err := srv.ServeConn(context.Background(), c1); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeConn after Close: %v", err)
	}
}

func TestServeConnContextCancel(t *testing.T) {
	srv := NewServer(ServerConfig{Token: testToken, Logger: testLogger(t)})
	defer srv.Close()
	events, cancel := srv.Subscribe()
	defer cancel()
	// A bare listener: the upgrade is done by hand, as a Fiber handler would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			served <- err
			return
		}
		if err := srv.Authorize(req.Header.Get("Authorization")); err != nil {
			served <- err
			return
		}
		if !IsUpgradeRequest(req.Header.Get("Connection"), req.Header.Get("Upgrade")) {
			served <- errors.New("not an upgrade")
			return
		}
		_ = WriteUpgradeResponse(c)
		served <- srv.ServeConn(ctx, c)
	}()
	startAgent(t, AgentConfig{ServerURL: "http://" + ln.Addr().String(), Name: "f", MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:1"}}})
	nextEvent(t, events, AgentConnected)
	stop()
	if err := within(t, served, 10*time.Second, "ServeConn to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeConn returned %v, want context.Canceled", err)
	}
	nextEvent(t, events, AgentDisconnected)
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 200 * time.Millisecond, max: 15 * time.Second}
	var prevCeil time.Duration
	for i := range 40 {
		d := b.next()
		ceil := min(b.max, b.min<<min(i, 30))
		if d < b.min || d > ceil {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, b.min, ceil)
		}
		if ceil < prevCeil {
			t.Fatalf("ceiling shrank")
		}
		prevCeil = ceil
	}
	b.reset()
	if d := b.next(); d != b.min {
		t.Fatalf("after reset: %v", d)
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFrame(&buf, streamHeader{V: 1, Op: opConnect, Instance: "0"}); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("raw bytes after")
	var h streamHeader
	if err := readFrame(&buf, maxHeaderFrame, &h); err != nil || h.Instance != "0" || h.Op != opConnect {
		t.Fatalf("%+v %v", h, err)
	}
	if buf.String() != "raw bytes after" {
		t.Fatalf("readFrame over-read: %q left", buf.String())
	}
	buf.Reset()
	_ = writeFrame(&buf, strings.Repeat("x", 100))
	if err := readFrame(&buf, 10, new(string)); err == nil {
		t.Fatal("oversized frame accepted")
	}
}

func TestIsUpgradeRequest(t *testing.T) {
	if !IsUpgradeRequest("keep-alive, Upgrade", "foo, COMFY-WORKSHOP-TUNNEL/1") {
		t.Error("list forms refused")
	}
	if IsUpgradeRequest("Upgrade", "websocket") || IsUpgradeRequest("close", UpgradeProtocol) {
		t.Error("wrong upgrade accepted")
	}
}

func TestNewAgentValidation(t *testing.T) {
	ok := AgentConfig{ServerURL: "https://w.example.org", Token: "t", Name: "n", Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:8188"}}}
	if a, err := NewAgent(ok); err != nil || a.hostport != "w.example.org:443" || a.addrs["0"] != "127.0.0.1:8188" {
		t.Fatalf("valid config: %v", err)
	}
	bad := map[string]func(*AgentConfig){
		"scheme":        func(c *AgentConfig) { c.ServerURL = "ftp://x" },
		"no host":       func(c *AgentConfig) { c.ServerURL = "http://" },
		"no token":      func(c *AgentConfig) { c.Token = "" },
		"token space":   func(c *AgentConfig) { c.Token = "a b" },
		"token newline": func(c *AgentConfig) { c.Token = "a\r\nX-Evil: 1" },
		"name":          func(c *AgentConfig) { c.Name = "has space" },
		"no instances":  func(c *AgentConfig) { c.Instances = nil },
		"dup instance":  func(c *AgentConfig) { c.Instances = append(c.Instances, c.Instances[0]) },
		"bad inst url":  func(c *AgentConfig) { c.Instances = []Instance{{Name: "0", URL: "nonsense"}} },
	}
	for name, mutate := range bad {
		c := ok
		c.Instances = append([]Instance(nil), ok.Instances...)
		mutate(&c)
		if _, err := NewAgent(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConcurrentStreams(t *testing.T) {
	srv, ts := startServer(t, ServerConfig{})
	comfy := comfyStandIn(t, "A")
	startAgent(t, AgentConfig{ServerURL: ts.URL, Name: "c", Instances: []Instance{{Name: "0", URL: comfy.URL}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := srv.WaitAgent(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	client := httpClientVia(srv, "c", "0")
	defer client.CloseIdleConnections()
	want := sha256.Sum256(bigBody)
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			resp, err := client.Get("http://x/big")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			if _, err := io.Copy(h, resp.Body); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				errs <- errors.New("body differs")
				return
			}
			errs <- nil
		}()
	}
	for range cap(errs) {
		if err := within(t, errs, 60*time.Second, "a download"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestUpgradeRequest(t *testing.T) {
	for url, wantPath := range map[string]string{
		"http://h:1":                 "/tunnel",
		"http://h:1/":                "/tunnel",
		"https://h/prefix":           "/prefix/tunnel",
		"https://h/prefix/tunnel":    "/prefix/tunnel",
		"https://h/prefix/?x=1&y=%2": "/prefix/tunnel?x=1&y=%2",
	} {
		a, err := NewAgent(AgentConfig{ServerURL: url, Token: "tok", Name: "n", Version: "v1", Instances: []Instance{{Name: "0", URL: "http://127.0.0.1:8188"}}})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(a.upgradeRequest())))
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if req.Method != "GET" || req.RequestURI != wantPath || req.Header.Get("Authorization") != "Bearer tok" ||
			!IsUpgradeRequest(req.Header.Get("Connection"), req.Header.Get("Upgrade")) {
			t.Errorf("%s: %s %s %v", url, req.Method, req.RequestURI, req.Header)
		}
	}
}

// A per-host token holds its own name only; a shared token any name not
// reserved; a live session is replaced by the same token only; Revoke
// ends a token's session, and the next try is refused by Identify.
func TestIdentityBindsNames(t *testing.T) {
	var revoked atomic.Bool
	srv, ts := startServer(t, ServerConfig{
		Identify: func(token string) (Identity, bool) {
			switch {
			case token == "own-token-of-alpha" && !revoked.Load():
				return Identity{Key: "k-alpha", Name: "alpha"}, true
			case token == "the-shared-token":
				return Identity{Key: "k-shared"}, true
			}
			return Identity{}, false
		},
		Reserved: func(name string) bool { return name == "alpha" },
	})
	events, cancel := srv.Subscribe()
	defer cancel()
	comfy := comfyStandIn(t, "A")
	failures := errLog{make(chan string, 16)}
	agent := func(token, name string) *runningAgent {
		return startAgent(t, AgentConfig{ServerURL: ts.URL, Token: token, Name: name, MinBackoff: time.Hour, MaxBackoff: time.Hour,
			Instances: []Instance{{Name: "0", URL: comfy.URL}}, Logger: slog.New(failures)})
	}
	alpha := agent("own-token-of-alpha", "alpha")
	first := nextEvent(t, events, AgentConnected)
	within(t, alpha.conns, 10*time.Second, "alpha connects")
	for _, try := range [][2]string{{"own-token-of-alpha", "beta"}, {"the-shared-token", "alpha"}} {
		agent(try[0], try[1])
		if err := within(t, failures.errs, 10*time.Second, "refusal of "+try[1]); !strings.Contains(err, "not allowed for this token") {
			t.Errorf("%s as %s: %v", try[0], try[1], err)
		}
	}
	if got, ok := srv.Agent("alpha"); !ok || got.SessionID != first.Agent.SessionID {
		t.Fatalf("alpha's session was touched: %+v", got)
	}
	// Two shared-token agents under one free name: the later replaces.
	agent("the-shared-token", "beta")
	b1 := nextEvent(t, events, AgentConnected)
	agent("the-shared-token", "beta")
	if gone := nextEvent(t, events, AgentDisconnected); gone.Agent.SessionID != b1.Agent.SessionID || !errors.Is(gone.Err, ErrReplaced) {
		t.Errorf("shared replacement: %+v", gone)
	}
	nextEvent(t, events, AgentConnected)

	revoked.Store(true)
	if n := srv.Revoke("k-alpha"); n != 1 {
		t.Errorf("Revoke closed %d sessions", n)
	}
	if gone := nextEvent(t, events, AgentDisconnected); gone.Agent.Name != "alpha" || !errors.Is(gone.Err, ErrRevoked) {
		t.Errorf("revoked: %+v", gone)
	}
	if _, ok := srv.Agent("alpha"); ok {
		t.Error("alpha still connected")
	}
}

// errLog is a slog handler that passes on the "err" of every record.
type errLog struct{ errs chan string }

func (l errLog) Enabled(context.Context, slog.Level) bool { return true }
func (l errLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l errLog) WithGroup(string) slog.Handler            { return l }
func (l errLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			select {
			case l.errs <- a.Value.String():
			default:
			}
		}
		return true
	})
	return nil
}
