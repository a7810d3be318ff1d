package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DialFunc opens a connection to addr ("host:port"). The server passes one
// that opens a stream through the GPU host's yamux tunnel.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Client talks to one ComfyUI instance. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	prefix  string // "/api" or "" before every API route
	http    *http.Client
	dial    DialFunc
	header  http.Header
	log     *slog.Logger
	backoff [2]time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithDialer makes the client reach the instance through dial, for HTTP
// and for the WebSocket alike.
func WithDialer(dial DialFunc) Option { return func(c *Client) { c.dial = dial } }

// WithHeader adds a header to every request (and the socket handshake).
func WithHeader(key, value string) Option {
	return func(c *Client) { c.header.Add(key, value) }
}

// WithLogger sets where the client logs (reconnects, mostly).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithBarePaths calls /prompt instead of /api/prompt, for servers that
// predate the /api prefix (ComfyUI before mid-2024).
func WithBarePaths() Option { return func(c *Client) { c.prefix = "" } }

// WithReconnectBackoff sets the follower's first and longest wait between
// reconnection attempts (default 250ms and 10s).
func WithReconnectBackoff(first, max time.Duration) Option {
	return func(c *Client) { c.backoff = [2]time.Duration{first, max} }
}

// New returns a client for the ComfyUI at baseURL, e.g.
// "http://127.0.0.1:8188" or "http://gpu1/comfy/0/" (a path prefix is kept).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("comfy: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("comfy: base URL %q: scheme must be http or https", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{
		base:    u,
		prefix:  "/api",
		header:  http.Header{},
		log:     slog.Default(),
		backoff: [2]time.Duration{250 * time.Millisecond, 10 * time.Second},
	}
	for _, o := range opts {
		o(c)
	}
	tr := &http.Transport{
		Proxy:               nil, // instances are reached directly or through the tunnel
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		// No response header timeout: /prompt can take a while on a busy
		// instance; callers bound requests with their context.
	}
	if c.dial != nil {
		tr.DialContext = c.dial
	} else {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		tr.DialContext = d.DialContext
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// BaseURL returns the instance's base URL.
func (c *Client) BaseURL() string { return c.base.String() }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) url(route string, query url.Values) string {
	u := *c.base
	u.Path = c.base.Path + c.prefix + route
	u.RawPath = ""
	if strings.Contains(route, "%") { // pre-escaped segments (userdata names)
		u.RawPath = c.base.EscapedPath() + c.prefix + route
		unescaped, err := url.PathUnescape(u.RawPath)
		if err == nil {
			u.Path = unescaped
		}
	}
	if query != nil {
		u.RawQuery = query.Encode()
	}
	return u.String()
}

// do sends a request and returns the response when it is 2xx; otherwise
// it reads the body into an *HTTPError.
func (c *Client) do(ctx context.Context, method, route string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.url(route, query)
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("comfy: %w", err)
	}
	for k, vs := range c.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("comfy: %s %s: %w", method, route, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, &HTTPError{Method: method, URL: u, StatusCode: resp.StatusCode, Body: string(b)}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, route string, query url.Values, out any) error {
	b, err := c.getBytes(ctx, route, query)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("comfy: GET %s: decode: %w", route, err)
	}
	return nil
}

func (c *Client) getBytes(ctx context.Context, route string, query url.Values) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, route, query, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return readAnswer(resp.Body, "GET "+route)
}

// readAnswer reads a JSON answer whole, at most MaxJSON bytes of it.
func readAnswer(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("comfy: %s: %w", what, err)
	}
	if len(b) > MaxJSON {
		return nil, fmt.Errorf("comfy: %s: the answer is over %d MiB", what, MaxJSON>>20)
	}
	return b, nil
}

// MaxJSON bounds every JSON answer (object_info, history, queue): far
// above a big installation's, and the server's memory is not the GPU
// host's to take.
const MaxJSON = 64 << 20

func (c *Client) postJSON(ctx context.Context, route string, in any) (*http.Response, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("comfy: POST %s: %w", route, err)
	}
	return c.do(ctx, http.MethodPost, route, nil, bytes.NewReader(b), "application/json")
}

func (c *Client) postJSONDiscard(ctx context.Context, route string, in any) error {
	resp, err := c.postJSON(ctx, route, in)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// QueuePrompt queues a graph. On a validation failure it returns a
// *PromptError carrying ComfyUI's error and node_errors. The returned
// PromptID is the one the instance uses, which older ComfyUI chooses itself
// whatever req.PromptID says.
func (c *Client) QueuePrompt(ctx context.Context, req PromptRequest) (*PromptResponse, error) {
	resp, err := c.postJSON(ctx, "/prompt", req)
	if err != nil {
		var he *HTTPError
		if asHTTPError(err, &he) && he.StatusCode == http.StatusBadRequest {
			pe := &PromptError{StatusCode: he.StatusCode, Body: []byte(he.Body)}
			// ComfyUI before 2025 answers "node_errors": [] when there are
			// none: the error itself still decodes.
			var te *json.UnmarshalTypeError
			if err := json.Unmarshal(pe.Body, pe); (err == nil || errors.As(err, &te)) && pe.Info.Type != "" {
				return nil, pe
			}
		}
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "POST /prompt")
	if err != nil {
		return nil, err
	}
	var out PromptResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("comfy: POST /prompt: decode: %w", err)
	}
	if out.PromptID == "" {
		return nil, fmt.Errorf("comfy: POST /prompt: reply has no prompt_id")
	}
	return &out, nil
}

func asHTTPError(err error, target **HTTPError) bool {
	he, ok := err.(*HTTPError)
	if ok {
		*target = he
	}
	return ok
}

// QueueRemaining reads GET /prompt: running plus pending prompts.
func (c *Client) QueueRemaining(ctx context.Context) (int, error) {
	var st QueueStatus
	if err := c.getJSON(ctx, "/prompt", nil, &st); err != nil {
		return 0, err
	}
	return st.ExecInfo.QueueRemaining, nil
}

// Queue reads GET /queue.
func (c *Client) Queue(ctx context.Context) (*Queue, error) {
	var q Queue
	if err := c.getJSON(ctx, "/queue", nil, &q); err != nil {
		return nil, err
	}
	return &q, nil
}

// DeleteFromQueue removes pending prompts. Running prompts are not touched
// (use Interrupt); unknown ids are ignored, as ComfyUI does.
func (c *Client) DeleteFromQueue(ctx context.Context, promptIDs ...string) error {
	return c.postJSONDiscard(ctx, "/queue", map[string]any{"delete": promptIDs})
}

// ClearQueue removes every pending prompt.
func (c *Client) ClearQueue(ctx context.Context) error {
	return c.postJSONDiscard(ctx, "/queue", map[string]any{"clear": true})
}

// Interrupt stops the running prompt. With a promptID, only if that prompt
// is the one running (ComfyUI since mid-2025; older versions interrupt
// whatever runs). ComfyUI answers 200 either way.
func (c *Client) Interrupt(ctx context.Context, promptID string) error {
	body := map[string]any{}
	if promptID != "" {
		body["prompt_id"] = promptID
	}
	return c.postJSONDiscard(ctx, "/interrupt", body)
}

// Free asks the instance to unload models and/or free memory.
func (c *Client) Free(ctx context.Context, unloadModels, freeMemory bool) error {
	return c.postJSONDiscard(ctx, "/free", map[string]any{"unload_models": unloadModels, "free_memory": freeMemory})
}

// HistoryQuery pages through /history. ComfyUI lists oldest first; with
// MaxItems and no Offset it returns the newest MaxItems, still oldest first.
type HistoryQuery struct {
	MaxItems int  // 0: all
	Offset   *int // nil: ComfyUI's default (-1)
}

// History reads GET /history in the server's order (oldest first).
func (c *Client) History(ctx context.Context, q HistoryQuery) ([]HistoryEntry, error) {
	query := url.Values{}
	if q.MaxItems > 0 {
		query.Set("max_items", strconv.Itoa(q.MaxItems))
	}
	if q.Offset != nil {
		query.Set("offset", strconv.Itoa(*q.Offset))
	}
	b, err := c.getBytes(ctx, "/history", query)
	if err != nil {
		return nil, err
	}
	return decodeHistory(b)
}

// PromptHistory reads GET /history/{id}; ok is false when the instance has
// no history for the prompt (not run yet, still running, or forgotten).
func (c *Client) PromptHistory(ctx context.Context, promptID string) (entry *HistoryEntry, ok bool, err error) {
	b, err := c.getBytes(ctx, "/history/"+url.PathEscape(promptID), nil)
	if err != nil {
		return nil, false, err
	}
	entries, err := decodeHistory(b)
	if err != nil {
		return nil, false, err
	}
	for i := range entries {
		if entries[i].PromptID == promptID {
			return &entries[i], true, nil
		}
	}
	return nil, false, nil
}

// DeleteHistory forgets finished prompts.
func (c *Client) DeleteHistory(ctx context.Context, promptIDs ...string) error {
	return c.postJSONDiscard(ctx, "/history", map[string]any{"delete": promptIDs})
}

// ClearHistory forgets every finished prompt.
func (c *Client) ClearHistory(ctx context.Context) error {
	return c.postJSONDiscard(ctx, "/history", map[string]any{"clear": true})
}

// ObjectInfo reads GET /object_info.
func (c *Client) ObjectInfo(ctx context.Context) (ObjectInfo, error) {
	b, err := c.ObjectInfoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return ParseObjectInfo(b)
}

// ObjectInfoRaw reads GET /object_info as sent, for caching and relaying.
func (c *Client) ObjectInfoRaw(ctx context.Context) ([]byte, error) {
	return c.getBytes(ctx, "/object_info", nil)
}

// NodeInfo reads GET /object_info/{class}; ok is false for an unknown class.
func (c *Client) NodeInfo(ctx context.Context, class string) (info *NodeInfo, ok bool, err error) {
	b, err := c.getBytes(ctx, "/object_info/"+url.PathEscape(class), nil)
	if err != nil {
		return nil, false, err
	}
	all, err := ParseObjectInfo(b)
	if err != nil {
		return nil, false, err
	}
	ni, ok := all[class]
	if !ok {
		return nil, false, nil
	}
	return &ni, true, nil
}

// SystemStats reads GET /system_stats.
func (c *Client) SystemStats(ctx context.Context) (*SystemStats, error) {
	var s SystemStats
	if err := c.getJSON(ctx, "/system_stats", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Features reads GET /features, the server's feature flags.
func (c *Client) Features(ctx context.Context) (FeatureFlags, error) {
	ff := FeatureFlags{}
	if err := c.getJSON(ctx, "/features", nil, &ff); err != nil {
		return nil, err
	}
	return ff, nil
}

// Models reads GET /models/{folder}: the files of one model folder
// ("checkpoints", "loras", ...).
func (c *Client) Models(ctx context.Context, folder string) ([]string, error) {
	var out []string
	if err := c.getJSON(ctx, "/models/"+url.PathEscape(folder), nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// SystemStats is the reply of GET /system_stats.
type SystemStats struct {
	System  SystemInfo   `json:"system"`
	Devices []DeviceInfo `json:"devices"`
}

// SystemInfo is SystemStats.System.
type SystemInfo struct {
	OS                      string   `json:"os"`
	RAMTotal                int64    `json:"ram_total"`
	RAMFree                 int64    `json:"ram_free"`
	ComfyUIVersion          string   `json:"comfyui_version"`
	RequiredFrontendVersion string   `json:"required_frontend_version"`
	PythonVersion           string   `json:"python_version"`
	PytorchVersion          string   `json:"pytorch_version"`
	EmbeddedPython          bool     `json:"embedded_python"`
	Argv                    []string `json:"argv"`
}

// DeviceInfo is one entry of SystemStats.Devices.
type DeviceInfo struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	Index          *int   `json:"index"`
	VRAMTotal      int64  `json:"vram_total"`
	VRAMFree       int64  `json:"vram_free"`
	TorchVRAMTotal int64  `json:"torch_vram_total"`
	TorchVRAMFree  int64  `json:"torch_vram_free"`
}
