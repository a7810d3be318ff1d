package main

import (
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"github.com/comfy-workshop/workshop/dispatch"
	"github.com/comfy-workshop/workshop/proxy"
)

// newMirror caches the GPU hosts' read-only ComfyUI routes.
func newMirror(d *dispatch.Dispatcher, log *slog.Logger) proxy.Mirror { return nil }

// newUserFiles serves each participant's saved workflows and settings.
func newUserFiles(c serveConfig, log *slog.Logger) func(fiber.Router, func(*fiber.Ctx) string) {
	return nil
}
