// Package sim is a ComfyUI simulator: an http.Handler that a ComfyUI
// client cannot tell from ComfyUI, except that it draws pictures instead of
// running models. It serves ComfyUI's routes bare and under /api, validates
// graphs the way ComfyUI does, runs one prompt at a time with timed sampler
// steps, streams the socket events in ComfyUI's order, and writes real,
// deterministic files. Faults (failing, hanging or crashing nodes, dropped
// sockets, slow downloads) can be switched on per server or per prompt.
//
// Simulator-only routes live under /sim/: GET /sim/stats, GET and POST
// /sim/fault, POST /sim/drop_ws.
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfy-workshop/workshop/comfy"
	"github.com/comfy-workshop/workshop/internal/jsonobj"
)

// Config sets up a simulator. Every field is optional.
type Config struct {
	// OutputDir, InputDir, TempDir and UserDir are ComfyUI's folders. Empty
	// ones are created in a temporary folder that Close removes.
	OutputDir, InputDir, TempDir, UserDir string
	// ModelsDir, when set, is scanned like ComfyUI's models folder
	// (checkpoints/, loras/, ...); otherwise a fixed list that covers the
	// workshop's fixture workflows is reported.
	ModelsDir string
	// Models replaces the fixed model list: folder -> file names.
	Models map[string][]string
	// FrontEndRoot serves a ComfyUI frontend build at /, as ComfyUI's
	// --front-end-root does. Empty: the simulator's own small page.
	FrontEndRoot string

	// StepDelay is the time of one sampler step.
	StepDelay time.Duration
	// Steps is the number of steps of every sampler node; 0 takes the
	// node's own "steps" (20 when it has none).
	Steps int
	// DisableCache re-runs every node of every prompt (ComfyUI's
	// --cache-none). By default unchanged nodes are reused from the
	// previous prompt, as ComfyUI does, and reported in execution_cached.
	DisableCache bool
	// DisableMetadata leaves the prompt/workflow text chunks out of PNGs
	// (ComfyUI's --disable-metadata).
	DisableMetadata bool
	// PromptIDs sets how a client-chosen prompt_id is treated:
	// PromptIDUUID (default, current ComfyUI: must be a canonical UUID),
	// PromptIDAny (mid-2025 ComfyUI: any string) or PromptIDIgnore
	// (ComfyUI before mid-2025: a new id is always minted).
	PromptIDs PromptIDPolicy
	// Instant runs every prompt at once (no step delay) and answers its
	// POST /prompt only when it has run to its end and every event is
	// sent, as a real ComfyUI may for a fully cached graph.
	Instant bool
	// Legacy behaves as ComfyUI before mid-2025 does (the kit's 2024-08-15):
	// a client's prompt_id is ignored (a new one is always made), errors
	// come in the older shapes ({"error": "no prompt"}, node_errors []
	// when there are none), and no progress_state is sent.
	Legacy bool
	// MissingNodeType words an unknown class as ComfyUI does since
	// February 2026 ("missing_node_type") instead of "invalid_prompt".
	MissingNodeType bool
	// MaxUploadSize bounds request bodies (ComfyUI's --max-upload-size,
	// default 100 MiB).
	MaxUploadSize int64
	// Version is the comfyui_version reported by /system_stats.
	Version string
	// WithoutNodes are node classes this instance does not have, as one
	// without a custom node or of another version: they are left out of
	// object_info, and a prompt using one is refused.
	WithoutNodes []string

	// Faults are switched on from the start; see Faults.
	Faults Faults
	// Exit ends the process for the crash fault (default os.Exit).
	Exit func(code int)
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

// PromptIDPolicy says how POST /prompt treats a client-chosen prompt_id.
type PromptIDPolicy string

// Prompt id policies; see Config.PromptIDs.
const (
	PromptIDUUID   PromptIDPolicy = "uuid"
	PromptIDAny    PromptIDPolicy = "any"
	PromptIDIgnore PromptIDPolicy = "ignore"
)

// Server is a running simulator. It is an http.Handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	hub     *hub
	queue   *promptQueue
	exec    *executor
	catalog []nodeDef
	byName  map[string]*nodeDef
	tmpRoot string

	faultMu sync.Mutex
	faults  Faults

	number  atomic.Int64
	stats   counters
	closing chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// New starts a simulator: it creates the folders and the executor.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Exit == nil {
		cfg.Exit = os.Exit
	}
	if cfg.MaxUploadSize == 0 {
		cfg.MaxUploadSize = 100 << 20
	}
	if cfg.Version == "" {
		cfg.Version = "0.8.2"
	}
	switch cfg.PromptIDs {
	case "":
		cfg.PromptIDs = PromptIDUUID
	case PromptIDUUID, PromptIDAny, PromptIDIgnore:
	default:
		return nil, fmt.Errorf("sim: unknown prompt id policy %q", cfg.PromptIDs)
	}
	if cfg.Instant {
		cfg.StepDelay = 0
	}
	if cfg.Steps < 0 || cfg.StepDelay < 0 {
		return nil, fmt.Errorf("sim: steps and step delay must not be negative")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hub: newHub(), faults: cfg.Faults, closing: make(chan struct{})}
	dirs := []*string{&s.cfg.OutputDir, &s.cfg.InputDir, &s.cfg.TempDir, &s.cfg.UserDir}
	names := []string{"output", "input", "temp", "user"}
	for i, d := range dirs {
		if *d == "" {
			if s.tmpRoot == "" {
				root, err := os.MkdirTemp("", "comfysim-")
				if err != nil {
					return nil, fmt.Errorf("sim: %w", err)
				}
				s.tmpRoot = root
			}
			*d = filepath.Join(s.tmpRoot, names[i])
		}
		abs, err := filepath.Abs(*d)
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		*d = abs
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	if cfg.FrontEndRoot != "" {
		st, err := os.Stat(cfg.FrontEndRoot)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("sim: front-end root %q is not a folder", cfg.FrontEndRoot)
		}
	}
	s.catalog = slices.DeleteFunc(catalog(), func(d nodeDef) bool { return slices.Contains(cfg.WithoutNodes, d.name) })
	s.byName = map[string]*nodeDef{}
	for i := range s.catalog {
		s.byName[s.catalog[i].name] = &s.catalog[i]
	}
	s.queue = newPromptQueue(s.queueUpdated)
	s.exec = newExecutor(s)
	s.mux = s.routes()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.exec.loop()
	}()
	s.log.Info("comfysim ready", "output", s.cfg.OutputDir, "input", s.cfg.InputDir, "step_delay", cfg.StepDelay, "steps", cfg.Steps)
	return s, nil
}

// ServeHTTP serves ComfyUI's API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the executor (interrupting a running prompt), drops every
// socket and removes the temporary folders it created.
func (s *Server) Close() error {
	s.closeMu.Do(func() {
		close(s.closing)
		s.queue.close()
		s.exec.interrupt()
		s.hub.dropAll()
		s.wg.Wait()
		if s.tmpRoot != "" {
			_ = os.RemoveAll(s.tmpRoot)
		}
	})
	return nil
}

// Dirs returns the output, input and temp folders in use.
func (s *Server) Dirs() (output, input, temp string) {
	return s.cfg.OutputDir, s.cfg.InputDir, s.cfg.TempDir
}

// WaitIdle blocks until nothing is running or pending, or ctx ends.
func (s *Server) WaitIdle(ctx context.Context) error {
	select {
	case <-s.queue.idleCh():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) queueInfo() comfy.QueueStatus {
	return comfy.QueueStatus{ExecInfo: comfy.ExecInfo{QueueRemaining: s.queue.remaining()}}
}

// queueUpdated is PromptServer.queue_updated: a status broadcast.
func (s *Server) queueUpdated(remaining int) {
	s.hub.sendJSON(nil, comfy.EventStatus, jsonobj.Of("status", comfy.QueueStatus{ExecInfo: comfy.ExecInfo{QueueRemaining: remaining}}))
}

func (s *Server) features() jsonobj.Object {
	return jsonobj.Of("supports_preview_metadata", true, "max_upload_size", s.cfg.MaxUploadSize)
}
