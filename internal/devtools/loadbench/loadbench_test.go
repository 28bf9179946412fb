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

// TestMain lets this test binary be the ceiling and the NATS server that Run starts
// by running its own executable again with loadbench.CeilingEnv or
// loadbench.NATSAddrEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(loadbench.CeilingEnv) != "" || os.Getenv(loadbench.NATSAddrEnv) != "" {
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

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	args := []string{"-duration", "300ms", "-warmup", "0", "-workers", "4", "-authors", "5", "-books", "50",
		"-events-books", "20", "-events-authors", "3", "-events-rate", "20", "-events-duration", "500ms"}
	if err := loadbench.Run(ctx, args, &out); err != nil {
		t.Fatalf("Run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	labels := []string{
		"ceiling GET /", "GET /books/{id}", "GET /books/{id} with a bearer token", "gateway GET /books/{id}", "GET /books?genre=X&limit=20",
		"GET /authors/books?genre=X", "gateway GET /authors/books?genre=X", "POST /books",
	}
	if _, err := exec.LookPath("nginx"); err == nil {
		labels = append(labels, "nginx GET /books/{id}")
	} else if !strings.Contains(out.String(), "nginx comparison skipped") {
		t.Errorf("no nginx on PATH, and the report does not say the nginx comparison was skipped")
	}
	for _, label := range labels {
		row := findRow(out.String(), label)
		if row == nil {
			t.Errorf("no row for %s in the report", label)
			continue
		}
		// endpoint, then: requests, req/s, p50, p99, success, vs ceiling, answer size
		if len(row) != 7 {
			t.Errorf("row for %s has %d columns after the label, want 7: %q", label, len(row), row)
			continue
		}
		if rate, err := strconv.ParseFloat(row[1], 64); err != nil || rate <= 0 {
			t.Errorf("%s: req/s is %q, want a positive number", label, row[1])
		}
		if row[4] != "100.00%" {
			t.Errorf("%s: success is %s, want 100.00%%", label, row[4])
		}
	}
	for _, want := range []string{"machine:", "command:", "seeding:", "targets", "through the gateway", "via/direct",
		"target: gateway keeps >= 50% of direct throughput for GET /books/{id}",
		"in-service token verification (book)", "-bench Require ./internal/platform/authn/",
		"events targets", "nats     end to end >= 2000 events/s", "nats     p99 201→projection"} {
		if !strings.Contains(out.String(), want) {
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
