package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// fiberTunnelHandler is how the Fiber server mounts the tunnel: authorize,
// check the upgrade, then hijack without a fasthttp response, write the 101
// by hand and serve the session on the raw connection.
func fiberTunnelHandler(srv *Server, ctx context.Context) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := srv.Authorize(c.Get(fiber.HeaderAuthorization)); err != nil {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="gpu-agent"`)
			return c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": "invalid or missing agent token"})
		}
		if !IsUpgradeRequest(c.Get(fiber.HeaderConnection), c.Get(fiber.HeaderUpgrade)) {
			c.Set(fiber.HeaderConnection, "Upgrade")
			c.Set(fiber.HeaderUpgrade, UpgradeProtocol)
			return c.Status(fiber.StatusUpgradeRequired).JSON(fiber.Map{"error": "upgrade to " + UpgradeProtocol + " required"})
		}
		c.Context().HijackSetNoResponse(true)
		c.Context().Hijack(func(conn net.Conn) {
			if err := WriteUpgradeResponse(conn); err != nil {
				return
			}
			_ = srv.ServeConn(ctx, conn)
		})
		return nil
	}
}

func TestFiberHijack(t *testing.T) {
	sc := SessionConfig{KeepAliveInterval: 200 * time.Millisecond, KeepAliveTimeout: time.Second}
	srv := NewServer(ServerConfig{Token: testToken, Session: sc, Logger: testLogger(t)})
	events, cancel := srv.Subscribe()
	defer cancel()
	// Short fasthttp timeouts: ServeConn must clear the deadlines they leave
	// on the hijacked connection.
	app := fiber.New(fiber.Config{DisableStartupMessage: true, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	app.Get("/tunnel", fiberTunnelHandler(srv, context.Background()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-served
	})

	comfy := comfyStandIn(t, "F")
	rl := newRelay(t, ln.Addr().String(), 0)
	ra := startAgent(t, AgentConfig{ServerURL: rl.URL(), Name: "fib", Session: sc, ConnectTimeout: 2 * time.Second,
		ReportInterval: 150 * time.Millisecond, Instances: []Instance{{Name: "0", URL: comfy.URL}}})
	first := nextEvent(t, events, AgentConnected)
	within(t, ra.conns, 10*time.Second, "agent connect")
	// Reports keep arriving after fasthttp's read and write timeouts.
	start := time.Now()
	for time.Since(start) < 3*300*time.Millisecond {
		nextEvent(t, events, AgentReported)
	}
	client := httpClientVia(srv, "fib", "0")
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://x/label")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "F" {
		t.Fatalf("got %q", b)
	}

	// A half-open tunnel ends the session although fasthttp's hijacked
	// connection ignores Close.
	rl.Pause()
	gone := nextEvent(t, events, AgentDisconnected)
	if gone.Agent.SessionID != first.Agent.SessionID {
		t.Fatalf("disconnect of session %d", gone.Agent.SessionID)
	}
	rl.Resume()
	nextEvent(t, events, AgentConnected)

	// A wrong token gets the 401 and stops the agent.
	bad := startAgent(t, AgentConfig{ServerURL: "http://" + ln.Addr().String(), Token: "nope", Name: "bad",
		Instances: []Instance{{Name: "0", URL: comfy.URL}}})
	if err := within(t, bad.done, 10*time.Second, "bad agent to stop"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
	bad.done <- nil
}
