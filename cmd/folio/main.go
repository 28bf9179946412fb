// Command folio runs the whole Folio system on one machine: `folio up` starts every
// service as its own OS process, loads the demo catalogue and supervises the services
// until Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"folio/internal/devtools/loadbench"
	"folio/internal/platform/release"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once the first signal has started a clean stop, a second one ends folio at once;
	// the services die with it (see package supervise).
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "folio:", err)
		os.Exit(1)
	}
}

// command is one subcommand of folio.
type command struct {
	name, summary string
	// flags returns the command's flag set, for help.
	flags func() *flag.FlagSet
	run   func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error
}

func commands() []command {
	return []command{
		{name: "up", summary: "start every service and the gateway as their own processes, create the demo accounts and load the demo catalogue on first run, and keep them running until Ctrl-C",
			flags: func() *flag.FlagSet { fs, _ := upFlags(); return fs },
			run:   up},
		{name: "bench", summary: "start the services on fresh databases, seed 200 authors and 5,000 books, and measure the main endpoints against a bare net/http ceiling",
			run: func(ctx context.Context, args []string, _ func(string) string, stdout io.Writer) error {
				return loadbench.Run(ctx, args, stdout)
			}},
		{name: "nats", summary: "print the authorization block of a nats-server.conf giving each program its own nkey (seeds created in --keys-dir) and only the permissions it needs, for running Folio on your own NATS; `folio nats serve` is the NATS server folio up runs as a child process",
			flags: func() *flag.FlagSet { fs, _ := natsFlags(); return fs },
			run:   natsServerConfig},
		{name: "version", summary: "print the version, git revision and Go version of this build",
			run: func(_ context.Context, _ []string, _ func(string) string, stdout io.Writer) error {
				fmt.Fprintln(stdout, "folio", release.Get())
				return nil
			}},
		{name: "help", summary: "show this help, or one command's flags: folio help <command>"},
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 2 {
		usage(stdout)
		return errors.New("no command given")
	}
	name := args[1]
	switch name {
	case "help", "-h", "-help", "--help":
		return help(args[2:], stdout)
	}
	for _, c := range commands() {
		if c.name == name && c.run != nil {
			return c.run(ctx, args[2:], getenv, stdout)
		}
	}
	return fmt.Errorf("unknown command %q; run 'folio help' for the list", name)
}

// help serves `folio help [command]`.
func help(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] && c.flags == nil && c.run != nil {
			// The command prints its own usage for -h.
			err := c.run(context.Background(), []string{"-h"}, os.Getenv, stdout)
			if errors.Is(err, flag.ErrHelp) {
				err = nil
			}
			return err
		}
		if c.name == args[0] && c.flags != nil {
			fs := c.flags()
			commandUsage(stdout, c, fs)
			return nil
		}
	}
	return fmt.Errorf("no help for %q; run 'folio help' for the list of commands", args[0])
}

// usage writes the list of commands and the flags of each.
func usage(w io.Writer) {
	fmt.Fprint(w, "Folio runs the Folio microservices on this machine.\n\nUsage:\n  folio <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	for _, c := range commands() {
		if c.flags != nil {
			fs := c.flags()
			fmt.Fprintf(w, "\nFlags of %s:\n", c.name)
			printFlags(w, fs)
		}
	}
}

func commandUsage(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: folio %s [flags]\n\n%s%s.\n\nFlags:\n", c.name, strings.ToUpper(c.summary[:1]), c.summary[1:])
	printFlags(w, fs)
}

// printFlags lists fs's flags in the --name form the help text uses.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, text := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if typ != "" {
			name += " " + typ
		}
		fmt.Fprintf(w, "  %s\n        %s", name, text)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parseFlags parses args into fs, which reports nothing itself. It returns
// flag.ErrHelp after printing the command's usage for -h, and a one-line error for
// anything else that is wrong.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		for _, c := range commands() {
			if c.name == fs.Name() {
				commandUsage(stdout, c, fs)
			}
		}
		return flag.ErrHelp
	case err != nil:
		return fmt.Errorf("%s: %v; run 'folio help %s' for its flags", fs.Name(), err, fs.Name())
	case fs.NArg() > 0:
		return fmt.Errorf("%s takes no arguments, only flags (got %q); run 'folio help %s'", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}
