package cli

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

const (
	helpWidth     = 80
	maxFlagColumn = 24 // a longer flag gets its text on the next line
)

// WriteHelp writes the command's help: usage line, description, commands
// or flags (with their defaults and environment variables), footer.
func (c *Command) WriteHelp(w io.Writer) {
	var b strings.Builder
	usage := c.Path()
	if len(c.Subcommands) > 0 {
		usage += " <command>"
	}
	if c.Args != "" {
		usage += " " + c.Args
	}
	if c.hasFlags() {
		usage += " [flags]"
	}
	fmt.Fprintf(&b, "Usage: %s\n", usage)
	if text := firstOf(c.Long, sentence(c.Short)); text != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(text, "\n"))
	}
	if len(c.Subcommands) > 0 {
		b.WriteString("\nCommands:\n")
		width := 0
		for _, s := range c.Subcommands {
			width = max(width, len(s.Name))
		}
		for _, s := range c.Subcommands {
			writeItem(&b, s.Name, s.Short, width)
		}
	}
	c.writeFlags(&b)
	if len(c.Subcommands) > 0 {
		fmt.Fprintf(&b, "\nRun '%s <command> --help' for a command's flags.\n", c.Path())
	}
	if c.Footer != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(c.Footer, "\n"))
	}
	io.WriteString(w, b.String())
}

// sentence makes a one-line help a sentence: capital first, full stop.
func sentence(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (c *Command) hasFlags() bool {
	n := 0
	if c.FlagSet != nil {
		c.FlagSet.VisitAll(func(*flag.Flag) { n++ })
	}
	return n > 0 || c.Run != nil
}

// flagLine is one flag as the help shows it.
type flagLine struct{ name, text string }

func (c *Command) writeFlags(b *strings.Builder) {
	lines := map[string]flagLine{}
	switch {
	case c.Run != nil:
	case c.parent == nil: // a binary of commands: only its own two flags
		lines["version"] = flagLine{"--version", "print the version and exit"}
	default:
		return
	}
	if c.FlagSet != nil {
		o := c.parseOptions(nil)
		c.FlagSet.VisitAll(func(f *flag.Flag) { lines[f.Name] = describe(f, o.envOf(f.Name)) })
	}
	lines["help"] = flagLine{"-h, --help", "show this help"}
	grouped := map[string]bool{}
	for _, s := range c.Sections {
		for _, f := range s.Flags {
			grouped[f] = true
		}
	}
	var plain []string
	for name := range lines {
		if !grouped[name] {
			plain = append(plain, name)
		}
	}
	slices.Sort(plain)
	width := 0
	for _, l := range lines {
		if len(l.name) <= maxFlagColumn {
			width = max(width, len(l.name))
		}
	}
	b.WriteString("\nFlags:\n")
	for _, name := range plain {
		writeItem(b, lines[name].name, lines[name].text, width)
	}
	for _, s := range c.Sections {
		fmt.Fprintf(b, "\n%s:\n", s.Title)
		if s.Text != "" {
			for _, l := range wrap(s.Text, helpWidth-2) {
				fmt.Fprintf(b, "  %s\n", l)
			}
		}
		for _, name := range s.Flags {
			if l, ok := lines[name]; ok {
				writeItem(b, l.name, l.text, width)
			}
		}
	}
}

// describe renders a flag: "--server URL", its usage, default and
// environment variable. A word in backquotes in the usage names the value.
func describe(f *flag.Flag, env string) flagLine {
	kind, text := flag.UnquoteUsage(f)
	name := "--" + f.Name
	if len(f.Name) == 1 {
		name = "-" + f.Name
	}
	if isBool(f) {
		kind = ""
	} else if kind == "" || kind == "string" || kind == "value" {
		kind = "VALUE"
	} else if kind == "duration" {
		kind = "D"
	} else if kind == "int" || kind == "uint" || kind == "float" {
		kind = "N"
	}
	if kind != "" {
		name += " " + strings.ToUpper(kind)
	}
	if def := f.DefValue; def != "" && def != "0" && def != "false" && def != "0s" && def != "[]" {
		text += " (default " + def + ")"
	}
	if env != "" {
		text += " ($" + env + ")"
	}
	return flagLine{name, text}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// writeItem writes "  name   text", the text wrapped and indented under
// itself; a name wider than the column puts the text on the next line.
func writeItem(b *strings.Builder, name, text string, width int) {
	indent := 2 + width + 2
	lines := wrap(text, helpWidth-indent)
	if len(name) > width {
		fmt.Fprintf(b, "  %s\n", name)
	} else if len(lines) > 0 {
		fmt.Fprintf(b, "  %-*s  %s\n", width, name, lines[0])
		lines = lines[1:]
	} else {
		fmt.Fprintf(b, "  %s\n", name)
	}
	for _, l := range lines {
		fmt.Fprintf(b, "%s%s\n", strings.Repeat(" ", indent), l)
	}
}

// wrap breaks text into lines of at most width characters at spaces;
// newlines in text are kept.
func wrap(text string, width int) []string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			switch {
			case line == "":
				line = word
			case len(line)+1+len(word) > width:
				out = append(out, line)
				line = word
			default:
				line += " " + word
			}
		}
		out = append(out, line)
	}
	return out
}
