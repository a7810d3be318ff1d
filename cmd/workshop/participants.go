package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/mirror"
	"github.com/comfy-workshop/workshop/proxy"
	"github.com/comfy-workshop/workshop/userfiles"
)

// mirrorGetter adapts the mirror to what the participants' surface needs.
type mirrorGetter struct{ *mirror.Mirror }

func (m mirrorGetter) Get(ctx context.Context, path string) ([]byte, error) {
	body, _, err := m.Mirror.Get(ctx, path)
	return body, err
}

// newMirror caches the GPU hosts' read-only ComfyUI routes, with a copy
// under the data dir so the UI loads after a restart before the GPUs are
// back.
func newMirror(d *dispatch.Dispatcher, data string, log *slog.Logger) (proxy.Mirror, func()) {
	m := mirror.New(mirror.Config{Upstream: d.Upstream, Allow: mirror.ReadOnlyRoute, Dir: filepath.Join(data, "mirror"), Logger: log.With("part", "mirror")})
	// The node list is the dispatcher's (every instance's classes); a copy
	// an older server kept here is one instance's.
	m.Invalidate("/api/object_info")
	return mirrorGetter{m}, func() { m.Close() }
}

// newUserFiles serves each participant's saved workflows and settings,
// and the workshop workflows.
func newUserFiles(c serveConfig, log *slog.Logger) (*userfiles.Store, error) {
	dirs := []string{filepath.Join(c.Data, "workflows")}
	if c.Workflows != "" {
		dirs = append(dirs, c.Workflows)
	}
	return userfiles.New(userfiles.Config{Dir: filepath.Join(c.Data, "userdata"), WorkflowDirs: dirs, Logger: log.With("part", "userfiles")})
}
