// Command workshop is the ComfyUI Workshop server: it keeps the queue, serves
// participants and the instructor, and accepts GPU agents.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Run(ctx, rootCommand(), os.Args[1:], cli.Std()))
}

func rootCommand() *cli.Command {
	return &cli.Command{
		Name:  "workshop",
		Short: "ComfyUI Workshop server",
		Long: "ComfyUI Workshop runs one queue of ComfyUI jobs for a room of participants on shared GPUs.\n" +
			"'workshop serve' runs the server; the other commands work on a running server, or its data.",
		Subcommands: []*cli.Command{serveCommand(), demoCommand(), seatsCommand(), agentsCommand(), statusCommand(), backupCommand(),
			restoreCommand(), pruneCommand(), preflightCommand(), adminCommand(), versionCommand()},
	}
}

// usagef is an error in how a command was called: exit status 2.
func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Short: "print the version",
		Run: func(context.Context, []string) error {
			fmt.Println("workshop", version.String())
			return nil
		},
	}
}
