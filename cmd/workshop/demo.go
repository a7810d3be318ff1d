package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/comfy-workshop/workshop/auth"
	"github.com/comfy-workshop/workshop/comfy/sim"
	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/internal/version"
	"github.com/comfy-workshop/workshop/tunnel"
)

// The demo runs the whole product on localhost: the server, two simulated
// ComfyUI instances (or the operator's real ComfyUI, with COMFY=URL) and a
// GPU agent that connects them to the server through a real tunnel.
func demoCommand() *cli.Command {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	data := fs.String("data", "./demo-data", "directory for the demo's store and outputs")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve on (port 0 picks a free one)")
	sims := fs.Int("sims", 2, "simulated ComfyUI instances to start (ignored with COMFY set)")
	stepMS := fs.Int("step-ms", 150, "simulated time of one sampler step, in milliseconds")
	frontEnd := fs.String("front-end-root", "", "built ComfyUI frontend the simulators serve, as ComfyUI's --front-end-root (default: the installed comfyui-frontend-package, else the simulator's own page)")
	return &cli.Command{
		Name:  "demo",
		Short: "run server, GPU agent and simulated ComfyUI on localhost, and print how to use them",
		Long: "Starts everything on localhost with plain HTTP. Participants get the real ComfyUI frontend when one\n" +
			"is on this machine (--front-end-root DIR, or the Python package comfyui-frontend-package, found as\n" +
			"ComfyUI finds it), else the simulator's own page. Set COMFY=http://127.0.0.1:8188 (comma-separated\n" +
			"for several) to drive your own ComfyUI instead of the simulators.",
		FlagSet: fs,
		Run: func(ctx context.Context, _ []string) error {
			if *sims < 1 || *sims > 8 {
				return usagef("--sims %d: want 1 to 8", *sims)
			}
			adminToken, agentToken := auth.NewToken(), auth.NewToken()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			ui, err := demoFrontend(*frontEnd)
			if err != nil {
				return err
			}
			instances, stop, err := demoInstances(log, *sims, time.Duration(*stepMS)*time.Millisecond, ui.dir)
			if err != nil {
				return err
			}
			defer stop()
			agentDone := make(chan error, 1)
			// serve's defaults, as `workshop serve` would take them.
			c := defaultServeConfig()
			c.Data, c.Listen, c.TLS, c.AdminToken, c.AgentToken = *data, *listen, "off", adminToken, agentToken
			c.out, c.local = &quietLines{}, true
			c.onReady = func(base string) error {
				agent, err := tunnel.NewAgent(tunnel.AgentConfig{
					ServerURL: base, Token: agentToken, Name: "demo-gpu", Version: version.String(),
					Instances: instances, Logger: log.With("part", "gpu-agent"),
				})
				if err != nil {
					return err
				}
				go func() { agentDone <- agent.Run(ctx) }()
				printDemo(base, adminToken, firstJoinLink(ctx, base, adminToken), instances, ui.about())
				return nil
			}
			return serve(ctx, c)
		},
	}
}

// frontend is the ComfyUI frontend the demo's simulators serve.
type frontend struct {
	dir, from string // dir "" means the simulator's own page
}

// demoFrontend finds the real frontend: the flag's folder, else the
// static/ folder of the Python package comfyui-frontend-package, imported
// by the python3 on PATH the way ComfyUI imports it.
func demoFrontend(flagDir string) (frontend, error) {
	if os.Getenv("COMFY") != "" {
		return frontend{}, nil // the operator's ComfyUI serves its own
	}
	if flagDir != "" {
		if _, err := os.Stat(filepath.Join(flagDir, "index.html")); err != nil {
			return frontend{}, usagef("--front-end-root %s: no index.html there (want a built ComfyUI frontend)", flagDir)
		}
		return frontend{dir: flagDir, from: "--front-end-root"}, nil
	}
	out, err := exec.Command("python3", "-c", "import importlib.resources as r, comfyui_frontend_package as p; print(r.files(p) / 'static')").Output()
	if dir := strings.TrimSpace(string(out)); err == nil && dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "index.html")); err == nil {
			return frontend{dir: dir, from: "the comfyui-frontend-package of python3"}, nil
		}
	}
	return frontend{}, nil
}

// about says which page participants get, and how to get the real one.
func (f frontend) about() string {
	switch {
	case os.Getenv("COMFY") != "":
		return "the frontend your ComfyUI serves"
	case f.dir != "":
		return "the real ComfyUI frontend, " + f.dir + " (" + f.from + ")"
	}
	return "the simulator's own page. For the real ComfyUI frontend participants get: pip install comfyui-frontend-package,\n" +
		"                or pass --front-end-root DIR (a built frontend)"
}

// demoInstances starts the simulators (serving frontEnd when set), or
// returns the operator's ComfyUI.
func demoInstances(log *slog.Logger, n int, step time.Duration, frontEnd string) ([]tunnel.Instance, func(), error) {
	if urls := os.Getenv("COMFY"); urls != "" {
		var out []tunnel.Instance
		for i, u := range strings.Split(urls, ",") {
			u = strings.TrimRight(strings.TrimSpace(u), "/")
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return nil, nil, usagef("COMFY=%q: want http://host:port", u)
			}
			out = append(out, tunnel.Instance{Name: fmt.Sprint(i), URL: u})
		}
		return out, func() {}, nil
	}
	var out []tunnel.Instance
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	for i := 0; i < n; i++ {
		s, err := sim.New(sim.Config{StepDelay: step, Steps: 20, FrontEndRoot: frontEnd, Logger: log.With("part", fmt.Sprintf("comfysim-%d", i))})
		if err != nil {
			stop()
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			stop()
			return nil, nil, err
		}
		hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("simulator stopped", "err", err)
			}
		}()
		closers = append(closers, func() { hs.Close(); s.Close() })
		out = append(out, tunnel.Instance{Name: fmt.Sprint(i), URL: "http://" + ln.Addr().String()})
	}
	return out, stop, nil
}

// quietLines drops serve's own operator lines: the demo prints its own.
type quietLines struct{}

func (quietLines) Write(p []byte) (int, error) { return len(p), nil }

// firstJoinLink asks the server for seat 1's join link, to print it.
func firstJoinLink(ctx context.Context, base, token string) string {
	r := &remote{server: base, token: token}
	var out struct{ Seats []seatRow }
	if err := r.do(ctx, "GET", "/api/seats", nil, &out); err != nil || len(out.Seats) == 0 {
		return base + "/join/<code> (see workshop seats list)"
	}
	return out.Seats[0].JoinURL
}

func printDemo(base, token, join string, instances []tunnel.Instance, ui string) {
	var comfy []string
	for _, in := range instances {
		comfy = append(comfy, in.URL)
	}
	fmt.Printf(`
ComfyUI Workshop demo is running.

  Admin page:   %[1]s/admin        (sign in with the token below)
  Admin API:    %[1]s/api
  Admin token:  %[2]s
  Participant:  %[4]s   (seat 1's join link: a ComfyUI page at /user/1/)
  Their page:   %[5]s
  GPU agent:    demo-gpu, ComfyUI at %[3]s
  Health:       %[1]s/health

Queue a job (an image, no models needed):
  curl -s -X POST %[1]s/api/jobs -H 'Authorization: Bearer %[2]s' \
    -d '{"user_id":"user001","workflow":{"1":{"class_type":"EmptyImage","inputs":{"width":512,"height":512,"batch_size":1,"color":16744448}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"demo"}}}}'
Follow it (replace JOB):
  curl -s %[1]s/api/jobs/JOB -H 'Authorization: Bearer %[2]s'
Download its output (the "url" in result.outputs):
  curl -s -o out.png %[1]s/api/jobs/JOB/outputs/NAME -H 'Authorization: Bearer %[2]s'
See the GPUs and the queue:
  curl -s %[1]s/api/workers -H 'Authorization: Bearer %[2]s'

Press Ctrl-C to stop.
`, base, token, strings.Join(comfy, ", "), join, ui)
}
