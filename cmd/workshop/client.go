package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/comfy-workshop/workshop/tunnel"
)

// remote is the admin API of a running server, for the operator commands.
type remote struct {
	server, token string
	insecure      bool
	fingerprint   string
	http          *http.Client
}

func remoteFlags(fs *flag.FlagSet) *remote {
	r := &remote{}
	fs.StringVar(&r.server, "server", "http://127.0.0.1:8080", "the running server's URL (WORKSHOP_SERVER)")
	fs.StringVar(&r.token, "admin-token", "", "the admin token (WORKSHOP_ADMIN_TOKEN)")
	fs.BoolVar(&r.insecure, "insecure", false, "do not verify the server's certificate")
	fs.StringVar(&r.fingerprint, "server-fingerprint", "", "pin a self-signed server certificate by its SHA-256 fingerprint")
	return r
}

func remoteOptions() []ff.Option { return []ff.Option{ff.WithEnvVarPrefix("WORKSHOP")} }

func (r *remote) client() (*http.Client, error) {
	if r.http != nil {
		return r.http, nil
	}
	if r.token == "" {
		return nil, usagef("--admin-token (or WORKSHOP_ADMIN_TOKEN) is required")
	}
	opts := tunnel.TLSOptions{Insecure: r.insecure, FingerprintSHA256: r.fingerprint}
	cfg, err := opts.Config()
	if err != nil {
		return nil, usagef("%v", err)
	}
	r.http = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
	return r.http, nil
}

// do calls the admin API and decodes the JSON answer into out; a JSON
// error from the server becomes the command's error.
func (r *remote) do(ctx context.Context, method, path string, body, out any) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(r.server, "/")+path, rd)
	if err != nil {
		return usagef("--server %q: %v", r.server, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the server at %s: %w", r.server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		raw, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s (%d)", e.Error.Message, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

type seatRow struct {
	Seat     int    `json:"seat"`
	Name     string `json:"name"`
	Code     string `json:"code"`
	Disabled bool   `json:"disabled"`
	UserID   string `json:"user_id"`
	JoinURL  string `json:"join_url"`
}

func seatsCommand() *ffcli.Command {
	sub := func(name, usage, help string, run func(ctx context.Context, r *remote, args []string) error) *ffcli.Command {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		r := remoteFlags(fs)
		return &ffcli.Command{
			Name: name, ShortUsage: "workshop seats " + usage, ShortHelp: help, FlagSet: fs, Options: remoteOptions(),
			Exec: func(ctx context.Context, args []string) error { return run(ctx, r, args) },
		}
	}
	printSeats := func(rows ...seatRow) {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEAT\tNAME\tUSER\tSTATE\tJOIN LINK")
		for _, s := range rows {
			state := "open"
			if s.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", s.Seat, s.Name, s.UserID, state, s.JoinURL)
		}
		tw.Flush()
	}
	seatArg := func(args []string, want int) (int, error) {
		if len(args) < want {
			return 0, usagef("give the seat number")
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return 0, usagef("%q is not a seat number", args[0])
		}
		return n, nil
	}
	return &ffcli.Command{
		Name: "seats", ShortUsage: "workshop seats <list|add|rename|remove> [flags]", ShortHelp: "manage participant seats on a running server",
		FlagSet: flag.NewFlagSet("seats", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{
			sub("list", "list [flags]", "list seats with their join links", func(ctx context.Context, r *remote, _ []string) error {
				var out struct{ Seats []seatRow }
				if err := r.do(ctx, "GET", "/api/seats", nil, &out); err != nil {
					return err
				}
				printSeats(out.Seats...)
				return nil
			}),
			sub("add", "add [flags] [NAME]", "add a seat (the next free number)", func(ctx context.Context, r *remote, args []string) error {
				var s seatRow
				if err := r.do(ctx, "POST", "/api/seats", map[string]any{"name": strings.Join(args, " ")}, &s); err != nil {
					return err
				}
				printSeats(s)
				return nil
			}),
			sub("rename", "rename [flags] SEAT NAME", "give a seat a display name", func(ctx context.Context, r *remote, args []string) error {
				n, err := seatArg(args, 2)
				if err != nil {
					return err
				}
				var s seatRow
				if err := r.do(ctx, "PATCH", "/api/seats/"+strconv.Itoa(n), map[string]any{"name": strings.Join(args[1:], " ")}, &s); err != nil {
					return err
				}
				printSeats(s)
				return nil
			}),
			sub("remove", "remove [flags] SEAT", "remove a seat (its jobs and files stay)", func(ctx context.Context, r *remote, args []string) error {
				n, err := seatArg(args, 1)
				if err != nil {
					return err
				}
				if err := r.do(ctx, "DELETE", "/api/seats/"+strconv.Itoa(n), nil, nil); err != nil {
					return err
				}
				fmt.Printf("seat %d removed\n", n)
				return nil
			}),
		},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
}

func statusCommand() *ffcli.Command {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	r := remoteFlags(fs)
	return &ffcli.Command{
		Name: "status", ShortUsage: "workshop status [flags]", ShortHelp: "show a running server's queue, GPUs, seats and certificate",
		FlagSet: fs, Options: remoteOptions(),
		Exec: func(ctx context.Context, args []string) error {
			var health struct {
				Status  string `json:"status"`
				Version string `json:"version"`
				Uptime  int    `json:"uptime_s"`
				TLS     *struct {
					Mode    string    `json:"mode"`
					Expires time.Time `json:"expires"`
				} `json:"tls"`
			}
			var q struct {
				Mode    string         `json:"mode"`
				Paused  bool           `json:"paused"`
				Counts  map[string]int `json:"counts"`
				Workers []workerRow    `json:"workers"`
			}
			var seats struct{ Seats []seatRow }
			if err := r.do(ctx, "GET", "/health", nil, &health); err != nil {
				return err
			}
			if err := r.do(ctx, "GET", "/api/queue/status", nil, &q); err != nil {
				return err
			}
			if err := r.do(ctx, "GET", "/api/seats", nil, &seats); err != nil {
				return err
			}
			fmt.Printf("server      %s (%s), up %s\n", health.Status, health.Version, time.Duration(health.Uptime)*time.Second)
			if health.TLS != nil && !health.TLS.Expires.IsZero() {
				fmt.Printf("certificate %s, expires %s (in %d days)\n", health.TLS.Mode, health.TLS.Expires.Format(time.RFC3339), int(time.Until(health.TLS.Expires).Hours()/24))
			}
			paused := ""
			if q.Paused {
				paused = ", PAUSED"
			}
			fmt.Printf("queue       %s%s: %d pending, %d running, %d completed, %d failed, %d cancelled\n", q.Mode, paused,
				q.Counts["pending"], q.Counts["running"], q.Counts["completed"], q.Counts["failed"], q.Counts["cancelled"])
			fmt.Printf("seats       %d\n", len(seats.Seats))
			fmt.Printf("GPUs        %s\n", gpuSummary(q.Workers))
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			for _, w := range q.Workers {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d done\t%s\n", w.ID, strings.ReplaceAll(w.State, "_", " "), w.Current, w.JobsDone, w.note())
			}
			return tw.Flush()
		},
	}
}

// workerRow is one GPU instance as `workshop status` shows it.
type workerRow struct {
	ID              string   `json:"id"`
	State           string   `json:"state"`
	Current         string   `json:"current_job"`
	JobsDone        int      `json:"jobs_done"`
	HeldJobs        []string `json:"held_jobs"`
	GraceRemainingS *float64 `json:"grace_remaining_s"`
	SetAside        *struct {
		Reason string `json:"reason"`
	} `json:"set_aside"`
}

// note says what needs the operator's eye: jobs waiting for a lost
// instance, an instance set aside.
func (w workerRow) note() string {
	var parts []string
	if n := len(w.HeldJobs); n > 0 {
		p := fmt.Sprintf("holds %d job(s)", n)
		if w.GraceRemainingS != nil {
			p += fmt.Sprintf(", back to the queue in %ds unless it returns", int(*w.GraceRemainingS+0.5))
		}
		parts = append(parts, p)
	}
	if w.SetAside != nil {
		parts = append(parts, "set aside, as "+w.SetAside.Reason+" (put it back from the admin page once fixed)")
	}
	return strings.Join(parts, "; ")
}

// gpuSummary is "3 instance(s): 1 disconnected, 1 set aside".
func gpuSummary(ws []workerRow) string {
	counts := map[string]int{}
	for _, w := range ws {
		switch {
		case w.State == "disconnected" || w.State == "unreachable":
			counts[w.State]++
		case w.SetAside != nil:
			counts["set aside"]++
		}
	}
	s := fmt.Sprintf("%d instance(s)", len(ws))
	var parts []string
	for _, k := range []string{"disconnected", "unreachable", "set aside"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}

func adminCommand() *ffcli.Command {
	fs := flag.NewFlagSet("set-password", flag.ContinueOnError)
	r := remoteFlags(fs)
	setPassword := &ffcli.Command{
		Name: "set-password", ShortUsage: "workshop admin set-password [flags] < password-file",
		ShortHelp: "set the /admin login password (read from standard input) on a running server",
		FlagSet:   fs, Options: remoteOptions(),
		Exec: func(ctx context.Context, args []string) error {
			raw, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
			if err != nil {
				return err
			}
			pw := strings.TrimRight(string(raw), "\r\n")
			if len(pw) < 8 {
				return usagef("give a password of at least 8 characters on standard input")
			}
			if err := r.do(ctx, "PUT", "/api/admin/password", map[string]string{"password": pw}, nil); err != nil {
				return err
			}
			fmt.Println("admin password set")
			return nil
		},
	}
	return &ffcli.Command{
		Name: "admin", ShortUsage: "workshop admin <set-password> [flags]", ShortHelp: "instructor account commands",
		FlagSet: flag.NewFlagSet("admin", flag.ContinueOnError), Subcommands: []*ffcli.Command{setPassword},
		Exec: func(context.Context, []string) error { return flag.ErrHelp },
	}
}
