package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/comfy-workshop/workshop/internal/version"
	"github.com/comfy-workshop/workshop/models"
)

// syncModels makes sure the manifest's models are in the models folder
// before the agent connects: a GPU host that lacks them must not take jobs.
// ok: go on and run the agent; otherwise exit with code.
func syncModels(ctx context.Context, o *options, getenv func(string) string, log *slog.Logger, stderr io.Writer, probe *prober) (code int, ok bool) {
	if o.modelsFile == "" {
		return exitOK, true
	}
	if unknown := models.UnknownFolders(o.modelEntries); len(unknown) > 0 {
		log.Warn("models: folders that are not ComfyUI's standard model folders (fine for custom nodes, else a typo)",
			"folders", strings.Join(unknown, ","))
	}
	log.Info("models: checking before connecting", "manifest", o.modelsFile, "dir", o.modelsDir,
		"models", len(o.modelEntries), "concurrency", o.modelsConcurrency)
	report, err := models.Sync(ctx, o.modelEntries, models.Options{
		Dir:         o.modelsDir,
		Concurrency: o.modelsConcurrency,
		Authorize:   authorizer(getenv),
		UserAgent:   "comfy-workshop-gpu-agent/" + version.String(),
		Logger:      log,
	})
	if ctx.Err() != nil {
		log.Info("gpu-agent stopped during the model check; partial downloads are kept for the next start")
		return exitOK, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "gpu-agent: %v\n", err)
		return exitFailure, false
	}
	// The server sees what this host has in every report.
	probe.models, _ = json.Marshal(report.Files)
	if missing := report.Missing(); len(missing) > 0 {
		if o.modelsOptional {
			paths := make([]string, len(missing))
			for i, f := range missing {
				paths[i] = f.Path
			}
			log.Warn("models: going on without some models (--models-optional)", "missing", strings.Join(paths, ","))
			return exitOK, true
		}
		fmt.Fprintf(stderr, "gpu-agent: models missing (%s):\n", report.Summary())
		for _, f := range missing {
			fmt.Fprintf(stderr, "  %s from %s: %s\n", f.Path, f.URL, f.Error)
		}
		if report.Permanent() {
			fmt.Fprintln(stderr, "Fix the manifest or the URLs (or pass --models-optional to run without them).")
			return exitModels, false
		}
		fmt.Fprintln(stderr, "Network trouble: start again to resume the downloads (or pass --models-optional to run without them).")
		return exitFailure, false
	}
	return exitOK, true
}

// tokenHosts map a host (and its subdomains) to the environment variables
// holding a bearer token for it, first set wins: gated models on Hugging
// Face and Civitai need one.
var tokenHosts = []struct {
	host string
	envs []string
}{
	{"huggingface.co", []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}},
	{"civitai.com", []string{"CIVITAI_TOKEN", "CIVITAI_API_TOKEN"}},
}

// authorizer adds "Authorization: Bearer <token>" to https requests for the
// hosts of tokenHosts whose token is set. Go's client drops the header on a
// redirect to another domain (the signed CDN URL these hosts redirect to).
func authorizer(getenv func(string) string) func(*http.Request) {
	return func(req *http.Request) {
		if req.URL.Scheme != "https" || req.Header.Get("Authorization") != "" {
			return
		}
		host := strings.ToLower(req.URL.Hostname())
		for _, th := range tokenHosts {
			if host != th.host && !strings.HasSuffix(host, "."+th.host) {
				continue
			}
			for _, env := range th.envs {
				if tok := strings.TrimSpace(getenv(env)); tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
					return
				}
			}
		}
	}
}

var errNoModelsDir = errors.New("--models needs --models-dir (or " + envModelsDir + "): ComfyUI's models folder")
