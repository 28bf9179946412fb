package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/polltest"
	"folio/internal/platform/release"
)

func noEnv(string) string { return "" }

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"folio", "help"}, {"folio", "--help"}, {"folio", "help", "up"}, {"folio", "up", "-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, noEnv, &out); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		for _, want := range []string{"--book-port int", "--author-port int", "--auth-port int", "--notify-port int", "--gateway-port int",
			"--inventory-port int", "--payment-port int", "--order-port int", "--order-db URL", "(default 8087)",
			"--nats-port int", "--scale service=N", "(default 4322)",
			"--host address", "--data-dir directory", "--book-db URL", "--author-db URL", "--auth-db URL", "--no-demo",
			"(default 8081)", "(default 8083)", "(default 8080)", "(default .folio)"} {
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
		{[]string{"folio", "up", "--auth-port", "8090", "--gateway-port", "8090"}, "--auth-port and --gateway-port are both 8090; give each service a port of its own"},
		{[]string{"folio", "up", "--book-port", "8083"}, "--book-port and --auth-port are both 8083"},
		{[]string{"folio", "up", "--book-port", "0"}, "--book-port 0 is not a port; pick one from 1 to 65535"},
		{[]string{"folio", "up", "--gateway-port", "0"}, "--gateway-port 0 is not a port; pick one from 1 to 65535"},
		{[]string{"folio", "up", "--author-port", "70000"}, "--author-port 70000 is not a port; pick one from 1 to 65535"},
		{[]string{"folio", "up", "--scale", "gateway=2"}, `up: invalid value "gateway=2" for flag -scale: "gateway" cannot be scaled; choose from auth, author, book, notify, inventory, payment, order`},
		{[]string{"folio", "up", "--scale", "book=0"}, `up: invalid value "book=0" for flag -scale: book=0: the number of instances must be 1 to 16`},
		{[]string{"folio", "up", "--scale", "book"}, `up: invalid value "book" for flag -scale: "book" is not service=N`},
		{[]string{"folio", "up", "--ready-timeout", "0s"}, "--ready-timeout must be positive"},
		{[]string{"folio", "up", "--otlp", "127.0.0.1:4318"}, "--otlp 127.0.0.1:4318 is not an http(s) URL"},
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

// distinctPorts returns n ports that nothing listened on a moment ago, all
// different: their listeners are all open at once before any is closed, so the
// system cannot hand out one port twice.
func distinctPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for _, ln := range holdPorts(t, n) {
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	return ports
}

// holdPorts listens on n ports of loopback until the test ends.
func holdPorts(t *testing.T, n int) []net.Listener {
	t.Helper()
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns = append(lns, ln)
	}
	return lns
}

func port(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }

// TestUpRejectsAPortInUse: folio up names the port in use and its flag, and stops
// before it creates anything. Every port is held by the test for its whole run, so
// none can be taken by anyone else, nor be the same as another: auth is checked
// first, so the ports of the others need not be free.
func TestUpRejectsAPortInUse(t *testing.T) {
	held := holdPorts(t, 9)
	taken := port(held[0])
	args := []string{"--auth-port", taken, "--book-port", port(held[1]), "--author-port", port(held[2]),
		"--notify-port", port(held[3]), "--gateway-port", port(held[4]), "--nats-port", port(held[5]),
		"--inventory-port", port(held[6]), "--payment-port", port(held[7]), "--order-port", port(held[8])}
	dataDir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"folio", "up", "--data-dir", dataDir}, args...), noEnv, &out)
	if want := "port " + taken + " (auth) is already in use; pick another with --auth-port"; err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
	if out.Len() > 0 {
		t.Errorf("printed %q before giving up; want nothing", out.String())
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("created the data directory before giving up (stat: %v)", err)
	}
}

// TestCheckPort: the message for each service's port in use names it and its flag.
func TestCheckPort(t *testing.T) {
	taken := holdPorts(t, 1)[0]
	n := taken.Addr().(*net.TCPAddr).Port
	for _, name := range []string{"book", "author", "auth", "notify", "inventory", "payment", "order", "gateway", "NATS"} {
		flag := "--" + strings.ToLower(name) + "-port"
		err := checkPort("127.0.0.1", &service{name: name, port: n, flag: flag})
		want := "port " + port(taken) + " (" + name + ") is already in use; pick another with " + flag
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %q", name, err, want)
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

// upPorts are the ports a `folio up` of a test runs on.
type upPorts struct{ book, author, auth, notify, inventory, payment, order, gateway, nats int }

func (p upPorts) args() []string {
	return []string{"--book-port", strconv.Itoa(p.book), "--author-port", strconv.Itoa(p.author),
		"--auth-port", strconv.Itoa(p.auth), "--notify-port", strconv.Itoa(p.notify),
		"--inventory-port", strconv.Itoa(p.inventory), "--payment-port", strconv.Itoa(p.payment), "--order-port", strconv.Itoa(p.order),
		"--gateway-port", strconv.Itoa(p.gateway), "--nats-port", strconv.Itoa(p.nats)}
}

func (p upPorts) url(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }

// upOnFreePorts runs `folio up` with args on ports that were free a moment ago
// until it says it is up, and returns the ports and what upUntilReady returns.
// folio up's ports are fixed before it starts its programs, so another test's
// program may take one first: then folio up (or the program) says the port is in
// use, and it starts again on other ports, up to a few times.
func upOnFreePorts(t *testing.T, args ...string) (ports upPorts, stop func() string, output func() string) {
	t.Helper()
	const attempts = 5
	for attempt := 1; ; attempt++ {
		p := distinctPorts(t, 9)
		ports = upPorts{book: p[0], author: p[1], auth: p[2], notify: p[3], gateway: p[4], nats: p[5],
			inventory: p[6], payment: p[7], order: p[8]}
		stop, output, err := startUp(t, append(ports.args(), args...)...)
		if err == nil {
			return ports, stop, output
		}
		if !strings.Contains(err.Error(), "already in use") || attempt == attempts {
			t.Fatal(err)
		}
		t.Logf("attempt %d: a port was taken (%v); starting again on others", attempt, err)
	}
}

// upUntilReady runs `folio up` with args until it says it is up, and returns a
// function that stops it (as Ctrl-C does) and returns its output.
func upUntilReady(t *testing.T, args ...string) (stop func() string, output func() string) {
	t.Helper()
	stop, output, err := startUp(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return stop, output
}

// startUp is upUntilReady, returning an error (with folio up's output) when folio
// up ended before it was up.
func startUp(t *testing.T, args ...string) (stop func() string, output func() string, err error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &chassistest.LogBuffer{} // what run writes, read while it runs
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"folio", "up"}, args...), noEnv, out) }()
	stop = func() string {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("folio up after Ctrl-C: got error %v, want nil", err)
			}
		case <-time.After(polltest.Deadline):
			t.Fatalf("folio up did not return after Ctrl-C; output:\n%s", out.String())
		}
		return out.String()
	}
	var ended error
	// A bound for a broken run only: a first build of the programs may take minutes.
	polltest.UntilWithin(t, 5*time.Minute, "folio up says it is up", func() error {
		select {
		case err := <-done:
			ended = fmt.Errorf("folio up ended before it was up: %v; output:\n%s", err, out.String())
			return nil
		default:
		}
		if strings.Contains(out.String(), "Press Ctrl-C to stop.") {
			return nil
		}
		return errors.New("not yet")
	})
	if ended != nil {
		cancel()
		return nil, nil, ended
	}
	return stop, out.String, nil
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

var startedPID = regexp.MustCompile(`(?m)^folio +\| ([\w-]+) started \(pid (\d+)\)$`)

// book2Banner finds the URL of the second book instance in folio up's banner.
var book2Banner = regexp.MustCompile(`book-2 service  (http://\S+)`)

func TestUpRunsTheServicesAndLoadsTheDemoOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service programs; skipped with -short")
	}
	dataDir := t.TempDir()
	ports, stop, output := upOnFreePorts(t, "--data-dir", dataDir, "--scale", "book=2")
	checkDemoReadable(t, ports)
	creds := readCredentials(t, dataDir)
	checkWritesNeedAToken(t, ports, gatewayToken(t, ports.url(ports.gateway), creds.EditorEmail, creds.EditorPassword))
	checkGatewayBalancesOverInstances(t, ports, dataDir, output)
	checkExtraInstanceRestartsOnItsPort(t, dataDir, output)
	out := stop()
	checkFirstRunOutput(t, ports, dataDir, creds, out)
	checkStopped(t, out)

	// The second run finds the markers: it loads nothing, creates no account and shows
	// no password, and the accounts of the first run still work.
	ports, stop, _ = upOnFreePorts(t, "--data-dir", dataDir, "--scale", "book=2")
	gatewayToken(t, ports.url(ports.gateway), creds.EditorEmail, creds.EditorPassword)
	out = stop()
	checkSecondRunOutput(t, dataDir, creds, out)
	checkStopped(t, out)
}

// checkDemoReadable checks that the demo catalogue is there to read, on the
// services and, without a token, through the gateway.
func checkDemoReadable(t *testing.T, ports upPorts) {
	t.Helper()
	var books struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	getJSON(t, ports.url(ports.book)+"/books?limit=2", &books)
	var grouped struct {
		Authors []struct {
			Books []json.RawMessage `json:"books"`
		} `json:"authors"`
	}
	getJSON(t, ports.url(ports.author)+"/authors/books?genre=poetry", &grouped)
	if len(books.Items) != 2 || len(grouped.Authors) == 0 || len(grouped.Authors[0].Books) == 0 {
		t.Errorf("after the demo load: got %d books on a page of 2 and %d poets; want a full page and some poets",
			len(books.Items), len(grouped.Authors))
	}
	// Reads through the gateway are public.
	var viaGateway struct {
		Items []json.RawMessage `json:"items"`
	}
	getJSON(t, ports.url(ports.gateway)+"/books?limit=2", &viaGateway)
	if len(viaGateway.Items) != 2 {
		t.Errorf("GET /books?limit=2 through the gateway: got %d books, want 2", len(viaGateway.Items))
	}
}

// checkWritesNeedAToken checks that a write through the gateway, or straight to a
// service, needs a token, and that the demo editor's is good for both.
func checkWritesNeedAToken(t *testing.T, ports upPorts, editor string) {
	t.Helper()
	gatewayURL, bookURL, authorURL := ports.url(ports.gateway), ports.url(ports.book), ports.url(ports.author)
	// Writes need a token: none gets 401, the editor's gets 201.
	if status, _ := postThroughGateway(t, gatewayURL+"/authors", "", `{"name":"No Token"}`); status != http.StatusUnauthorized {
		t.Errorf("POST /authors through the gateway without a token: got status %d, want 401", status)
	}
	status, author := postThroughGateway(t, gatewayURL+"/authors", editor, `{"name":"Test Author"}`)
	if status != http.StatusCreated || author.ID == "" {
		t.Fatalf("POST /authors through the gateway with the editor's token: got status %d, id %q; want 201 and an id", status, author.ID)
	}
	status, book := postThroughGateway(t, gatewayURL+"/books", editor,
		fmt.Sprintf(`{"title":"Test Book","author_id":%q,"genre":"fantasy"}`, author.ID))
	if status != http.StatusCreated || book.ID == "" {
		t.Errorf("POST /books through the gateway with the editor's token: got status %d, id %q; want 201 and an id", status, book.ID)
	}
	// The services check tokens themselves: a write straight to one needs a token too,
	// and the demo editor's is good there as well.
	if status, _ := postThroughGateway(t, authorURL+"/authors", "", `{"name":"No Token"}`); status != http.StatusUnauthorized {
		t.Errorf("POST /authors to the author service without a token: got status %d, want 401", status)
	}
	if status, _ := postThroughGateway(t, bookURL+"/books", "",
		fmt.Sprintf(`{"title":"No Token","author_id":%q,"genre":"fantasy"}`, author.ID)); status != http.StatusUnauthorized {
		t.Errorf("POST /books to the book service without a token: got status %d, want 401", status)
	}
	if status, direct := postThroughGateway(t, authorURL+"/authors", editor, `{"name":"Direct Author"}`); status != http.StatusCreated || direct.ID == "" {
		t.Errorf("POST /authors to the author service with the editor's token: got status %d, id %q; want 201 and an id", status, direct.ID)
	}
}

// checkGatewayBalancesOverInstances checks that the gateway found the second book
// instance in the registry and spreads reads over both.
func checkGatewayBalancesOverInstances(t *testing.T, ports upPorts, dataDir string, output func() string) {
	t.Helper()
	if book2Banner.FindStringSubmatch(output()) == nil {
		t.Fatalf("no book-2 instance in the banner:\n%s", output())
	}
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	for range 20 {
		getJSON(t, ports.url(ports.gateway)+"/books?limit=1", &page)
	}
	for _, name := range []string{"book", "book-2"} {
		if n := listRequests(t, metricsURL(t, dataDir, name)); n == 0 {
			t.Errorf("book instance %s served no GET /books; want the gateway to balance over both", name)
		}
	}
}

// checkExtraInstanceRestartsOnItsPort checks that an extra instance killed comes
// back on the port it had: its addr file, which the supervisor removes before the
// restart, reappears with the same address.
func checkExtraInstanceRestartsOnItsPort(t *testing.T, dataDir string, output func() string) {
	t.Helper()
	book2 := book2Banner.FindStringSubmatch(output())
	if book2 == nil {
		t.Fatalf("no book-2 instance in the banner:\n%s", output())
	}
	book2Addrs, err := httpserver.ReadAddrFile(filepath.Join(dataDir, "addr", "book-2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if book2[1] != "http://"+book2Addrs.HTTP {
		t.Errorf("the banner says book-2 is at %s, its addr file %s", book2[1], book2Addrs.HTTP)
	}
	killInstance(t, output(), "book-2")
	polltest.Until(t, "book-2 restarted on its port", func() error {
		started := 0
		for _, m := range startedPID.FindAllStringSubmatch(output(), -1) {
			if m[1] == "book-2" {
				started++
			}
		}
		if started < 2 {
			return errors.New("not restarted yet")
		}
		again, err := httpserver.ReadAddrFile(filepath.Join(dataDir, "addr", "book-2.json"))
		if err != nil {
			return err
		}
		if again.HTTP != book2Addrs.HTTP {
			t.Fatalf("book-2 came back at %s, want %s", again.HTTP, book2Addrs.HTTP)
		}
		return nil
	})
}

// checkFirstRunOutput checks what a first run printed and left in the data
// directory: the demo load, the accounts and how to use them, the databases.
func checkFirstRunOutput(t *testing.T, ports upPorts, dataDir string, creds credentials, out string) {
	t.Helper()
	gatewayURL := ports.url(ports.gateway)
	for _, want := range []string{
		"| demo catalogue loaded: 98 authors and 597 books created",
		"| demo accounts created",
		"created the first admin account",
		"Folio is up:\n  gateway         " + gatewayURL + "  (the public entry point",
		"\n  auth service    " + ports.url(ports.auth) + "  (API docs: /openapi.json)\n  author service  " + ports.url(ports.author) +
			"  (API docs: /openapi.json)\n  book service    " + ports.url(ports.book) + "  (API docs: /openapi.json)\n",
		"Demo accounts, for local use only",
		"editor  " + creds.EditorEmail,
		"curl -s -X POST " + gatewayURL + `/auth/token -H 'Content-Type: application/json' -d '{"email":"editor@folio.local","password":"` + creds.EditorPassword + `"}'`,
		"| all services stopped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; got:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, markerName)); err != nil {
		t.Errorf("no demo marker after the load: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, credentialsName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: got %v (stat error %v), want mode 0600", fi.Mode(), err)
	}
	for _, name := range []string{"book.db", "author.db", "auth.db", "notify.db", "inventory.db", "payment.db", "order.db"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("no SQLite database %s in the data directory: %v", name, err)
		}
	}
}

// checkSecondRunOutput checks that a second run loaded nothing, created no account
// and showed no password, and left the credentials as they were.
func checkSecondRunOutput(t *testing.T, dataDir string, creds credentials, out string) {
	t.Helper()
	if !strings.Contains(out, "demo catalogue already loaded") || strings.Contains(out, "demo catalogue loaded:") {
		t.Errorf("second run: want the demo load skipped; got:\n%s", out)
	}
	if !strings.Contains(out, "demo accounts already created") || strings.Contains(out, "| demo accounts created") ||
		strings.Contains(out, "created the first admin account") {
		t.Errorf("second run: want no account created; got:\n%s", out)
	}
	if strings.Contains(out, creds.EditorPassword) || strings.Contains(out, creds.AdminPassword) {
		t.Errorf("second run: prints a password; got:\n%s", out)
	}
	if !strings.Contains(out, "see "+filepath.Join(dataDir, credentialsName)) {
		t.Errorf("second run: does not point at the credentials file; got:\n%s", out)
	}
	if again := readCredentials(t, dataDir); again != creds {
		t.Errorf("second run changed the credentials file")
	}
}

// killInstance kills (SIGKILL) the child that runs the instance name, as folio up's
// output says it started it.
func killInstance(t *testing.T, out, name string) {
	t.Helper()
	for _, m := range startedPID.FindAllStringSubmatch(out, -1) {
		if m[1] == name {
			pid, _ := strconv.Atoi(m[2])
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s started in the output:\n%s", name, out)
}

// TestRestartOnSamePort: a restarted instance is told the port it reported last,
// and any port when it reported none (the port it had was taken, so it could not
// bind it).
func TestRestartOnSamePort(t *testing.T) {
	file := filepath.Join(t.TempDir(), "book-2.json")
	if err := httpserver.WriteAddrFile(file, httpserver.Addrs{HTTP: "127.0.0.1:41234", Metrics: "127.0.0.1:41235"}); err != nil {
		t.Fatal(err)
	}
	restart := restartOnSamePort("127.0.0.1", file)
	for i, want := range []string{"FOLIO_HTTP_ADDR=127.0.0.1:41234", "FOLIO_HTTP_ADDR=127.0.0.1:0"} {
		if got := restart(); len(got) != 1 || got[0] != want {
			t.Errorf("restart %d: got %q, want %q", i+1, got, want)
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("restart %d: the addr file is still there (stat: %v); the next run's own report must be read", i+1, err)
		}
	}
}

func readCredentials(t *testing.T, dataDir string) credentials {
	t.Helper()
	path := filepath.Join(dataDir, credentialsName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCredentials(path, data)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminEmail != "admin@folio.local" || c.EditorEmail != "editor@folio.local" || len(c.AdminPassword) < 20 || len(c.EditorPassword) < 20 {
		t.Fatalf("credentials file holds %s and %s with passwords of %d and %d characters; want admin@folio.local, editor@folio.local, 20 or more",
			c.AdminEmail, c.EditorEmail, len(c.AdminPassword), len(c.EditorPassword))
	}
	return c
}

// gatewayToken gets an access token through the gateway's POST /auth/token.
func gatewayToken(t *testing.T, gatewayURL, email, password string) string {
	t.Helper()
	tok, err := token(context.Background(), &http.Client{Timeout: 30 * time.Second}, gatewayURL, email, password)
	if err != nil {
		t.Fatalf("token for %s through the gateway: %v", email, err)
	}
	return tok
}

// postThroughGateway POSTs body to u (the gateway's or a service's) with bearer (when
// not empty) and returns the status and the id of what it created.
func postThroughGateway(t *testing.T, u, bearer, body string) (int, struct{ ID string }) {
	t.Helper()
	var created struct{ ID string }
	status, err := postJSON(context.Background(), &http.Client{Timeout: 30 * time.Second}, http.MethodPost, u, bearer,
		json.RawMessage(body), &created)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return status, created
}

// checkStopped checks that no child folio reported starting still runs.
func checkStopped(t *testing.T, out string) {
	t.Helper()
	matches := startedPID.FindAllStringSubmatch(out, -1)
	if len(matches) < 4 {
		t.Errorf("output names %d started services, want 4 or more", len(matches))
	}
	for _, m := range matches {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still runs after folio up returned (signal 0: %v)", m[1], pid, err)
		}
	}
}

// metricsURL is where the instance name serves /metrics, as it reported in its
// addr file under folio up's data directory: not on its public port.
func metricsURL(t *testing.T, dataDir, name string) string {
	t.Helper()
	addrs, err := httpserver.ReadAddrFile(filepath.Join(dataDir, "addr", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if addrs.Metrics == "" {
		t.Fatalf("%s reports no metrics address", name)
	}
	return "http://" + addrs.Metrics
}

// listRequests is how many GET /books requests the service at base has answered,
// read from its /metrics.
func listRequests(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "http_requests_total{") && strings.Contains(line, `route="GET /books"`) {
			fields := strings.Fields(line)
			n, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
			total += int(n)
		}
	}
	return total
}

func TestVersion(t *testing.T) {
	var out chassistest.LogBuffer
	if err := run(context.Background(), []string{"folio", "version"}, chassistest.Env(nil), &out); err != nil {
		t.Fatal(err)
	}
	if want := "folio " + release.Get().String() + "\n"; out.String() != want {
		t.Errorf("folio version printed %q, want %q", out.String(), want)
	}
}

// --otlp (or the standard variable) sends every program's traces to the
// collector named, each under its own service name.
func TestUpExportsTracesWhereAsked(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"flag":     {[]string{"--otlp", "http://127.0.0.1:4318"}, nil, "http://127.0.0.1:4318"},
		"variable": {nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318"},
		"neither":  {nil, nil, ""},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseUp(append([]string{"--data-dir", t.TempDir()}, tc.args...), func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			env := serviceEnv(cfg, &service{name: "book", program: "book", port: 8081}, "json")
			got := ""
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, "OTEL_EXPORTER_OTLP_ENDPOINT="); ok {
					got = v
				}
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("the program exports to %q, want %q", got, tc.want)
			}
			if !slices.Contains(env, "OTEL_SERVICE_NAME=") {
				t.Error("a service name from folio's environment would name every program")
			}
			if b := banner("http://gw", "nats://n", nil, cfg.dataDir, cfg.otlp, credentials{}, false); !strings.Contains(b, "traces") ||
				(tc.want != "" && !strings.Contains(b, tc.want)) || (tc.want == "" && !strings.Contains(b, "--otlp")) {
				t.Errorf("the banner does not say where the traces are, or how to see them:\n%s", b)
			}
		})
	}
}
