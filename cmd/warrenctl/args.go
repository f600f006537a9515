package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsAnywhere reorders a command line so that flags may follow the
// arguments, as kubectl and docker allow ("warrenctl list queues --format
// json"). urfave/cli v2 parses each level with Go's flag package, which stops
// at the first argument, and offers no option to do otherwise (urfave/cli
// issues #427 and #976), so the line is rewritten into the form it parses:
//
//	warrenctl GLOBAL-FLAGS cmd CMD-FLAGS sub SUB-FLAGS [--] ARGS
//
// A flag belongs to the deepest command named so far that defines it, else
// to the application: a command's flags may appear anywhere after its name,
// global flags anywhere. A flag that takes a value takes the next word
// whatever it looks like ("publish --routing-key -x" still works), "--" ends
// the flags (what follows is arguments, even if it starts with '-'), and a
// lone "-" is an argument (stdin). Words that name no known flag are left
// where urfave/cli reports them ("flag provided but not defined"). --help
// (or -h) anywhere is the help of the command named, and the arguments are
// dropped (urfave/cli would take an argument for a help topic).
// A flag that wants a value at the end of the line is a usage error here:
// moved before the arguments, it would take the first of them.
func flagsAnywhere(app *cli.App, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	type level struct {
		name  string // as written
		flags []cli.Flag
		words []string // this level's flags, as written
		subs  []*cli.Command
	}
	levels := []*level{{flags: app.Flags, subs: app.Commands}}
	var positional []string
	var help string
	needDashes := false
	for i := 1; i < len(args); i++ {
		w := args[i]
		if w == "--" {
			for _, a := range args[i+1:] {
				positional = append(positional, a)
				needDashes = needDashes || isFlagWord(a)
			}
			break
		}
		if !isFlagWord(w) {
			last := levels[len(levels)-1]
			if len(positional) == 0 {
				if c := findCommand(last.subs, w); c != nil {
					levels = append(levels, &level{name: w, flags: c.Flags, subs: c.Subcommands})
					continue
				}
			}
			positional = append(positional, w)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
		owner, f := levels[len(levels)-1], cli.Flag(nil)
		for j := len(levels) - 1; j >= 0 && f == nil; j-- {
			if f = findFlag(levels[j].flags, name); f != nil {
				owner = levels[j]
			}
		}
		if f == nil && hasName(cli.HelpFlag, name) {
			help = w
			continue
		}
		owner.words = append(owner.words, w)
		if f != nil && flagTakesValue(f) && !hasValue {
			if i+1 == len(args) {
				return nil, usagef("flag needs an argument: %s", w)
			}
			i++
			owner.words = append(owner.words, args[i])
		}
	}
	out := []string{args[0]}
	for _, l := range levels {
		if l.name != "" {
			out = append(out, l.name)
		}
		out = append(out, l.words...)
	}
	if help != "" {
		return append(out, help), nil
	}
	if needDashes {
		out = append(out, "--")
	}
	return append(out, positional...), nil
}

// isFlagWord: "-x", "--x", "--x=v"; not "-" (stdin) nor "--" (end of flags).
func isFlagWord(w string) bool { return len(w) > 1 && w[0] == '-' && w != "--" }

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if hasName(f, name) {
			return f
		}
	}
	return nil
}

func hasName(f cli.Flag, name string) bool {
	for _, n := range f.Names() {
		if n == name {
			return true
		}
	}
	return false
}

// flagTakesValue: every flag type but BoolFlag takes a value; a flag type
// that does not say is assumed to (so its value is not taken for an
// argument).
func flagTakesValue(f cli.Flag) bool {
	if v, ok := f.(interface{ TakesValue() bool }); ok {
		return v.TakesValue()
	}
	return true
}
