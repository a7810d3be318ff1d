package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/comfy-workshop/workshop/internal/cli"
)

// agentsCommand manages the GPU hosts' own tokens on a running server.
func agentsCommand() *cli.Command {
	add, list, revoke := newRemote("add"), newRemote("list"), newRemote("revoke")
	return &cli.Command{
		Name: "agents", Short: "give each GPU host its own token (bound to its agent name), list them, revoke one",
		Long: "A GPU host with its own token can connect only under its own name, and revoking the\n" +
			"token disconnects that host alone. The shared --agent-token of 'workshop serve' lets any\n" +
			"holder connect under any name that has no token of its own.",
		Subcommands: []*cli.Command{
			add.command(&cli.Command{
				Name: "add", Args: "NAME", MinArgs: 1, MaxArgs: 1, Short: "make a token for the GPU host NAME (printed once)",
				Run: func(ctx context.Context, args []string) error {
					var res struct {
						Name  string `json:"name"`
						Token string `json:"token"`
					}
					if err := add.do(ctx, "POST", "/api/agents", map[string]string{"name": args[0]}, &res); err != nil {
						return err
					}
					fmt.Printf("token for agent %s (shown once, stored hashed):\n%s\n\n", res.Name, res.Token)
					fmt.Printf("on the GPU host: gpu-agent --server %s --name %s --token %s --comfy http://127.0.0.1:8188\n", add.server, res.Name, res.Token)
					return nil
				},
			}),
			list.command(&cli.Command{
				Name: "list", Short: "list the GPU hosts' tokens and the connected agents",
				Run: func(ctx context.Context, _ []string) error {
					var res struct {
						Agents []struct {
							Name       string     `json:"name"`
							Token      string     `json:"token"`
							CreatedAt  *time.Time `json:"created_at"`
							Connected  bool       `json:"connected"`
							RemoteAddr string     `json:"remote_addr"`
						} `json:"agents"`
						Shared bool `json:"shared_token"`
					}
					if err := list.do(ctx, "GET", "/api/agents", nil, &res); err != nil {
						return err
					}
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "AGENT\tTOKEN\tCREATED\tSTATE\tFROM")
					for _, a := range res.Agents {
						created, state, from := "-", "offline", "-"
						if a.CreatedAt != nil {
							created = a.CreatedAt.Local().Format(time.DateTime)
						}
						if a.Connected {
							state, from = "connected", a.RemoteAddr
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Token, created, state, from)
					}
					tw.Flush()
					if res.Shared {
						fmt.Println("\nthe shared agent token is accepted too (serve --shared-agent-token=false turns it off)")
					}
					return nil
				},
			}),
			revoke.command(&cli.Command{
				Name: "revoke", Args: "NAME", MinArgs: 1, MaxArgs: 1, Short: "delete the token of the GPU host NAME and disconnect it",
				Run: func(ctx context.Context, args []string) error {
					var res struct {
						Closed int `json:"sessions_closed"`
					}
					if err := revoke.do(ctx, "DELETE", "/api/agents/"+url.PathEscape(args[0]), nil, &res); err != nil {
						return err
					}
					fmt.Printf("token of agent %s revoked (%d session(s) closed)\n", args[0], res.Closed)
					return nil
				},
			}),
		},
	}
}
