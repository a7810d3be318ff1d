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
	return &cli.Command{
		Name:  "demo",
		Short: "run server, GPU agent and simulated ComfyUI on localhost, and print how to use them",
		Long: "Starts everything on localhost with plain HTTP. Set COMFY=http://127.0.0.1:8188 (comma-separated\n" +
			"for several) to drive your own ComfyUI instead of the simulators.",
		FlagSet: fs,
		Run: func(ctx context.Context, _ []string) error {
			if *sims < 1 || *sims > 8 {
				return usagef("--sims %d: want 1 to 8", *sims)
			}
			adminToken, agentToken := auth.NewToken(), auth.NewToken()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			instances, stop, err := demoInstances(log, *sims, time.Duration(*stepMS)*time.Millisecond)
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
				printDemo(base, adminToken, firstJoinLink(ctx, base, adminToken), instances)
				return nil
			}
			return serve(ctx, c)
		},
	}
}

// demoInstances starts the simulators, or returns the operator's ComfyUI.
func demoInstances(log *slog.Logger, n int, step time.Duration) ([]tunnel.Instance, func(), error) {
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
		s, err := sim.New(sim.Config{StepDelay: step, Steps: 20, Logger: log.With("part", fmt.Sprintf("comfysim-%d", i))})
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

func printDemo(base, token, join string, instances []tunnel.Instance) {
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
`, base, token, strings.Join(comfy, ", "), join)
}
