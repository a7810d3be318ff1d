package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/comfy-workshop/workshop/internal/cli"
	"github.com/comfy-workshop/workshop/internal/words"
	"github.com/comfy-workshop/workshop/store"
)

func backupCommand() *cli.Command {
	r := newRemote("backup")
	force := r.fs.Bool("force", false, "replace FILE when it exists")
	return r.command(&cli.Command{
		Name: "backup", Args: "FILE", MinArgs: 1, MaxArgs: 1,
		Short: "copy a running server's store to FILE, consistently, while it serves",
		Run: func(ctx context.Context, args []string) error {
			dst := args[0]
			if _, err := os.Lstat(dst); err == nil && !*force {
				return usagef("%s exists: give another file, or --force to replace it", dst)
			}
			f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
			if err != nil {
				return err
			}
			tmp := f.Name()
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
			if err := place(tmp, dst, *force); err != nil {
				return err
			}
			fi, _ := os.Stat(dst)
			fmt.Printf("backup written to %s (%d bytes, schema %d)\n", dst, fi.Size(), version)
			return nil
		},
	})
}

// place moves a finished file to dst; without replace it never overwrites
// a file, even one created while the backup ran.
func place(tmp, dst string, replace bool) error {
	if replace {
		return os.Rename(tmp, dst)
	}
	err := os.Link(tmp, dst)
	if errors.Is(err, fs.ErrExist) {
		return usagef("%s appeared while the backup ran: give another file, or --force to replace it", dst)
	}
	if err != nil { // a file system without hard links
		if _, serr := os.Lstat(dst); serr == nil {
			return usagef("%s appeared while the backup ran: give another file, or --force to replace it", dst)
		}
		return os.Rename(tmp, dst)
	}
	return nil
}

func restoreCommand() *cli.Command {
	fset := flag.NewFlagSet("restore", flag.ContinueOnError)
	data := fset.String("data", "", "the data `directory` of the stopped server (what its --data was)")
	return &cli.Command{
		Name: "restore", Args: "FILE", MinArgs: 1, MaxArgs: 1,
		Short:   "replace a stopped server's store with a backup (the old one is kept beside it)",
		FlagSet: fset, Env: "WORKSHOP", EnvFlags: []string{"data"},
		Run: func(ctx context.Context, args []string) error {
			if *data == "" {
				return usagef("give --data DIR: the data directory of the stopped server (its --data, or WORKSHOP_DATA)")
			}
			if fi, err := os.Stat(*data); err != nil || !fi.IsDir() {
				return usagef("--data %s is not a directory (create it first to restore into a new server)", *data)
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

// age is a duration flag that knows whether it was given.
type age struct {
	d   time.Duration
	set bool
}

func (a *age) String() string {
	if !a.set {
		return ""
	}
	return a.d.String()
}

func (a *age) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration like 72h or 30m")
	}
	a.d, a.set = d, true
	return nil
}

// pruneResult is POST /api/prune's answer.
type pruneResult struct {
	DryRun bool      `json:"dry_run"`
	Before time.Time `json:"before"`
	Jobs   int       `json:"jobs"`
	Inputs int       `json:"inputs"`
}

func pruneCommand() *cli.Command {
	r := newRemote("prune")
	var older age
	r.fs.Var(&older, "older-than", "delete finished jobs created longer than `D` ago (e.g. 72h), their outputs, and uploads as old")
	all := r.fs.Bool("all", false, "delete every finished job, its outputs, and every upload")
	dryRun := r.fs.Bool("dry-run", false, "only count what would be deleted")
	yes := r.fs.Bool("yes", false, "do not ask for confirmation")
	return r.command(&cli.Command{
		Name: "prune", Short: "clear old jobs and files on a running server, for the next group",
		Long: "Deletes finished jobs (completed, failed, cancelled) with their outputs, and participants' uploads,\n" +
			"on a running server. Pending and running jobs stay. It counts first and asks before deleting\n" +
			"(--yes skips the question; without a terminal, --yes is needed).",
		Run: func(ctx context.Context, _ []string) error {
			switch {
			case older.set && *all:
				return usagef("give --older-than or --all, not both")
			case !older.set && !*all:
				return usagef("say what to delete: --older-than D (e.g. 72h), or --all for every finished job")
			case older.set && older.d <= 0:
				return usagef("--older-than %s: want a positive age like 72h (--all deletes every finished job)", older.d)
			}
			req := map[string]any{"older_than": older.d.String(), "dry_run": true}
			age, asOld := " created over "+older.d.String()+" ago", " as old"
			if *all {
				req["older_than"], age, asOld = "0s", "", ""
			}
			var count pruneResult
			if err := r.do(ctx, "POST", "/api/prune", req, &count); err != nil {
				return err
			}
			fmt.Printf("%s has %s%s (with their outputs) and %s%s\n", r.server,
				words.Plural(count.Jobs, "finished job"), age, words.Plural(count.Inputs, "upload"), asOld)
			if *dryRun {
				fmt.Println("dry run: nothing deleted")
				return nil
			}
			if count.Jobs == 0 && count.Inputs == 0 {
				fmt.Println("nothing to delete")
				return nil
			}
			if !*yes {
				if err := confirm(os.Stdin, "Delete them? This cannot be undone. [y/N] "); err != nil {
					return err
				}
			}
			// The same cutoff as counted: jobs finished since are not taken.
			var done pruneResult
			if err := r.do(ctx, "POST", "/api/prune", map[string]any{"before": count.Before}, &done); err != nil {
				return err
			}
			fmt.Printf("deleted %s with their outputs, and %s\n", words.Plural(done.Jobs, "finished job"), words.Plural(done.Inputs, "upload"))
			return nil
		},
	})
}

// confirm asks a yes/no question on the terminal; without one it refuses.
func confirm(in *os.File, question string) error {
	if !term.IsTerminal(int(in.Fd())) {
		return usagef("not confirmed: add --yes to delete without a terminal to ask on (or --dry-run to count only)")
	}
	fmt.Print(question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return cli.ExitError{Code: cli.ExitFailure, Err: errors.New("not confirmed: nothing deleted")}
}

func preflightCommand() *cli.Command {
	r := newRemote("preflight")
	return r.command(&cli.Command{
		Name:  "preflight",
		Short: "before the room fills: run a test graph on every GPU instance and check every workshop workflow's nodes and models",
		Run: func(ctx context.Context, _ []string) error {
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
	})
}

func orDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}
