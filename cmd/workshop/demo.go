package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/comfy-workshop/workshop/auth"
)

func demoCommand() *ffcli.Command {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	data := fs.String("data", "./demo-data", "directory for the demo's store")
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve on (port 0 picks a free one)")
	return &ffcli.Command{
		Name:       "demo",
		ShortUsage: "workshop demo [flags]",
		ShortHelp:  "run the server on localhost with plain HTTP, and print how to use it",
		FlagSet:    fs,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("demo takes no arguments, got %q", args)
			}
			token := auth.NewToken()
			out := &demoBanner{token: token}
			return serve(ctx, serveConfig{
				Data: *data, Listen: *listen, TLS: "off", AdminToken: token,
				Seats: 20, QueueMode: "round-robin", MaxPending: 10, EnablePriority: true,
				MaxAttempts: 3, LogLevel: "info", LogFormat: "text", out: out,
			})
		},
	}
}

// demoBanner turns the server's "listening" line into instructions.
type demoBanner struct{ token string }

func (b *demoBanner) Write(p []byte) (int, error) {
	var base string
	if _, err := fmt.Sscanf(string(p), "workshop: listening on %s", &base); err != nil {
		return os.Stdout.Write(p)
	}
	fmt.Printf(`
ComfyUI Workshop demo is running.

  API:          %[1]s/api
  Admin token:  %[2]s
  Health:       %[1]s/health

Queue a job:
  curl -s -X POST %[1]s/api/jobs -H 'Authorization: Bearer %[2]s' \
    -d '{"user_id":"user001","workflow":{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":64,"batch_size":1,"color":0}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"demo"}}}}'
List the queue:
  curl -s '%[1]s/api/jobs?status=pending' -H 'Authorization: Bearer %[2]s'

Press Ctrl-C to stop.
`, base, b.token)
	return len(p), nil
}
