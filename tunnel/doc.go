// Package tunnel implements both ends of the GPU agent tunnel: an agent on a
// GPU host dials out to the workshop server over its ordinary HTTP(S) port,
// upgrades the connection and runs a yamux session over it, through which the
// server reaches the host's local ComfyUI instances.
//
// # Connection
//
// The agent sends
//
//	GET /tunnel HTTP/1.1
//	Host: <server host>
//	Connection: Upgrade
//	Upgrade: comfy-workshop-tunnel/1
//	Authorization: Bearer <token>
//
// The server answers 401 (wrong token: the agent stops with [ErrUnauthorized]),
// or
//
//	HTTP/1.1 101 Switching Protocols
//	Connection: Upgrade
//	Upgrade: comfy-workshop-tunnel/1
//
// after which both ends run yamux over the connection; the agent is the yamux
// client, the server the yamux server. Any other answer, and any loss of the
// session, makes the agent reconnect with exponential backoff and full jitter.
//
// # Frames and stream headers
//
// Every yamux stream starts with a header frame from its opener and a reply
// frame from the acceptor. A frame is a 4-byte big-endian length followed by
// that many bytes of JSON. The header is
//
//	{"v":1,"op":"connect","instance":"0"}   server -> agent: splice to instance "0"
//	{"v":1,"op":"control"}                  agent -> server: the control stream
//
// and the reply is {"ok":true} or {"ok":false,"code":"unknown_instance",
// "error":"..."} (codes: unknown_instance, unavailable, bad_request). After an
// ok reply a "connect" stream carries raw bytes both ways (HTTP, WebSocket, or
// anything else over TCP), with half-close: a yamux FIN becomes CloseWrite on
// the local TCP connection and vice versa. The server does not wait for the
// reply: its first bytes follow the header at once (the agent reads exactly
// the header frame, so they wait in the stream until it has connected), and
// it reads the reply before the instance's first byte. A request on a new
// stream so costs one round trip, not two. After a refusal the agent closes
// its side and the server's reads and writes fail with the refusal.
//
// The control stream, opened by the agent right after the upgrade, carries
// frames of JSON messages {"type":...}: the agent sends "hello" (name,
// version, instances with their URL, health and system_stats) and then a
// "report" every few seconds; the server answers the hello with "welcome" (or
// "error") and later sends "close_stream" when its user fully closes a
// connection, so that the agent drops the local connection at once instead of
// waiting for yamux's stream close timeout.
//
// # Pacing
//
// On a slow uplink a large output's stream window (16 MiB) in flight is a
// queue that every other stream of the tunnel waits behind. The agent pings
// the session (every 100 ms while a stream is bulk: 1 MiB without a pause)
// and, once the pings show a standing queue over AgentConfig.QueueTarget,
// paces its bulk streams at the rate the server takes them (see pacer).
//
// # Server side
//
// Server is transport-agnostic: Authorize checks the Authorization header and
// ServeConn runs a session on an already-upgraded net.Conn. Server.ServeHTTP
// is the net/http handler built from them. With Fiber (fasthttp), the handler
// authorizes, checks IsUpgradeRequest, then
//
//	c.Context().HijackSetNoResponse(true)
//	c.Context().Hijack(func(conn net.Conn) {
//		if tunnel.WriteUpgradeResponse(conn) == nil {
//			_ = srv.ServeConn(ctx, conn)
//		}
//	})
//	return nil
//
// (fiber_test.go has the whole handler). ServeConn clears the deadlines
// fasthttp leaves on the connection and copes with fasthttp's hijacked
// connection ignoring Close.
//
// The dispatcher uses Agents, Agent, WaitAgent and Subscribe to follow agents
// (an event per connect, report and disconnect, in order) and DialInstance
// (or Dialer, for an http.Transport or a WebSocket dialer) to reach an
// instance. An instance the agent cannot reach is the error of the request
// (ErrInstanceUnavailable, wrapped), not of the dial.
package tunnel
