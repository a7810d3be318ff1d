package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/tunnel"
)

// remote is the admin API of a running server, for the operator commands.
type remote struct {
	fs            *flag.FlagSet
	server, token string
	insecure      bool
	fingerprint   string
	caFile        string
	http          *http.Client
}

// remoteEnv are the flags of the operator commands that the environment
// may set: where the server is and how to reach it, never what to do.
var remoteEnv = []string{"server", "admin-token", "insecure", "server-fingerprint", "ca-file"}

// newRemote starts the flags of a command against a running server.
func newRemote(name string) *remote {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	r := &remote{fs: fs}
	fs.StringVar(&r.server, "server", "http://127.0.0.1:8080", "the running server's `URL`")
	fs.StringVar(&r.token, "admin-token", "", "the admin `token`")
	fs.BoolVar(&r.insecure, "insecure", false, "do not verify the server's certificate")
	fs.StringVar(&r.fingerprint, "server-fingerprint", "", "trust a self-signed server by its certificate's SHA-256 `fingerprint` (workshop serve prints it)")
	fs.StringVar(&r.caFile, "ca-file", "", "also trust the CA certificates in this PEM `file`")
	return r
}

// command completes c with the remote flags.
func (r *remote) command(c *cli.Command) *cli.Command {
	c.FlagSet, c.Env, c.EnvFlags = r.fs, "WORKSHOP", remoteEnv
	return c
}

func (r *remote) client() (*http.Client, error) {
	if r.http != nil {
		return r.http, nil
	}
	if u, err := url.Parse(r.server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q: want the server's http:// or https:// URL", r.server)
	}
	if r.token == "" {
		return nil, usagef("--admin-token (or WORKSHOP_ADMIN_TOKEN) is required")
	}
	opts := tunnel.TLSOptions{Insecure: r.insecure, FingerprintSHA256: r.fingerprint, CAFile: r.caFile}
	cfg, err := opts.Config()
	if err != nil {
		return nil, usagef("%v", err)
	}
	r.http = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}
	return r.http, nil
}

// unreachable explains why the server could not be reached; an untrusted
// certificate gets the fingerprint to pin, to be compared with the one the
// server printed at its start.
func (r *remote) unreachable(err error) error {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
		fp := tunnel.CertFingerprint(cve.UnverifiedCertificates[0].Raw)
		return fmt.Errorf("the certificate of %s is not trusted: %v\n"+
			"A server with --tls self-signed prints its certificate fingerprint when it starts. If it is\n  %s\n"+
			"pin it with --server-fingerprint %s (or WORKSHOP_SERVER_FINGERPRINT), or trust its CA with --ca-file FILE", r.server, cve.Err, fp, fp)
	}
	return fmt.Errorf("cannot reach the server at %s: %w", r.server, err)
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
		return r.unreachable(err)
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

// printJSON writes v indented, for --json.
func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

func printSeats(rows ...seatRow) {
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

func seatNumber(arg string) (int, error) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		return 0, usagef("%q is not a seat number", arg)
	}
	return n, nil
}

func seatsCommand() *cli.Command {
	list := newRemote("list")
	asJSON := list.fs.Bool("json", false, "print the server's JSON instead of a table")
	add, rename, signout, remove := newRemote("add"), newRemote("rename"), newRemote("signout"), newRemote("remove")
	return &cli.Command{
		Name: "seats", Short: "manage participant seats on a running server",
		Subcommands: []*cli.Command{
			list.command(&cli.Command{
				Name: "list", Short: "list seats with their join links",
				Run: func(ctx context.Context, _ []string) error {
					var out struct {
						Seats   []seatRow `json:"seats"`
						Warning string    `json:"join_warning,omitempty"`
					}
					var raw json.RawMessage
					if err := list.do(ctx, "GET", "/api/seats", nil, &raw); err != nil {
						return err
					}
					if *asJSON {
						return printJSON(raw)
					}
					if err := json.Unmarshal(raw, &out); err != nil {
						return err
					}
					printSeats(out.Seats...)
					if out.Warning != "" {
						fmt.Fprintf(os.Stderr, "warning: %s\n", out.Warning)
					}
					return nil
				},
			}),
			add.command(&cli.Command{
				Name: "add", Args: "[NAME]", MaxArgs: -1, Short: "add a seat (the next free number), with a display name",
				Run: func(ctx context.Context, args []string) error {
					var s seatRow
					if err := add.do(ctx, "POST", "/api/seats", map[string]any{"name": strings.Join(args, " ")}, &s); err != nil {
						return err
					}
					printSeats(s)
					return nil
				},
			}),
			rename.command(&cli.Command{
				Name: "rename", Args: "SEAT NAME", MinArgs: 2, MaxArgs: -1, Short: "give a seat a display name (the words of NAME are joined)",
				Run: func(ctx context.Context, args []string) error {
					n, err := seatNumber(args[0])
					if err != nil {
						return err
					}
					var s seatRow
					if err := rename.do(ctx, "PATCH", "/api/seats/"+strconv.Itoa(n), map[string]any{"name": strings.Join(args[1:], " ")}, &s); err != nil {
						return err
					}
					printSeats(s)
					return nil
				},
			}),
			signout.command(&cli.Command{
				Name: "signout", Args: "SEAT", MinArgs: 1, MaxArgs: 1, Short: "end every browser session of a seat (its join code still works)",
				Run: func(ctx context.Context, args []string) error {
					n, err := seatNumber(args[0])
					if err != nil {
						return err
					}
					var res struct {
						Ended int `json:"sessions_ended"`
					}
					if err := signout.do(ctx, "POST", "/api/seats/"+strconv.Itoa(n)+"/signout", nil, &res); err != nil {
						return err
					}
					fmt.Printf("seat %d signed out (%d sessions ended)\n", n, res.Ended)
					return nil
				},
			}),
			remove.command(&cli.Command{
				Name: "remove", Args: "SEAT", MinArgs: 1, MaxArgs: 1, Short: "remove a seat (its jobs and files stay)",
				Run: func(ctx context.Context, args []string) error {
					n, err := seatNumber(args[0])
					if err != nil {
						return err
					}
					if err := remove.do(ctx, "DELETE", "/api/seats/"+strconv.Itoa(n), nil, nil); err != nil {
						return err
					}
					fmt.Printf("seat %d removed\n", n)
					return nil
				},
			}),
		},
	}
}

// serverStatus is what `workshop status` reads.
type serverStatus struct {
	Health struct {
		Status  string `json:"status"`
		Version string `json:"version"`
		Uptime  int    `json:"uptime_s"`
		TLS     *struct {
			Mode    string    `json:"mode"`
			Expires time.Time `json:"expires"`
		} `json:"tls"`
	}
	Queue struct {
		Mode    string         `json:"mode"`
		Paused  bool           `json:"paused"`
		Counts  map[string]int `json:"counts"`
		Workers []workerRow    `json:"workers"`
	}
	Seats struct {
		Seats []seatRow `json:"seats"`
	}
	// The server's answers as they came, for --json.
	raw struct {
		Health json.RawMessage `json:"health"`
		Queue  json.RawMessage `json:"queue"`
		Seats  json.RawMessage `json:"seats"`
	}
}

func (r *remote) status(ctx context.Context) (*serverStatus, error) {
	st := &serverStatus{}
	for _, get := range []struct {
		path string
		raw  *json.RawMessage
		out  any
	}{
		{"/health", &st.raw.Health, &st.Health},
		{"/api/queue/status", &st.raw.Queue, &st.Queue},
		{"/api/seats", &st.raw.Seats, &st.Seats},
	} {
		if err := r.do(ctx, "GET", get.path, nil, get.raw); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(*get.raw, get.out); err != nil {
			return nil, fmt.Errorf("%s: %w", get.path, err)
		}
	}
	return st, nil
}

func statusCommand() *cli.Command {
	r := newRemote("status")
	asJSON := r.fs.Bool("json", false, "print JSON: the server's health, queue status and seats")
	return r.command(&cli.Command{
		Name: "status", Short: "show a running server's version, queue, GPUs, seats and certificate",
		Run: func(ctx context.Context, _ []string) error {
			st, err := r.status(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(st.raw)
			}
			h, q := st.Health, st.Queue
			fmt.Printf("server      %s (version %s), up %s\n", h.Status, h.Version, time.Duration(h.Uptime)*time.Second)
			if h.TLS != nil && !h.TLS.Expires.IsZero() {
				fmt.Printf("certificate %s, expires %s (in %d days)\n", h.TLS.Mode, h.TLS.Expires.Format(time.RFC3339), int(time.Until(h.TLS.Expires).Hours()/24))
			}
			paused := ""
			if q.Paused {
				paused = ", PAUSED"
			}
			fmt.Printf("queue       %s%s: %d pending, %d running, %d completed, %d failed, %d cancelled\n", q.Mode, paused,
				q.Counts["pending"], q.Counts["running"], q.Counts["completed"], q.Counts["failed"], q.Counts["cancelled"])
			fmt.Printf("seats       %d\n", len(st.Seats.Seats))
			fmt.Printf("GPUs        %s\n", gpuSummary(q.Workers))
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			for _, w := range q.Workers {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d done\t%s\n", w.ID, strings.ReplaceAll(w.State, "_", " "), w.Current, w.JobsDone, w.note())
			}
			return tw.Flush()
		},
	})
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

func adminCommand() *cli.Command {
	r := newRemote("set-password")
	setPassword := r.command(&cli.Command{
		Name: "set-password", Args: "< password-file",
		Short: "set the /admin login password (read from standard input) on a running server",
		Run: func(ctx context.Context, _ []string) error {
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
	})
	return &cli.Command{Name: "admin", Short: "instructor account commands", Subcommands: []*cli.Command{setPassword}}
}
