package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// UpgradeProtocol is the token of the Upgrade header on both the agent's
// request and the server's 101 answer. The suffix is the protocol version.
const UpgradeProtocol = "comfy-workshop-tunnel/1"

// DefaultPath is the server path the agent dials when its server URL has no
// path of its own ending in it.
const DefaultPath = "/tunnel"

// protocolVersion is the "v" of stream headers.
const protocolVersion = 1

const (
	opConnect = "connect" // server -> agent: splice to a local instance
	opControl = "control" // agent -> server: the control stream
)

// Reply codes of a stream header exchange.
const (
	codeUnknownInstance = "unknown_instance"
	codeUnavailable     = "unavailable"
	codeBadRequest      = "bad_request"
)

// Control message types.
const (
	msgHello       = "hello"
	msgWelcome     = "welcome"
	msgError       = "error"
	msgReport      = "report"
	msgCloseStream = "close_stream"
)

const (
	maxHeaderFrame  = 64 << 10 // stream headers and replies
	maxControlFrame = 8 << 20  // control messages (reports carry system_stats)
)

var (
	// ErrUnauthorized is returned by Server.Authorize for a missing or wrong
	// token, and by Agent.Run when the server answered 401: the agent does not
	// retry then.
	ErrUnauthorized = errors.New("tunnel: agent token rejected")
	// ErrAgentNotConnected is returned by Server.DialInstance when no agent
	// of that name has a live session.
	ErrAgentNotConnected = errors.New("tunnel: agent not connected")
	// ErrUnknownInstance is returned by Server.DialInstance when the agent
	// has no instance of that name.
	ErrUnknownInstance = errors.New("tunnel: unknown instance")
	// ErrInstanceUnavailable is returned by Server.DialInstance when the
	// agent could not connect to the local instance (for example ComfyUI is
	// not running).
	ErrInstanceUnavailable = errors.New("tunnel: instance unavailable")
	// ErrServerClosed is returned by Server.ServeConn after Server.Close.
	ErrServerClosed = errors.New("tunnel: server closed")
	// ErrReplaced is the reason of the disconnect event of a session that a
	// newer session of the same agent name replaced.
	ErrReplaced = errors.New("tunnel: replaced by a newer session of the same agent")
	// ErrNameTaken refuses an agent whose token may not hold the name it
	// asks for.
	ErrNameTaken = errors.New("tunnel: agent name not allowed for this token")
	// ErrRevoked ends the sessions of a token that Server.Revoke revoked.
	ErrRevoked = errors.New("tunnel: the agent's token was revoked")
)

// streamHeader opens every stream.
type streamHeader struct {
	V        int    `json:"v"`
	Op       string `json:"op"`
	Instance string `json:"instance,omitempty"`
}

// streamReply answers a streamHeader.
type streamReply struct {
	OK    bool   `json:"ok"`
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// controlMsg is one message on the control stream.
type controlMsg struct {
	Type    string  `json:"type"`
	Hello   *Hello  `json:"hello,omitempty"`
	Report  *Report `json:"report,omitempty"`
	Session uint64  `json:"session,omitempty"` // welcome: the server's session id
	Stream  uint32  `json:"stream,omitempty"`  // close_stream: the yamux stream id
	Error   string  `json:"error,omitempty"`
}

// Hello is the agent's announcement, the first message on its control stream.
type Hello struct {
	Name     string `json:"name"`
	Version  string `json:"version,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// Report is the agent's state when it connected: its instances (name,
	// URL, health, system_stats) and GPUs.
	Report Report `json:"report"`
}

// Report is the agent's periodic status: one entry per configured instance
// and, where nvidia-smi is present, one per GPU of the host.
type Report struct {
	Time      time.Time        `json:"time"`
	Instances []InstanceStatus `json:"instances"`
	GPUs      []GPUStats       `json:"gpus,omitempty"`
	// Models is the agent's model check (gpu-agent --models), as it reports it.
	Models json.RawMessage `json:"models,omitempty"`
}

// Instance returns the status of the named instance.
func (r Report) Instance(name string) (InstanceStatus, bool) {
	for _, in := range r.Instances {
		if in.Name == name {
			return in, true
		}
	}
	return InstanceStatus{}, false
}

// InstanceStatus is the state of one local ComfyUI instance.
type InstanceStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Healthy is whether the agent's last probe of the instance succeeded.
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	// SystemStats is ComfyUI's GET /system_stats answer, verbatim.
	SystemStats json.RawMessage `json:"system_stats,omitempty"`
}

// GPUStats is one GPU as nvidia-smi reports it. Numbers nvidia-smi reports
// as unavailable ("[N/A]") are -1.
type GPUStats struct {
	Index          int     `json:"index"`
	Name           string  `json:"name,omitempty"`
	UUID           string  `json:"uuid,omitempty"`
	UtilizationPct float64 `json:"utilization_pct"`
	MemoryUsedMiB  float64 `json:"memory_used_mib"`
	MemoryTotalMiB float64 `json:"memory_total_mib"`
}

// writeFrame writes v as one frame: a 4-byte big-endian length, then JSON.
func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// readFrame reads exactly one frame into v, never more bytes than the frame
// holds, so raw bytes that follow stay unread.
func readFrame(r io.Reader, limit int, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(limit) {
		return fmt.Errorf("tunnel: frame of %d bytes exceeds the limit of %d", size, limit)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("tunnel: bad frame: %w", err)
	}
	return nil
}

// IsUpgradeRequest reports whether the Connection and Upgrade header values
// ask for this tunnel protocol (comma-separated lists and any letter case).
func IsUpgradeRequest(connection, upgrade string) bool {
	return headerHasToken(connection, "upgrade") && headerHasToken(upgrade, UpgradeProtocol)
}

func headerHasToken(value, token string) bool {
	for part := range strings.SplitSeq(value, ",") {
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}
