// Command workshop is the ComfyUI Workshop server: it keeps the queue, serves
// participants and the instructor, and accepts GPU agents.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := &ffcli.Command{
		Name:       "workshop",
		ShortUsage: "workshop <command> [flags]",
		ShortHelp:  "ComfyUI Workshop server",
		LongHelp: "ComfyUI Workshop runs one queue of ComfyUI jobs for a room of participants on shared GPUs.\n" +
			"Run 'workshop <command> --help' for a command's flags.",
		FlagSet:     flag.NewFlagSet("workshop", flag.ContinueOnError),
		Subcommands: []*ffcli.Command{serveCommand(), demoCommand(), seatsCommand(), agentsCommand(), statusCommand(), backupCommand(), restoreCommand(), pruneCommand(), preflightCommand(), adminCommand(), versionCommand()},
		Exec: func(_ context.Context, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q: run 'workshop --help'", args[0])
			}
			return flag.ErrHelp
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ParseAndRun(ctx, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		if len(args) == 0 {
			return 2 // usage was printed; no command given
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "workshop: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) || isFlagError(err) {
			return 2
		}
		return 1
	}
}

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// isFlagError recognises the flag package's and ffcli's parse errors.
func isFlagError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"flag provided but not defined", "invalid value", "invalid boolean", "bad flag syntax", "flag needs an argument", "error parsing", "unknown command"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func versionCommand() *ffcli.Command {
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "workshop version",
		ShortHelp:  "print the version",
		FlagSet:    flag.NewFlagSet("version", flag.ContinueOnError),
		Exec: func(context.Context, []string) error {
			fmt.Println(version)
			return nil
		},
	}
}
