package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tool is a binary with a group of two commands, as the tests run it.
type tool struct {
	server, name string
	force        bool
	comfy        List
	got          []string
}

func (tl *tool) root() *Command {
	rename := flag.NewFlagSet("rename", flag.ContinueOnError)
	rename.StringVar(&tl.server, "server", "http://127.0.0.1:8080", "the server's `URL`")
	rename.BoolVar(&tl.force, "force", false, "do it anyway")
	rename.Var(&tl.comfy, "comfy", "an instance `URL`, repeatable")
	record := func(_ context.Context, args []string) error {
		tl.got = args
		return nil
	}
	fail := func(context.Context, []string) error { return errors.New("it broke") }
	return &Command{
		Name: "tool", Short: "a tool",
		Subcommands: []*Command{{
			Name: "seats", Short: "seats",
			Subcommands: []*Command{{
				Name: "rename", Args: "SEAT NAME", MinArgs: 2, MaxArgs: -1, Short: "rename a seat",
				FlagSet: rename, Env: "TOOL", EnvFlags: []string{"server", "comfy"}, Run: record,
			}, {
				Name: "list", Short: "list seats", Run: record,
			}},
		}, {
			Name: "broken", Short: "fails", Run: fail,
		}},
	}
}

func runTool(env map[string]string, args ...string) (*tool, int, string, string) {
	tl := &tool{}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), tl.root(), args, IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	return tl, code, stdout.String(), stderr.String()
}

func TestFlagsAnywhere(t *testing.T) {
	tl, code, _, stderr := runTool(nil, "seats", "rename", "3", "--server", "http://s:1", "Alice", "--force")
	if code != 0 || strings.Join(tl.got, "|") != "3|Alice" || tl.server != "http://s:1" || !tl.force {
		t.Errorf("exit %d, args %q, server %q, force %v, %s", code, tl.got, tl.server, tl.force, stderr)
	}
	// After "--" everything is an argument.
	tl, code, _, _ = runTool(nil, "seats", "rename", "3", "--", "--server", "x")
	if code != 0 || strings.Join(tl.got, "|") != "3|--server|x" || tl.server != "http://127.0.0.1:8080" {
		t.Errorf("after --: exit %d, args %q, server %q", code, tl.got, tl.server)
	}
}

func TestEnvironment(t *testing.T) {
	env := map[string]string{"TOOL_SERVER": "http://env:1", "TOOL_FORCE": "true", "TOOL_COMFY": "http://a, http://b"}
	tl, code, _, stderr := runTool(env, "seats", "rename", "3", "Bo")
	if code != 0 || tl.server != "http://env:1" || tl.force || strings.Join(tl.comfy, "|") != "http://a|http://b" {
		t.Errorf("exit %d, server %q, force %v (not in EnvFlags), comfy %q, %s", code, tl.server, tl.force, tl.comfy, stderr)
	}
	tl, _, _, _ = runTool(env, "seats", "rename", "--server", "http://flag:1", "--comfy", "http://c", "3", "Bo")
	if tl.server != "http://flag:1" || strings.Join(tl.comfy, "|") != "http://c" {
		t.Errorf("a flag wins over the environment: %q %q", tl.server, tl.comfy)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"seats", "rename", "3", "--bogus"}, 2, "tool seats rename: flag provided but not defined: -bogus\nRun 'tool seats rename --help' for usage.\n"},
		{[]string{"seats", "rename", "3"}, 2, "tool seats rename: want SEAT NAME, got 1 argument: \"3\"\nRun 'tool seats rename --help' for usage.\n"},
		{[]string{"seats", "rename"}, 2, "tool seats rename: missing SEAT NAME\n"},
		{[]string{"seats", "list", "extra"}, 2, "tool seats list: takes no arguments, got \"extra\"\n"},
		{[]string{"seats", "lst"}, 2, "tool seats: unknown command \"lst\"\n"},
		{[]string{"seats", "--server", "x", "list"}, 2, "give the command first"},
		{[]string{"broken"}, 1, "tool broken: it broke\n"},
	}
	for _, c := range cases {
		_, code, stdout, stderr := runTool(nil, c.args...)
		if code != c.code || !strings.HasPrefix(stderr, c.want) && !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want exit %d, %q", c.args, code, stderr, stdout, c.code, c.want)
		}
		if strings.Contains(stderr, "Usage:") {
			t.Errorf("%q: the error comes with the whole help:\n%s", c.args, stderr)
		}
	}
	// Without a command: the help, as an error.
	if _, code, _, stderr := runTool(nil); code != 2 || !strings.Contains(stderr, "Usage: tool <command>") {
		t.Errorf("no command: exit %d, %q", code, stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	_, code, stdout, stderr := runTool(nil, "seats", "rename", "--help")
	for _, want := range []string{"Usage: tool seats rename SEAT NAME [flags]", "Rename a seat.", "--server URL", "(default http://127.0.0.1:8080)",
		"($TOOL_SERVER)", "--comfy URL", "-h, --help"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, stdout)
		}
	}
	if code != 0 || stderr != "" || strings.Contains(stdout, "$TOOL_FORCE") {
		t.Errorf("help: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	_, code, stdout, _ = runTool(nil, "seats", "-h")
	if code != 0 || !strings.Contains(stdout, "Usage: tool seats <command>") || !strings.Contains(stdout, "rename  rename a seat") {
		t.Errorf("group help: exit %d\n%s", code, stdout)
	}
	_, code, stdout, _ = runTool(nil, "help", "seats", "rename")
	if code != 0 || !strings.HasPrefix(stdout, "Usage: tool seats rename SEAT NAME") {
		t.Errorf("help seats rename: exit %d\n%s", code, stdout)
	}
	_, code, stdout, _ = runTool(nil, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "tool ") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
	// A binary without commands has --version among its flags.
	one := &Command{Name: "one", FlagSet: flag.NewFlagSet("one", flag.ContinueOnError), Run: func(context.Context, []string) error { return nil }}
	var out bytes.Buffer
	if code := Run(context.Background(), one, []string{"--version"}, IO{Stdout: &out, Stderr: &out}); code != 0 || !strings.HasPrefix(out.String(), "one ") {
		t.Errorf("one --version: exit %d, %q", code, out.String())
	}
}

func TestExitError(t *testing.T) {
	c := &Command{Name: "x", Run: func(context.Context, []string) error { return ExitError{Code: 3} }}
	var out bytes.Buffer
	if code := Run(context.Background(), c, nil, IO{Stdout: &out, Stderr: &out}); code != 3 || out.Len() != 0 {
		t.Errorf("exit %d, %q", code, out.String())
	}
}

func TestConfigFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("seats: 7\nmode: fifo\n"), 0o600)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	seats := fs.Int("seats", 1, "")
	mode := fs.String("mode", "rr", "")
	fs.String("config", "", "")
	env := map[string]string{"S_MODE": "env"}
	_, err := Parse(fs, []string{"--config", cfg}, Options{Env: "S", Config: "config", Getenv: func(k string) string { return env[k] }})
	if err != nil || *seats != 7 || *mode != "env" {
		t.Errorf("config below the environment: %v seats %d mode %q", err, *seats, *mode)
	}
	fs.Set("config", filepath.Join(t.TempDir(), "missing.yaml"))
	if _, err := Parse(fs, nil, Options{Config: "config"}); err == nil {
		t.Error("a missing config file is accepted")
	}
}

func TestBadEnvironmentValue(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Int("seats", 1, "")
	_, err := Parse(fs, nil, Options{Env: "W", Getenv: func(string) string { return "many" }})
	var ue UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "$W_SEATS") {
		t.Errorf("bad value from the environment: %v", err)
	}
}
