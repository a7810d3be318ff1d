// Package cli is the command line of every binary of the workshop: flags
// before, between or after the positional arguments, defaults from the
// environment (and a YAML file), one help style, argument counts checked,
// and errors as one line that points at --help.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffyaml"

	"github.com/comfy-workshop/workshop/internal/version"
	"github.com/comfy-workshop/workshop/internal/words"
)

// Exit statuses shared by every binary.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2 // called wrongly: bad flag, bad argument count, bad value
)

// Command is one command of a binary: the binary itself, a group of
// subcommands, or a subcommand.
type Command struct {
	Name   string // as typed: "gpu-agent", "seats", "rename"
	Args   string // the positional arguments in the usage line: "SEAT NAME"
	Short  string // one line, in the parent's list of commands
	Long   string // what the command does, in the help (Short when empty)
	Footer string // after the flags: exit statuses, examples

	// MinArgs and MaxArgs bound the positional arguments; MaxArgs < 0
	// takes any number.
	MinArgs, MaxArgs int

	// FlagSet holds the command's flags; nil: none.
	FlagSet *flag.FlagSet
	// Sections group flags in the help, after the ungrouped ones.
	Sections []Section
	// Env makes a flag --some-flag default to $ENV_SOME_FLAG; with
	// EnvFlags, only the flags named there.
	Env      string
	EnvFlags []string
	// Config names a flag whose value is a YAML file of flag values, below
	// the command line and the environment.
	Config string

	Run         func(ctx context.Context, args []string) error
	Subcommands []*Command

	parent *Command
}

// Section is a group of flags in the help, with an introduction.
type Section struct {
	Title string
	Text  string
	Flags []string
}

// IO is where a command reads its environment and writes its help and
// errors.
type IO struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Std is the process's own.
func Std() IO { return IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv} }

// UsageError is an error in how a command was called: exit status 2, and
// the message points at --help.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// ExitError ends the binary with Code; Err (if any) is printed.
type ExitError struct {
	Code int
	Err  error
}

func (e ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e ExitError) Unwrap() error { return e.Err }

// Path is the command as typed: "workshop seats rename".
func (c *Command) Path() string {
	if c.parent == nil {
		return c.Name
	}
	return c.parent.Path() + " " + c.Name
}

func (c *Command) root() *Command {
	for c.parent != nil {
		c = c.parent
	}
	return c
}

// Run runs the command that args name under root and returns the exit
// status. --help prints the help of the command named so far (stdout,
// status 0); --version at the top prints the version.
func Run(ctx context.Context, root *Command, args []string, o IO) int {
	link(root)
	cmd, rest, err := find(root, args)
	if err == nil {
		err = cmd.run(ctx, rest, o)
	}
	return report(cmd, err, o)
}

func link(c *Command) {
	for _, s := range c.Subcommands {
		s.parent = c
		link(s)
	}
}

// find walks down the subcommands named by the first arguments.
func find(c *Command, args []string) (*Command, []string, error) {
	for len(c.Subcommands) > 0 && len(args) > 0 {
		a := args[0]
		switch {
		case isHelp(a):
			return c, nil, flag.ErrHelp
		case c.parent == nil && isVersion(a):
			return c, nil, errVersion
		case a == "help": // "workshop help seats rename"
			for _, name := range args[1:] {
				if next := c.sub(name); next != nil {
					c = next
				}
			}
			return c, nil, flag.ErrHelp
		case strings.HasPrefix(a, "-"):
			if c.FlagSet == nil {
				return c, nil, Usagef("%s is not a command: give the command first, then its flags", a)
			}
			return c, args, nil
		}
		next := c.sub(a)
		if next == nil {
			return c, nil, Usagef("unknown command %q", a)
		}
		c, args = next, args[1:]
	}
	return c, args, nil
}

func (c *Command) sub(name string) *Command {
	for _, s := range c.Subcommands {
		if s.Name == name {
			return s
		}
	}
	return nil
}

var errVersion = errors.New("version asked")

func isHelp(a string) bool {
	return a == "-h" || a == "-help" || a == "--help"
}

func isVersion(a string) bool { return a == "-version" || a == "--version" }

func (c *Command) run(ctx context.Context, args []string, o IO) error {
	if c.Run == nil {
		if len(args) == 0 {
			return errNoCommand
		}
		return Usagef("unknown command %q", args[0])
	}
	if c.parent == nil && c.FlagSet != nil && c.FlagSet.Lookup("version") == nil {
		c.FlagSet.Bool("version", false, "print the version and exit")
	}
	pos, err := Parse(c.FlagSet, args, c.parseOptions(o.Getenv))
	if err != nil {
		return err
	}
	if c.parent == nil && c.FlagSet != nil {
		if v := c.FlagSet.Lookup("version"); v != nil && v.Value.String() == "true" {
			return errVersion
		}
	}
	if err := c.checkArgs(pos); err != nil {
		return err
	}
	return c.Run(ctx, pos)
}

var errNoCommand = errors.New("no command given")

func (c *Command) parseOptions(getenv func(string) string) Options {
	return Options{Env: c.Env, EnvFlags: c.EnvFlags, Getenv: getenv, Config: c.Config}
}

func (c *Command) checkArgs(pos []string) error {
	n := len(pos)
	if n >= c.MinArgs && (c.MaxArgs < 0 || n <= c.MaxArgs) {
		return nil
	}
	if c.MaxArgs == 0 {
		return Usagef("takes no arguments, got %s", quoteAll(pos))
	}
	if n == 0 {
		return Usagef("missing %s", c.Args)
	}
	return Usagef("want %s, got %s: %s", c.Args, words.Plural(n, "argument"), quoteAll(pos))
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, " ")
}

// report prints what an error needs and returns the exit status.
func report(c *Command, err error, o IO) int {
	var ee ExitError
	var ue UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		c.WriteHelp(o.Stdout)
		return ExitOK
	case errors.Is(err, errVersion):
		fmt.Fprintln(o.Stdout, c.root().Name, version.String())
		return ExitOK
	case errors.Is(err, errNoCommand):
		c.WriteHelp(o.Stderr)
		return ExitUsage
	case errors.As(err, &ee):
		if ee.Err != nil {
			fmt.Fprintf(o.Stderr, "%s: %v\n", c.Path(), ee.Err)
		}
		return ee.Code
	case errors.As(err, &ue):
		fmt.Fprintf(o.Stderr, "%s: %v\nRun '%s --help' for usage.\n", c.Path(), err, c.Path())
		return ExitUsage
	}
	fmt.Fprintf(o.Stderr, "%s: %v\n", c.Path(), err)
	return ExitFailure
}

// Options say where flags not on the command line come from.
type Options struct {
	Env      string   // prefix of the environment variables
	EnvFlags []string // only these flags (all when empty)
	Getenv   func(string) string
	Config   string // the flag naming a YAML file of flag values
}

// EnvName is the environment variable of a flag under prefix:
// "WORKSHOP", "admin-token" → "WORKSHOP_ADMIN_TOKEN".
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

func (o Options) envOf(name string) string {
	if o.Env == "" || name == "help" || name == "version" {
		return ""
	}
	if len(o.EnvFlags) > 0 {
		found := false
		for _, f := range o.EnvFlags {
			found = found || f == name
		}
		if !found {
			return ""
		}
	}
	return EnvName(o.Env, name)
}

// Parse sets fs's flags from args, wherever they stand among the
// positional arguments (which it returns; "--" ends the flags), then every
// flag not given from its environment variable, then from the config file.
// A parse error is a UsageError; -h and --help give flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string, o Options) ([]string, error) {
	if fs == nil {
		fs = flag.NewFlagSet("", flag.ContinueOnError)
	}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	rest := args
	for len(rest) > 0 {
		before := rest
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, UsageError{err}
		}
		rest = fs.Args()
		if used := len(before) - len(rest); used > 0 && before[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) > 0 {
			pos = append(pos, rest[0])
			rest = rest[1:]
		}
	}
	if err := o.applyEnv(fs); err != nil {
		return nil, err
	}
	if o.Config != "" {
		if err := ff.Parse(fs, []string{}, ff.WithConfigFileFlag(o.Config), ff.WithConfigFileParser(ffyaml.Parser)); err != nil {
			return nil, UsageError{fmt.Errorf("--%s: %w", o.Config, err)}
		}
	}
	return pos, nil
}

// Splitter is a repeatable flag's value: its environment variable is a
// comma-separated list.
type Splitter interface{ SplitEnv() }

func (o Options) applyEnv(fs *flag.FlagSet) error {
	if o.Env == "" || o.Getenv == nil {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		key := o.envOf(f.Name)
		if err != nil || given[f.Name] || key == "" {
			return
		}
		v := strings.TrimSpace(o.Getenv(key))
		if v == "" {
			return
		}
		values := []string{v}
		if _, ok := f.Value.(Splitter); ok {
			values = nil
			for part := range strings.SplitSeq(v, ",") {
				if part = strings.TrimSpace(part); part != "" {
					values = append(values, part)
				}
			}
		}
		for _, one := range values {
			if e := fs.Set(f.Name, one); e != nil {
				err = Usagef("$%s=%q is not a valid --%s: %v", key, v, f.Name, e)
				return
			}
		}
	})
	return err
}

// List is a repeatable string flag (--comfy A --comfy B); from the
// environment it is a comma-separated list.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set adds one value.
func (l *List) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// SplitEnv marks List as a Splitter.
func (l *List) SplitEnv() {}
