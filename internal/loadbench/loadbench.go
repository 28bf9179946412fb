// Package loadbench is Folio's load benchmark, behind `folio bench`: it starts the
// book and author services as their own OS processes on this machine, seeds them
// through their APIs, and drives each endpoint at its maximum rate with vegeta,
// comparing every figure with a trivial HTTP server (the "ceiling") measured the
// same way on the same machine.
package loadbench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"folio/internal/localbuild"
)

// CeilingEnv is the environment variable that turns Run into the ceiling server:
// Run starts the ceiling by running the current executable again, with its own
// arguments and CeilingEnv set to the loopback address to serve on.
const CeilingEnv = "FOLIO_BENCH_CEILING_ADDR"

// settings are the flags of Run.
type settings struct {
	duration time.Duration
	warmup   time.Duration
	workers  int
	authors  int
	books    int
	keep     bool
}

// Run runs the load benchmark with the flags in args (without the program and
// subcommand names) and prints its report to stdout:
//
//	-duration  how long each endpoint is measured (10s)
//	-warmup    how long each endpoint is driven, unmeasured, before that (2s)
//	-workers   concurrent connections of the load generator (64)
//	-authors   authors to seed (200)
//	-books     books to seed, spread over 20 genres (5000)
//	-keep      keep the temporary directory with the databases and the logs
//
// It builds (or finds beside the running executable) the book and author programs,
// starts each as its own process with a fresh SQLite database and its production
// defaults, seeds them through their HTTP APIs, then measures, one at a time and in
// closed loop (each worker sends its next request when the previous one is
// answered): the ceiling, GET /books/{id}, GET /books?genre=X&limit=20,
// GET /authors/books?genre=X and POST /books. The processes are stopped before Run
// returns, on error and when ctx ends too. Targets are reported as met or not; a
// missed target is not an error.
//
// The ceiling is a minimal net/http server that answers every request with one
// fixed book-sized JSON document. So that it runs as a separate process, as the
// services do, Run starts it by executing os.Executable() again with the same
// arguments (os.Args[1:]) and the environment variable CeilingEnv
// (FOLIO_BENCH_CEILING_ADDR) set to a loopback address. When Run finds CeilingEnv
// set, it serves the ceiling on that address and does nothing else, returning only
// when ctx ends. A program that calls Run must therefore route those same
// arguments back to Run (cmd/folio does: the child is `folio bench ...`), and a
// test binary that calls Run must do it from TestMain.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	if addr := os.Getenv(CeilingEnv); addr != "" {
		return serveCeiling(ctx, addr)
	}
	s, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return run(ctx, s, stdout)
}

func parseFlags(args []string, out io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "how long each endpoint is measured")
	fs.DurationVar(&s.warmup, "warmup", 2*time.Second, "how long each endpoint is driven, unmeasured, before it is measured")
	fs.IntVar(&s.workers, "workers", 64, "concurrent connections of the load generator (closed loop)")
	fs.IntVar(&s.authors, "authors", 200, "authors to seed")
	fs.IntVar(&s.books, "books", 5000, "books to seed, spread evenly over 20 genres")
	fs.BoolVar(&s.keep, "keep", false, "keep the temporary directory with the databases and the service logs")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: folio bench [flags]\n\nStarts the book and author services with fresh databases, seeds them, and measures their endpoints at maximum rate.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	switch {
	case fs.NArg() > 0:
		return s, fmt.Errorf("bench takes flags only, not %q", fs.Args())
	case s.duration <= 0:
		return s, errors.New("-duration must be positive")
	case s.warmup < 0:
		return s, errors.New("-warmup must not be negative")
	case s.workers < 1:
		return s, errors.New("-workers must be at least 1")
	case s.authors < 1:
		return s, errors.New("-authors must be at least 1")
	case s.books < 1:
		return s, errors.New("-books must be at least 1")
	}
	return s, nil
}

// run is Run for the benchmark proper.
func run(ctx context.Context, s settings, stdout io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "folio-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if s.keep {
			fmt.Fprintf(stdout, "\nkept %s (databases, and service logs in *.log)\n", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("bench: remove %s: %w", dir, rerr)
		}
	}()

	fmt.Fprintln(stdout, "Folio load benchmark")
	fmt.Fprintf(stdout, "command:  %s\n", commandLine())
	fmt.Fprintf(stdout, "machine:  %s\n", describeMachine())
	fmt.Fprintf(stdout, "settings: %d workers (closed loop, max rate), %s per endpoint after %s warm-up; %d authors, %d books\n",
		s.workers, s.duration, s.warmup, s.authors, s.books)

	progs, err := localbuild.Programs(ctx, filepath.Join(dir, "bin"), "book", "author")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	sys, err := startSystem(ctx, dir, progs)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if serr := sys.stop(); serr != nil && err == nil {
			err = fmt.Errorf("bench: %w", serr)
		}
	}()

	data, err := seed(ctx, sys.bookURL, sys.authorURL, s.authors, s.books)
	if err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	fmt.Fprintf(stdout, "seeding:  %s\n", data.summary())
	fmt.Fprintf(stdout, "genre X:  %q, which holds %d books\n", data.hotGenre, data.hotCount)

	results, err := measureAll(ctx, s, sys, data, stdout)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	report(stdout, results)
	return nil
}

// commandLine returns the command line of this process, with the program's base name.
func commandLine() string {
	if len(os.Args) == 0 {
		return "?"
	}
	return strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " ")
}
