package loadbench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"folio/internal/devtools/loadbench"
	"folio/internal/devtools/localbuild"
)

// TestMain lets this test binary be the ceiling, the NATS server and the Go load
// client that Run starts by running its own executable again with
// loadbench.CeilingEnv, loadbench.NATSAddrEnv or loadbench.ClientEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(loadbench.CeilingEnv) != "" || os.Getenv(loadbench.NATSAddrEnv) != "" || os.Getenv(loadbench.ClientEnv) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := loadbench.Run(ctx, nil, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRun runs the whole benchmark with tiny settings and checks that every endpoint
// was measured and answered only with 2xx. It checks no speed: speed is what the
// benchmark reports, not what a test asserts.
func TestRun(t *testing.T) {
	needServices(t)
	out := runBench(t, "-duration", "300ms", "-warmup", "0", "-workers", "4", "-authors", "5", "-books", "50",
		"-events-books", "20", "-events-authors", "3", "-events-rate", "20", "-events-duration", "500ms",
		"-orders-workers", "2", "-orders-duration", "1s")
	checkEndpoints(t, out)
	checkOrders(t, out)
	for _, want := range []string{"vegeta in this process, 4 workers", "events targets", "nats     end to end >= 2000 events/s",
		"nats     p99 201→projection"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q line", want)
		}
	}
}

// checkOrders checks that the orders part placed orders and saw every one
// confirmed, with no error.
func checkOrders(t *testing.T, out string) {
	t.Helper()
	i := strings.Index(out, "\norders:   2 workers")
	if i < 0 {
		t.Fatalf("the report has no orders part:\n%s", out)
	}
	part := out[i:]
	if strings.Contains(part, "not confirmed:") || strings.Contains(part, "\nerror:") {
		t.Errorf("orders not all confirmed:\n%s", part)
	}
	// The part: a blank line, its settings, the table's header, its row.
	lines := strings.Split(part, "\n")
	if len(lines) < 4 {
		t.Fatalf("the orders part has no figures:\n%s", part)
	}
	var placed, confirmed int
	if _, err := fmt.Sscan(lines[3], &placed, &confirmed); err != nil || placed == 0 || confirmed != placed {
		t.Errorf("orders row %q: %d placed, %d confirmed (%v); want some, all confirmed", lines[3], placed, confirmed, err)
	}
}

// TestRunWrk runs the endpoints with wrk as the load generator: the scripts it is
// given must make requests the services accept (every POST a valid book with an
// ISBN of its own), and the figures must come back from wrk's summary.
func TestRunWrk(t *testing.T) {
	needServices(t)
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") != "" {
			t.Fatal("FOLIO_REQUIRE_INTEGRATION is set and wrk is not on PATH")
		}
		t.Skip("no wrk on PATH (Debian: apt-get install wrk)")
	}
	out := runBench(t, "-load", "wrk", "-only", "endpoints", "-duration", "1s", "-warmup", "0", "-workers", "4",
		"-authors", "5", "-books", "50")
	checkEndpoints(t, out)
	if !strings.Contains(out, "(a separate process), 2 threads, 4 connections") {
		t.Errorf("the report does not say wrk's settings")
	}
}

// TestRunRESTVersusGRPC runs only the rows that compare REST with gRPC, with wrk
// for the genre calls and the Go load client for the reads of one book: the second
// author service (FOLIO_BOOK_TRANSPORT=grpc) must start with the first's authors
// and book counts (Run fails otherwise) and answer only 2xx, GetBook must answer
// every seeded id with its book, and the comparison must have a figure in each cell.
func TestRunRESTVersusGRPC(t *testing.T) {
	needServices(t)
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") != "" {
			t.Fatal("FOLIO_REQUIRE_INTEGRATION is set and wrk is not on PATH")
		}
		t.Skip("no wrk on PATH (Debian: apt-get install wrk)")
	}
	out := runBench(t, "-load", "wrk", "-only", "endpoints", "-match", `^GET /authors/books|Go client`,
		"-duration", "1s", "-warmup", "1s", "-workers", "4", "-authors", "5", "-books", "50")
	t.Logf("output:\n%s", out)
	for _, label := range []string{"ceiling GET /", "GET /authors/books?genre=X", "GET /authors/books?genre=X, author→book over gRPC",
		"GET /books/{id} (REST, Go client)", "GetBook (gRPC, Go client)", "GetBook (gRPC, gzip accepted, Go client)"} {
		checkRow(t, out, label)
	}
	for _, unmatched := range []string{"GET /books/{id}  ", "gateway GET /authors/books?genre=X"} {
		if strings.Contains(out, "\n"+unmatched) {
			t.Errorf("-match measured %q too", unmatched)
		}
	}
	_, table, ok := strings.Cut(out, "REST versus gRPC, in this run")
	if !ok {
		t.Fatal("the report has no REST versus gRPC table")
	}
	for _, call := range []struct {
		name      string
		hasAuthor bool
	}{
		{"genre call, author→book over HTTP/JSON", true},
		{"genre call, author→book over gRPC", true},
		{"GET /books/{id} (REST, Go client)", false},
		{"GetBook (gRPC, Go client)", false},
		{"GetBook (gRPC, gzip accepted, Go client)", false},
	} {
		row := findRow(table, call.name)
		// call, then: 2xx/s, p50, p99, book, author, services, load generator
		if len(row) != 7 {
			t.Errorf("REST versus gRPC: row %q has %d columns, want 7: %q", call.name, len(row), row)
			continue
		}
		for i, cell := range row {
			if i == 4 && !call.hasAuthor {
				if cell != "-" {
					t.Errorf("REST versus gRPC: %s has an author figure, %s, though no author service serves it", call.name, cell)
				}
				continue
			}
			if n, err := strconv.ParseFloat(strings.TrimSuffix(cell, "ms"), 64); err != nil || n < 0 || (i == 0 && n <= 0) {
				t.Errorf("REST versus gRPC: %s: column %d is %q, want a figure", call.name, i+1, cell)
			}
		}
	}
}

// checkRow checks that the report has a row for label with a rate and only 2xx
// answers, and returns its fields after the label.
func checkRow(t *testing.T, out, label string) []string {
	t.Helper()
	row := findRow(out, label)
	if row == nil {
		t.Errorf("no row for %s in the report", label)
		return nil
	}
	// endpoint, then: requests, req/s, p50, p99, success, vs ceiling, answer size
	if len(row) != 7 {
		t.Errorf("row for %s has %d columns after the label, want 7: %q", label, len(row), row)
		return nil
	}
	if rate, err := strconv.ParseFloat(row[1], 64); err != nil || rate <= 0 {
		t.Errorf("%s: req/s is %q, want a positive number", label, row[1])
	}
	if row[4] != "100.00%" {
		t.Errorf("%s: success is %s, want 100.00%%", label, row[4])
	}
	return row
}

// needServices skips the test with -short, and where the services cannot be built.
func needServices(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the book and author services and loads them for a few seconds; skipped with -short")
	}
	root, err := localbuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "author", "main.go")); err != nil {
		t.Skip("cmd/author does not exist yet; the benchmark needs the author service: " + err.Error())
	}
}

// runBench runs the benchmark with args and returns its report.
func runBench(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := loadbench.Run(ctx, args, &out); err != nil {
		t.Fatalf("Run: %v\noutput:\n%s", err, out.String())
	}
	return out.String()
}

// checkEndpoints checks that the report has a row for every endpoint, each with a
// rate and only 2xx answers, and the comparisons.
func checkEndpoints(t *testing.T, out string) {
	t.Helper()
	t.Logf("output:\n%s", out)

	labels := []string{
		"ceiling GET /", "GET /books/{id}", "GET /books/{id} with a bearer token", "gateway GET /books/{id}", "GET /books?genre=X&limit=20",
		"GET /authors/books?genre=X", "gateway GET /authors/books?genre=X", "POST /books",
		"GET /authors/books?genre=X, author→book over gRPC", "GET /books/{id} (REST, Go client)", "GetBook (gRPC, Go client)",
		"GetBook (gRPC, gzip accepted, Go client)",
	}
	if _, err := exec.LookPath("nginx"); err == nil {
		labels = append(labels, "nginx GET /books/{id}")
	} else if !strings.Contains(out, "nginx comparison skipped") {
		t.Errorf("no nginx on PATH, and the report does not say the nginx comparison was skipped")
	}
	for _, label := range labels {
		checkRow(t, out, label)
	}
	want := []string{"machine:", "command:", "seeding:", "targets", "through the gateway", "via/direct",
		"GET /authors/books?genre=X   >= 8% of ceiling or >= 3000 2xx/s, p99 <= 50.00ms",
		"in-service token verification (book)", "-bench Require ./internal/platform/authn/"}
	if _, err := exec.LookPath("nginx"); err == nil {
		want = append(want, "target: gateway >= 80% of nginx for GET /books/{id}")
	}
	for _, want := range want {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q line", want)
		}
	}
}

// findRow returns the fields after label of the table row that starts with it.
func findRow(report, label string) []string {
	for _, line := range strings.Split(report, "\n") {
		if rest, ok := strings.CutPrefix(line, label+" "); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}
