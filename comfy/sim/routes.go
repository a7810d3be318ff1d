package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// routes builds the mux. Every ComfyUI route is served bare and under
// /api, as PromptServer.add_routes does; /internal, the jobs API, the
// static files and /sim are not duplicated.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	api := func(pattern string, h http.HandlerFunc) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+path, h)
		mux.HandleFunc(method+" /api"+path, h)
	}
	api("GET /ws", s.serveWS)
	api("GET /prompt", s.handleGetPrompt)
	api("POST /prompt", s.handlePostPrompt)
	api("GET /queue", s.handleGetQueue)
	api("POST /queue", s.handlePostQueue)
	api("GET /history", s.handleGetHistory)
	api("GET /history/{prompt_id}", s.handleGetHistoryID)
	api("POST /history", s.handlePostHistory)
	api("POST /interrupt", s.handleInterrupt)
	api("POST /free", s.handleFree)
	api("GET /object_info", s.handleObjectInfo)
	api("GET /object_info/{node_class}", s.handleObjectInfoNode)
	api("GET /system_stats", s.handleSystemStats)
	if !s.cfg.Legacy { // ComfyUI has /features since 2025
		api("GET /features", s.handleFeatures)
	}
	api("GET /embeddings", s.handleEmbeddings)
	api("GET /models", s.handleModelTypes)
	api("GET /models/{folder}", s.handleModels)
	api("GET /experiment/models", s.handleExperimentModels)
	api("GET /experiment/models/{folder}", s.handleExperimentModelFiles)
	api("GET /extensions", s.handleExtensions)
	api("GET /view", s.handleView)
	api("GET /view_metadata/{folder_name}", s.handleViewMetadata)
	api("POST /upload/image", s.handleUploadImage)
	api("POST /upload/mask", s.handleUploadMask)
	api("GET /users", s.handleGetUsers)
	api("POST /users", s.handlePostUsers)
	api("GET /settings", s.handleGetSettings)
	api("POST /settings", s.handlePostSettings)
	api("GET /settings/{id}", s.handleGetSetting)
	api("POST /settings/{id}", s.handlePostSetting)
	api("GET /userdata", s.handleListUserdata)
	api("GET /v2/userdata", s.handleListUserdataV2)
	api("GET /userdata/{file}", s.handleGetUserdata)
	api("POST /userdata/{file}", s.handlePostUserdata)
	api("DELETE /userdata/{file}", s.handleDeleteUserdata)
	api("POST /userdata/{file}/move/{dest}", s.handleMoveUserdata)
	api("GET /workflow_templates", s.handleEmptyObject)
	api("GET /i18n", s.handleEmptyObject)

	mux.HandleFunc("GET /api/jobs", s.handleJobs)
	mux.HandleFunc("GET /api/jobs/{job_id}", s.handleJob)

	mux.HandleFunc("GET /internal/logs", s.handleLogs)
	mux.HandleFunc("GET /internal/logs/raw", s.handleLogsRaw)
	mux.HandleFunc("PATCH /internal/logs/subscribe", s.handleOK)
	mux.HandleFunc("GET /internal/folder_paths", s.handleFolderPaths)
	mux.HandleFunc("GET /internal/files/{directory_type}", s.handleInternalFiles)

	mux.HandleFunc("GET /sim/stats", s.handleStats)
	mux.HandleFunc("GET /sim/fault", s.handleGetFault)
	mux.HandleFunc("POST /sim/fault", s.handleSetFault)
	mux.HandleFunc("POST /sim/drop_ws", s.handleDropWS)

	mux.HandleFunc("GET /{$}", s.handleRoot)
	mux.HandleFunc("GET /", s.handleStatic)
	return mux
}

// writeJSON answers like aiohttp's json_response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		internalError(w)
		return
	}
	writeRawJSON(w, status, b)
}

func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// plain answers with aiohttp's default text bodies ("404: Not Found").
func plain(w http.ResponseWriter, status int, text string) {
	if text == "" {
		text = fmt.Sprintf("%d: %s", status, http.StatusText(status))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

// internalError is what aiohttp sends when a handler raises.
func internalError(w http.ResponseWriter) {
	plain(w, http.StatusInternalServerError, "500 Internal Server Error\n\nServer got itself in trouble")
}

// empty answers web.Response(status=...) with no body.
func empty(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(status)
}

// readJSON parses a body as JSON whatever its Content-Type says, as
// aiohttp's request.json() does; numbers stay exact.
func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

func (s *Server) handleOK(w http.ResponseWriter, r *http.Request) { empty(w, http.StatusOK) }

func (s *Server) handleEmptyObject(w http.ResponseWriter, r *http.Request) {
	writeRawJSON(w, http.StatusOK, []byte("{}"))
}
