// Package loadbench is Folio's load benchmark, behind `folio bench`: it runs the
// service programs on this machine and measures them over their HTTP APIs and the
// broker, against a trivial HTTP server measured the same way (the "ceiling").
package loadbench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"folio/internal/devtools/localbuild"
)

// CeilingEnv is the environment variable that turns Run into the ceiling server:
// Run starts the ceiling by running the current executable again, with its own
// arguments and CeilingEnv set to the loopback address to serve on.
const CeilingEnv = "FOLIO_BENCH_CEILING_ADDR"

// wrkConnections is how many connections wrk opens when -workers is not given: the
// load that Folio's figures are quoted at (2 threads, 32 connections).
const wrkConnections = 32

// settings are the flags of Run.
type settings struct {
	duration time.Duration
	warmup   time.Duration
	workers  int
	authors  int
	books    int
	keep     bool

	load       string // loadVegeta or loadWrk
	wrk        string // the wrk program, with -load wrk
	wrkThreads int
	profile    string // directory for CPU profiles of each endpoint; "" for none
	match      *regexp.Regexp

	only           string // "", "endpoints", "events" or "orders"
	events         bool
	eventsBooks    int
	eventsAuthors  int
	eventsRate     int
	eventsDuration time.Duration
	rabbitmq       string // "" for none

	orders         bool
	ordersWorkers  int
	ordersDuration time.Duration
}

// Run runs the load benchmark with the flags in args (without the program and
// subcommand names) and prints its report to stdout:
//
//	-duration  how long each endpoint is measured (10s)
//	-warmup    how long each endpoint is driven, unmeasured, before that (2s)
//	-load      the endpoints' load generator: vegeta (in this process; the default) or wrk
//	-workers   concurrent connections of the load generator (64; 32 with -load wrk)
//	-wrk-threads  wrk's threads (2)
//	-match     a regexp: measure only the endpoints whose labels match it, and the ceiling
//	-profile   a directory: CPU profiles of book, author and the gateway for each endpoint, and their top functions in the report
//	-authors   authors to seed (200)
//	-books     books to seed, spread over 20 genres (5000)
//	-keep      keep the temporary directory with the databases and the logs
//	-events    measure events too (true): outbox → broker → consumer (see runEvents)
//	-only      "endpoints", "events" or "orders": measure only that part
//	-events-books, -events-authors, -events-rate, -events-duration: the events part's sizes
//	-rabbitmq  RabbitMQ URL to measure events on too ($FOLIO_BENCH_RABBITMQ_URL; none by default)
//	-orders    measure the order saga too (true): POST /orders to a final state (see runOrders)
//	-orders-workers, -orders-duration: the orders part's clients and length
//
// The services under test publish and consume their events through a NATS server
// of the benchmark's own (internal/devtools/localnats, as `folio up` runs it), which
// Run starts like the ceiling, by running its own executable again, with NATSAddrEnv
// and NATSDirEnv set; a Run that finds NATSAddrEnv set serves NATS and nothing else.
// Each set of services gets its own stream name and subject prefix.
//
// It builds (or finds beside the running executable) the book, author, auth and
// gateway programs, starts each as its own process (the services with a fresh SQLite
// database; all with their production defaults, but for the auth service's admin
// account and the gateway's rate limit, raised far above any reachable rate but
// still on), and, when an nginx binary is on PATH, nginx as a plain reverse proxy in
// front of book (its configuration written to the temporary directory; Run installs
// nothing, and says the comparison was skipped without nginx). It logs in as the
// admin through the gateway, seeds the services through their HTTP APIs with that
// token, then measures,
// one at a time and in closed loop (each worker sends its next request when the
// previous one is answered), with vegeta inside this process or, with -load wrk,
// with wrk, a program of its own started for each endpoint (measured from outside,
// as a user would; the CPU reported for the load generator is then wrk's), each
// endpoint's requests rotating over every book id or every genre: the ceiling,
// GET /books/{id} directly, directly with the admin's bearer token (which the book
// service verifies), through the gateway with the token and through nginx,
// GET /books?genre=X&limit=20, GET /authors/books?genre=X directly and through the
// gateway with the token, and POST /books directly with the token. Beside those, it
// measures REST against gRPC: GET /authors/books?genre=X again on a second author
// service that calls book over gRPC (see startAuthorGRPC), and GET /books/{id}
// against GetBook (folio.book.v1.BookService) with one load generator for both, the
// Go load client (ClientEnv), whatever -load says, since wrk speaks no gRPC. It reports the
// proxies' cost as throughput through them as a fraction of direct and the p50 and
// p99 latency added, and the cost of the book service's token verification as the
// difference between the reads with and without the token. The processes are
// stopped before Run returns, on error and when ctx ends too. Targets are reported
// as met or not; a missed target is not an error.
//
// The ceiling is a minimal net/http server that answers every request with one
// fixed book-sized JSON document. So that it runs as a separate process, as the
// services do, Run starts it by executing os.Executable() again with the same
// arguments (os.Args[1:]) and the environment variable CeilingEnv
// (FOLIO_BENCH_CEILING_ADDR) set to a loopback address. When Run finds CeilingEnv
// set, it serves the ceiling on that address (Run passes 127.0.0.1:0) and does
// nothing else, returning only when ctx ends; it writes the address it took to
// FOLIO_ADDR_FILE, as the NATS child and the Folio programs do, which is where Run
// learns every child's address: no port is picked for a child and released before
// the child binds it, but for the author service's (which book must be told before
// it starts; both start again when someone else took it) and nginx's (which cannot
// report one; it starts again on another when its port was taken). The Go load
// client is started the same way, with ClientEnv set. A program that calls Run must therefore route those same
// arguments back to Run (cmd/folio does: the child is `folio bench ...`), and a
// test binary that calls Run must do it from TestMain.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	if addr := os.Getenv(CeilingEnv); addr != "" {
		return serveCeiling(ctx, addr, os.Getenv("FOLIO_ADDR_FILE"))
	}
	if addr := os.Getenv(NATSAddrEnv); addr != "" {
		return serveNATS(ctx, addr, os.Getenv(NATSDirEnv), os.Getenv("FOLIO_ADDR_FILE"))
	}
	if spec := os.Getenv(ClientEnv); spec != "" {
		return serveClient(ctx, spec, stdout)
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
	fs.StringVar(&s.load, "load", loadVegeta, "the load generator of the endpoints: `vegeta` (in this process) or wrk (a separate process, from PATH)")
	fs.IntVar(&s.wrkThreads, "wrk-threads", 2, "with -load wrk: wrk's threads")
	fs.StringVar(&s.profile, "profile", "", "write a CPU profile of book, author and the gateway while each endpoint is measured to `dir`, and report their top functions")
	var match string
	fs.StringVar(&match, "match", "", "measure only the endpoints whose labels match this `regexp` (the ceiling is always measured)")
	fs.BoolVar(&s.keep, "keep", false, "keep the temporary directory with the databases and the service logs")
	fs.StringVar(&s.only, "only", "", "measure only `part`: endpoints, events or orders")
	fs.BoolVar(&s.events, "events", true, "measure events through outbox, broker and consumer (book.created to the author's book_count)")
	fs.IntVar(&s.eventsBooks, "events-books", 5000, "events: books written at full speed for the throughput, and again for the drain")
	fs.IntVar(&s.eventsAuthors, "events-authors", 50, "events: authors the books are spread over (at most 100: one page of GET /authors)")
	fs.IntVar(&s.eventsRate, "events-rate", 200, "events: writes per second for the latency")
	fs.DurationVar(&s.eventsDuration, "events-duration", 10*time.Second, "events: how long the latency is measured")
	fs.BoolVar(&s.orders, "orders", true, "measure the order saga end to end (POST /orders to a final state) on inventory, payment and order")
	fs.IntVar(&s.ordersWorkers, "orders-workers", 16, "orders: clients placing orders at once, each waiting for its order to be final before the next")
	fs.DurationVar(&s.ordersDuration, "orders-duration", 10*time.Second, "orders: how long orders are placed")
	fs.StringVar(&s.rabbitmq, "rabbitmq", os.Getenv("FOLIO_BENCH_RABBITMQ_URL"), "events: also measure on the RabbitMQ at this `URL` (a fresh exchange, deleted after); empty: NATS only")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: folio bench [flags]\n\nStarts the book and author services with fresh databases, seeds them, and measures their endpoints at maximum rate.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if match != "" {
		re, err := regexp.Compile(match)
		if err != nil {
			return s, fmt.Errorf("-match: %w", err)
		}
		s.match = re
	}
	switch {
	case s.load != loadVegeta && s.load != loadWrk:
		return s, fmt.Errorf("-load must be vegeta or wrk, not %q", s.load)
	case s.wrkThreads < 1:
		return s, errors.New("-wrk-threads must be at least 1")
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
	case s.only != "" && s.only != "endpoints" && s.only != "events" && s.only != "orders":
		return s, fmt.Errorf("-only must be endpoints, events or orders, not %q", s.only)
	case s.only == "events" && !s.events:
		return s, errors.New("-only events with -events=false measures nothing")
	case s.only == "orders" && !s.orders:
		return s, errors.New("-only orders with -orders=false measures nothing")
	case s.ordersWorkers < 1:
		return s, errors.New("-orders-workers must be at least 1")
	case s.ordersDuration <= 0:
		return s, errors.New("-orders-duration must be positive")
	case s.eventsBooks < 1:
		return s, errors.New("-events-books must be at least 1")
	case s.eventsAuthors < 1 || s.eventsAuthors > 100:
		return s, errors.New("-events-authors must be from 1 to 100")
	case s.eventsRate < 1:
		return s, errors.New("-events-rate must be at least 1")
	case s.eventsDuration <= 0:
		return s, errors.New("-events-duration must be positive")
	}
	if s.load == loadWrk {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["workers"] {
			s.workers = wrkConnections
		}
		if s.wrkThreads > s.workers {
			return s, errors.New("-wrk-threads must not exceed -workers, the connections wrk opens")
		}
		path, err := exec.LookPath("wrk")
		if err != nil {
			return s, errors.New("-load wrk needs the wrk program on PATH (Debian: apt-get install wrk; scripts/bench-wrk installs it)")
		}
		s.wrk = path
	}
	return s, nil
}

// selects reports whether -match lets the endpoint labelled label be measured.
func (s settings) selects(label string) bool {
	return s.match == nil || label == labelCeiling || s.match.MatchString(label)
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
	if s.only == "" || s.only == "endpoints" {
		gen := fmt.Sprintf("vegeta in this process, %d workers", s.workers)
		if s.load == loadWrk {
			gen = fmt.Sprintf("%s (a separate process), %d threads, %d connections", wrkVersion(s.wrk), s.wrkThreads, s.workers)
		}
		fmt.Fprintf(stdout, "settings: %s (closed loop, max rate), %s per endpoint after %s warm-up; %d authors, %d books\n",
			gen, s.duration, s.warmup, s.authors, s.books)
	}
	if s.events && (s.only == "" || s.only == "events") {
		fmt.Fprintf(stdout, "events:   %d books at full speed (%d workers) then %d more for the drain, over %d authors; %d writes/s for %s\n",
			s.eventsBooks, s.workers, s.eventsBooks, s.eventsAuthors, s.eventsRate, s.eventsDuration)
	}

	progs, err := localbuild.Programs(ctx, filepath.Join(dir, "bin"), "book", "author", "auth", "gateway", "inventory", "payment", "order")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if s.only == "" || s.only == "endpoints" {
		if err := runEndpoints(ctx, s, dir, progs, stdout); err != nil {
			return err
		}
	}
	if s.events && (s.only == "" || s.only == "events") {
		if err := runEventsAll(ctx, s, dir, progs, stdout); err != nil {
			return fmt.Errorf("bench: events: %w", err)
		}
	}
	if s.orders && (s.only == "" || s.only == "orders") {
		if err := runOrders(ctx, s, dir, progs, stdout); err != nil {
			return fmt.Errorf("bench: orders: %w", err)
		}
	}
	return nil
}

// runEndpoints measures the endpoints, on services of their own, stopped before it
// returns.
func runEndpoints(ctx context.Context, s settings, dir string, progs map[string]string, stdout io.Writer) (err error) {
	b, err := startNATS(ctx, dir, "nats")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	sys, err := startSystem(ctx, dir, progs, b, s.profile != "")
	if err != nil {
		_ = b.stop()
		return fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if serr := sys.stop(); serr != nil && err == nil {
			err = fmt.Errorf("bench: %w", serr)
		}
	}()

	token, err := login(ctx, sys.gatewayURL, benchAdminEmail, benchAdminPassword)
	if err != nil {
		return fmt.Errorf("bench: log in through the gateway: %w", err)
	}
	data, err := seed(ctx, sys.bookURL, sys.authorURL, token, s.authors, s.books)
	if err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	fmt.Fprintf(stdout, "seeding:  %s\n", data.summary())
	fmt.Fprintf(stdout, "genres:   %d, rotated over by the genre endpoints (X in their labels), about %d books each; reads by id rotate over every book\n",
		len(genres), data.perGenre)
	fmt.Fprintf(stdout, "gateway:  logged in as %s through the gateway (POST /auth/token); rate limit %s/s, burst %s\n",
		benchAdminEmail, gatewayRateLimit, gatewayRateBurst)
	if s.selects(labelAuthorsBooksGRPC) {
		if err := sys.startAuthorGRPC(ctx, dir, progs, data); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Fprintln(stdout, "gRPC:     a second author service with FOLIO_BOOK_TRANSPORT=grpc, on a copy of the first's database once its book counts were complete")
	}
	if s.selects(labelBookGetGoREST) || s.selects(labelBookGetGoGRPC) || s.selects(labelBookGetGoGzip) {
		fmt.Fprintf(stdout, "client:   the Go load client, a separate process, %d connections (HTTP/1.1 keep-alive, or gRPC with the Connect client over h2c), reading every book id in turn\n", s.workers)
	}
	if sys.nginxURL == "" {
		fmt.Fprintf(stdout, "nginx:    nginx comparison skipped: %s\n", sys.nginxSkipped)
	} else {
		fmt.Fprintf(stdout, "nginx:    %s\n", nginxVersion())
	}

	results, err := measureAll(ctx, s, dir, sys, data, token, stdout)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	report(stdout, results, sys)
	reportTransports(stdout, results)
	reportProfiles(stdout, results)
	return nil
}

// runEventsAll measures events on NATS (a server of the benchmark's own) and, with
// -rabbitmq, on RabbitMQ, each with book and author on fresh databases, and reports.
func runEventsAll(ctx context.Context, s settings, dir string, progs map[string]string, stdout io.Writer) error {
	var results []*eventsResult
	var skipped []string

	natsDir := filepath.Join(dir, "events-nats")
	if err := os.MkdirAll(natsDir, 0o700); err != nil {
		return err
	}
	b, err := startNATS(ctx, natsDir, "nats")
	if err != nil {
		return err
	}
	r, err := runEvents(ctx, s, natsDir, progs, b, stdout)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	results = append(results, r)

	if s.rabbitmq == "" {
		skipped = append(skipped, "rabbitmq: skipped (no -rabbitmq URL, nor FOLIO_BENCH_RABBITMQ_URL)")
	} else if b, err := rabbitSetup(s.rabbitmq); err != nil {
		skipped = append(skipped, "rabbitmq: skipped: "+err.Error())
	} else {
		rabbitDir := filepath.Join(dir, "events-rabbitmq")
		if err := os.MkdirAll(rabbitDir, 0o700); err != nil {
			return err
		}
		r, err := runEvents(ctx, s, rabbitDir, progs, b, stdout)
		if err != nil {
			return fmt.Errorf("rabbitmq: %w", err)
		}
		results = append(results, r)
	}
	reportEvents(stdout, s, results, skipped)
	return nil
}

// commandLine returns the command line of this process, with the program's base name.
func commandLine() string {
	if len(os.Args) == 0 {
		return "?"
	}
	return strings.Join(append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...), " ")
}
