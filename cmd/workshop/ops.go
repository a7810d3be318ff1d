package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/comfy-workshop/workshop/store"
)

func backupCommand() *ffcli.Command {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	r := remoteFlags(fs)
	return &ffcli.Command{
		Name: "backup", ShortUsage: "workshop backup [flags] FILE", ShortHelp: "copy a running server's store to FILE, consistently, while it serves",
		FlagSet: fs, Options: remoteOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("give the backup file")
			}
			dst := args[0]
			tmp := dst + ".part"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			if err := r.do(ctx, "GET", "/api/backup", nil, f); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			f.Close()
			version, err := store.Check(tmp)
			if err != nil {
				return fmt.Errorf("the copy is not usable: %w", err)
			}
			if err := os.Rename(tmp, dst); err != nil {
				return err
			}
			fi, _ := os.Stat(dst)
			fmt.Printf("backup written to %s (%d bytes, schema %d)\n", dst, fi.Size(), version)
			return nil
		},
	}
}

func restoreCommand() *ffcli.Command {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	data := fs.String("data", "./data", "the data directory of the (stopped) server")
	return &ffcli.Command{
		Name: "restore", ShortUsage: "workshop restore [flags] FILE", ShortHelp: "replace a stopped server's store with a backup (the old one is kept beside it)",
		FlagSet: fs,
		Exec: func(ctx context.Context, args []string) error {
			if len(args) != 1 {
				return usagef("give the backup file")
			}
			if _, err := store.Check(args[0]); err != nil {
				return err
			}
			live := filepath.Join(*data, "workshop.db")
			if _, err := os.Stat(live); err == nil {
				// Opening it fails while a server holds it: restore only a stopped one.
				db, err := store.Open(*data, nil)
				if err != nil {
					return fmt.Errorf("stop the server first: %w", err)
				}
				db.Close()
				kept := live + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
				if err := os.Rename(live, kept); err != nil {
					return err
				}
				fmt.Printf("the old store is kept as %s\n", kept)
			}
			if err := copyFile(args[0], live); err != nil {
				return err
			}
			fmt.Printf("restored %s into %s\n", args[0], live)
			return nil
		},
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".part", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	out.Close()
	return os.Rename(dst+".part", dst)
}

func pruneCommand() *ffcli.Command {
	fs := flag.NewFlagSet("prune", flag.ContinueOnError)
	r := remoteFlags(fs)
	older := fs.Duration("older-than", -1, "delete finished jobs, their outputs, and uploads older than this (e.g. 72h; 0s: all); required")
	return &ffcli.Command{
		Name: "prune", ShortUsage: "workshop prune --older-than D [flags]", ShortHelp: "clear old jobs and files on a running server, for the next group",
		FlagSet: fs, Options: remoteOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if *older < 0 {
				return usagef("--older-than is required (0s clears everything finished)")
			}
			var res struct {
				Jobs   int `json:"jobs_deleted"`
				Inputs int `json:"inputs_deleted"`
			}
			if err := r.do(ctx, "POST", "/api/prune", map[string]string{"older_than": older.String()}, &res); err != nil {
				return err
			}
			fmt.Printf("deleted %d finished jobs with their outputs, and %d uploads\n", res.Jobs, res.Inputs)
			return nil
		},
	}
}

func preflightCommand() *ffcli.Command {
	fs := flag.NewFlagSet("preflight", flag.ContinueOnError)
	r := remoteFlags(fs)
	return &ffcli.Command{
		Name: "preflight", ShortUsage: "workshop preflight [flags]",
		ShortHelp: "before the room fills: run a test graph on every GPU instance and check every workshop workflow's nodes and models",
		FlagSet:   fs, Options: remoteOptions(),
		Exec: func(ctx context.Context, args []string) error {
			var res struct {
				OK        bool `json:"ok"`
				Instances []struct {
					Worker    string `json:"worker"`
					TestGraph string `json:"test_graph"`
					Workflows []struct {
						Name          string   `json:"name"`
						MissingNodes  []string `json:"missing_nodes"`
						MissingModels []string `json:"missing_models"`
					} `json:"workflows"`
				} `json:"instances"`
				Unreadable map[string]string `json:"unreadable_workflows"`
			}
			if err := r.do(ctx, "POST", "/api/preflight", nil, &res); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INSTANCE\tTEST GRAPH\tWORKFLOW\tMISSING NODES\tMISSING MODELS")
			for _, in := range res.Instances {
				if len(in.Workflows) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\n", in.Worker, in.TestGraph)
				}
				for _, w := range in.Workflows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Worker, in.TestGraph, w.Name, orDash(w.MissingNodes), orDash(w.MissingModels))
				}
			}
			tw.Flush()
			for name, why := range res.Unreadable {
				fmt.Printf("workflow %s is unreadable: %s\n", name, why)
			}
			if len(res.Instances) == 0 {
				return fmt.Errorf("no GPU instance is connected")
			}
			if !res.OK {
				return fmt.Errorf("something is missing: see the table")
			}
			fmt.Println("all instances are ready")
			return nil
		},
	}
}

func orDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}
