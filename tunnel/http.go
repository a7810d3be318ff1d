package tunnel

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
)

// UpgradeResponse is the exact answer the server writes on an accepted
// tunnel request, before ServeConn takes the connection over.
const UpgradeResponse = "HTTP/1.1 101 Switching Protocols\r\n" +
	"Connection: Upgrade\r\n" +
	"Upgrade: " + UpgradeProtocol + "\r\n" +
	"\r\n"

// WriteUpgradeResponse writes UpgradeResponse to a hijacked connection.
func WriteUpgradeResponse(w io.Writer) error {
	_, err := io.WriteString(w, UpgradeResponse)
	return err
}

// ServeHTTP is the net/http handler of GET /tunnel: it authorizes the agent
// (401 with a JSON error otherwise), checks the upgrade headers (426
// otherwise), hijacks the connection, writes the 101 answer and runs
// ServeAgent until the session ends.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := s.Authenticate(r.Header.Get("Authorization"))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gpu-agent"`)
		writeJSONError(w, http.StatusUnauthorized, "invalid or missing agent token")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSONError(w, http.StatusMethodNotAllowed, "use GET with an Upgrade header")
		return
	}
	if !IsUpgradeRequest(r.Header.Get("Connection"), r.Header.Get("Upgrade")) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", UpgradeProtocol)
		writeJSONError(w, http.StatusUpgradeRequired, "upgrade to "+UpgradeProtocol+" required")
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeJSONError(w, http.StatusInternalServerError, "connection cannot be hijacked")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		s.log.Warn("hijacking the tunnel connection failed", "err", err)
		return
	}
	if err := WriteUpgradeResponse(conn); err != nil {
		_ = conn.Close()
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent after its request belong to the session.
		buffered, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, prefix: append([]byte(nil), buffered...)}
	}
	_ = s.ServeAgent(r.Context(), conn, id)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// prefixConn is a net.Conn whose first reads return prefix.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
