package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"folio", "help"}, {"folio", "--help"}, {"folio", "help", "up"}, {"folio", "up", "-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, noEnv, &out); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		for _, want := range []string{"--book-port int", "--author-port int", "--host address", "--data-dir directory",
			"--book-db URL", "--author-db URL", "--no-demo", "(default 8081)", "(default .folio)"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%q: output lacks %q; got:\n%s", args, want, out.String())
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"folio", "help"}, noEnv, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n  up ", "\n  help "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help does not list command %q; got:\n%s", strings.TrimSpace(want), out.String())
		}
	}
}

func TestHelpNeverShowsADatabasePassword(t *testing.T) {
	env := func(k string) string {
		if strings.HasPrefix(k, "FOLIO_DATABASE_URL_") {
			return "postgres://folio:s3cret@db/folio"
		}
		return ""
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"folio", "help", "up"}, env, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("help shows the password from the environment:\n%s", out.String())
	}
}

func TestRunRejectsBadInvocations(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"folio"}, "no command given"},
		{[]string{"folio", "down"}, `unknown command "down"; run 'folio help' for the list`},
		{[]string{"folio", "help", "down"}, `no help for "down"`},
		{[]string{"folio", "up", "--bogus"}, "up: flag provided but not defined: -bogus; run 'folio help up' for its flags"},
		{[]string{"folio", "up", "now"}, `up takes no arguments, only flags (got "now")`},
		{[]string{"folio", "up", "--book-port", "x"}, `up: invalid value "x" for flag -book-port`},
		{[]string{"folio", "up", "--book-port", "8090", "--author-port", "8090"}, "--book-port and --author-port are both 8090; give each service a port of its own"},
		{[]string{"folio", "up", "--book-port", "0"}, "--book-port 0 is not a port; pick one from 1 to 65535"},
		{[]string{"folio", "up", "--author-port", "70000"}, "--author-port 70000 is not a port; pick one from 1 to 65535"},
		{[]string{"folio", "up", "--ready-timeout", "0s"}, "--ready-timeout must be positive"},
	}
	for _, tt := range tests {
		args := tt.args
		if len(args) > 1 && args[1] == "up" {
			// Should a case wrongly get as far as starting something, it writes here.
			args = append([]string{"folio", "up", "--data-dir", t.TempDir()}, args[2:]...)
		}
		err := run(context.Background(), args, noEnv, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got error %v, want one containing %q", tt.args, err, tt.want)
		}
	}
}

// freePort returns a port that nothing listens on just now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestUpRejectsAPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	free := strconv.Itoa(freePort(t))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--book-port", taken, "--author-port", free}, "port " + taken + " (book) is already in use; pick another with --book-port"},
		{[]string{"--book-port", free, "--author-port", taken}, "port " + taken + " (author) is already in use; pick another with --author-port"},
	} {
		dataDir := filepath.Join(t.TempDir(), "data")
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"folio", "up", "--data-dir", dataDir}, tt.args...), noEnv, &out)
		if err == nil || err.Error() != tt.want {
			t.Errorf("got error %v, want %q", err, tt.want)
		}
		if out.Len() > 0 {
			t.Errorf("printed %q before giving up; want nothing", out.String())
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("created the data directory before giving up (stat: %v)", err)
		}
	}
}

func TestConnectHost(t *testing.T) {
	for host, want := range map[string]string{
		"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "127.0.0.1": "127.0.0.1", "localhost": "localhost", "::1": "::1",
	} {
		if got := connectHost(host); got != want {
			t.Errorf("connectHost(%q) = %q, want %q", host, got, want)
		}
	}
}

// syncBuffer lets the test read what run writes while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// upUntilReady runs `folio up` with args until it says it is up, and returns a
// function that stops it (as Ctrl-C does) and returns its output.
func upUntilReady(t *testing.T, args ...string) (stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"folio", "up"}, args...), noEnv, out) }()
	stop = func() string {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("folio up after Ctrl-C: got error %v, want nil", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("folio up did not return after Ctrl-C; output:\n%s", out.String())
		}
		return out.String()
	}
	// A bound for a broken run only: a first build of the programs may take minutes.
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("folio up ended before it was up: %v; output:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("folio up was not up in 5 minutes; output:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stop
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %s, want 200 OK", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

var startedPID = regexp.MustCompile(`(?m)^folio  \| (\w+) started \(pid (\d+)\)$`)

func TestUpRunsTheServicesAndLoadsTheDemoOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service programs; skipped with -short")
	}
	dataDir := t.TempDir()
	bookPort, authorPort := freePort(t), freePort(t)
	args := []string{"--data-dir", dataDir, "--book-port", strconv.Itoa(bookPort), "--author-port", strconv.Itoa(authorPort)}
	bookURL, authorURL := fmt.Sprintf("http://127.0.0.1:%d", bookPort), fmt.Sprintf("http://127.0.0.1:%d", authorPort)

	stop := upUntilReady(t, args...)
	var books struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	getJSON(t, bookURL+"/books?limit=2", &books)
	var grouped struct {
		Authors []struct {
			Books []json.RawMessage `json:"books"`
		} `json:"authors"`
	}
	getJSON(t, authorURL+"/authors/books?genre=poetry", &grouped)
	out := stop()
	if len(books.Items) != 2 || len(grouped.Authors) == 0 || len(grouped.Authors[0].Books) == 0 {
		t.Errorf("after the demo load: got %d books on a page of 2 and %d poets; want a full page and some poets",
			len(books.Items), len(grouped.Authors))
	}
	for _, want := range []string{
		"folio  | demo catalogue loaded: 98 authors and 597 books created",
		"Folio is up:\n  book service    " + bookURL + "  (API docs: /openapi.json)\n  author service  " + authorURL,
		"folio  | all services stopped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; got:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, markerName)); err != nil {
		t.Errorf("no demo marker after the load: %v", err)
	}
	for _, name := range []string{"book.db", "author.db"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("no SQLite database %s in the data directory: %v", name, err)
		}
	}
	checkStopped(t, out)

	// The second run finds the marker and loads nothing.
	out = upUntilReady(t, args...)()
	if !strings.Contains(out, "demo catalogue already loaded") || strings.Contains(out, "demo catalogue loaded:") {
		t.Errorf("second run: want the demo load skipped; got:\n%s", out)
	}
	checkStopped(t, out)
}

// checkStopped checks that no child folio reported starting still runs.
func checkStopped(t *testing.T, out string) {
	t.Helper()
	matches := startedPID.FindAllStringSubmatch(out, -1)
	if len(matches) < 2 {
		t.Errorf("output names %d started services, want 2 or more", len(matches))
	}
	for _, m := range matches {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still runs after folio up returned (signal 0: %v)", m[1], pid, err)
		}
	}
}
