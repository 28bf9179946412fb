package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/devtools/localbuild"
	"folio/internal/platform/discovery"
	"folio/internal/platform/polltest"
)

var (
	gwBuildOnce sync.Once
	gwPrograms  map[string]string
	gwBuildErr  error
)

// gatewayProgram builds (once) the programs that program() does not: auth and gateway.
func gatewayProgram(t *testing.T, name string) string {
	t.Helper()
	gwBuildOnce.Do(func() {
		gwPrograms, gwBuildErr = localbuild.Programs(context.Background(), binDir, "auth", "gateway")
	})
	if gwBuildErr != nil {
		t.Fatalf("build programs: %v", gwBuildErr)
	}
	return gwPrograms[name]
}

// startExtra is startService for the auth and gateway programs. The process is
// killed when the test ends.
func startExtra(t *testing.T, name, addr string, env ...string) *service {
	t.Helper()
	s, err := tryStartChild(t, &service{t: t, name: name, bin: gatewayProgram(t, name), addr: addr, log: &bytes.Buffer{},
		env: append(append([]string{"FOLIO_METRICS_ADDR=127.0.0.1:0", "FOLIO_DATA_DIR=" + t.TempDir(), "FOLIO_LOG_FORMAT=json"},
			testEvents(t)...), env...)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gatewayEnv points a gateway at the instances given.
func gatewayEnv(auth *service, author *service, books []*service, extra ...string) []string {
	var urls []string
	for _, b := range books {
		urls = append(urls, b.URL())
	}
	return append([]string{
		"FOLIO_BOOK_URLS=" + strings.Join(urls, ","),
		"FOLIO_AUTHOR_URLS=" + author.URL(),
		"FOLIO_AUTH_URLS=" + auth.URL(),
		"FOLIO_NOTIFY_URLS=http://127.0.0.1:1", // no notify service in these tests
	}, extra...)
}

// routeCount sums http_requests_total for route and code in the /metrics served at
// base (a service's MetricsURL).
func routeCount(t *testing.T, base, route, code string) float64 {
	t.Helper()
	n, err := readRouteCount(base, route, code)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readRouteCount(base, route, code string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "http_requests_total{") ||
			!strings.Contains(line, `route="`+route+`"`) || !strings.Contains(line, `code="`+code+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		total += v
	}
	return total, sc.Err()
}

func bearer(tok string) string { return "Bearer " + tok }

// authJWKS is the environment that makes a program verify the tokens of the auth
// service auth.
func authJWKS(auth *service) string {
	return "FOLIO_JWKS_URL=" + auth.URL() + "/.well-known/jwks.json"
}

// registryTTL is the discovery TTL of the programs in these tests: short, so that a
// killed instance's entry expires quickly.
const registryTTL = 3 * time.Second

// testRegistry opens a discovery registry on a bucket of the test's own on
// FOLIO_TEST_NATS_URL, and returns the environment that puts a program in it as
// instance id. Without that URL it returns no registry and no variables (failing
// the test when FOLIO_REQUIRE_INTEGRATION=1).
func testRegistry(t *testing.T) (*discovery.Registry, func(id string) []string) {
	t.Helper()
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Log("FOLIO_TEST_NATS_URL is not set: static discovery, registry checks skipped")
		return nil, func(string) []string { return nil }
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	bucket := fmt.Sprintf("folio_e2e_%d_%d", os.Getpid(), time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := discovery.OpenRegistry(ctx, nc, bucket, registryTTL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// After the programs (cleanups run last-in first-out), so nothing recreates it.
		js, err := jetstream.New(nc)
		if err == nil {
			err = js.DeleteKeyValue(context.Background(), bucket)
		}
		if err != nil {
			t.Errorf("delete bucket %s: %v", bucket, err)
		}
		nc.Close()
	})
	return reg, func(id string) []string {
		return []string{"FOLIO_DISCOVERY=nats", "FOLIO_NATS_URL=" + url, "FOLIO_DISCOVERY_BUCKET=" + bucket,
			"FOLIO_DISCOVERY_TTL=" + registryTTL.String(), "FOLIO_INSTANCE_ID=" + id}
	}
}

// waitRegistered waits until the book instance id is (or is no longer) in the
// registry, and logs how long after since that took. The bound is generous; the
// figure is what the logs report.
func waitRegistered(t *testing.T, reg *discovery.Registry, id string, want bool, since time.Time) {
	t.Helper()
	polltest.Until(t, fmt.Sprintf("book instance %s registered=%v", id, want), func() error {
		found := false
		for _, in := range reg.Instances("book") {
			found = found || in.ID == id
		}
		if found != want {
			return fmt.Errorf("registered=%v", found)
		}
		return nil
	})
	t.Logf("book instance %s registered=%v %v after the change (TTL %v)", id, want, time.Since(since).Round(10*time.Millisecond), registryTTL)
}

// TestGateway runs auth, author, three book instances sharing one database and the
// gateway as real processes, and checks the contract's auth and gateway rules,
// failover and rate limiting through the gateway.
func TestGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	// With NATS, every program finds its peers in a registry bucket of this test's
	// own; without it, static URLs are used and the registry checks are skipped.
	reg, discoveryEnv := testRegistry(t)
	auth := startExtra(t, "auth", anyAddr, append(discoveryEnv("auth"),
		"FOLIO_ADMIN_EMAIL="+gatewayAdminEmail, "FOLIO_ADMIN_PASSWORD="+gatewayAdminPassword)...)

	// The services verify the tokens the auth service issues, as the gateway does.
	jwks := authJWKS(auth)
	bookDB := "FOLIO_DATABASE_URL=sqlite:" + filepath.Join(t.TempDir(), "book.db")
	bookEnv := func(i int) []string { return append(discoveryEnv("book-"+strconv.Itoa(i)), bookDB, jwks) }
	// One book at a time: the first, the author service's peer, migrates the shared
	// database.
	author, book0 := startPair(t, append(discoveryEnv("author"), jwks), bookEnv(0))
	books := []*service{book0}
	for i := 1; i < 3; i++ {
		books = append(books, startService(t, "book", anyAddr, append(bookEnv(i), "FOLIO_AUTHOR_URL="+author.URL())...))
	}
	// The failover test sends hundreds of requests from one client: the limit is
	// raised, not switched off.
	gw := startExtra(t, "gateway", anyAddr, append(gatewayEnv(auth, author, books,
		"FOLIO_RATE_LIMIT=100000", "FOLIO_RATE_BURST=100000"), discoveryEnv("gateway")...)...)
	gs := &gatewaySystem{reg: reg, auth: auth, author: author, books: books, gw: gw, g: gw.URL()}
	// The gateway is ready once it serves; with the registry, it learns where
	// each service is a moment later (until then it answers 503, as it does when
	// a service has no instance). The subtests start once it routes to each.
	polltest.Until(t, "the gateway routes to auth, author and book", func() error {
		for _, path := range []string{"/.well-known/jwks.json", "/authors?limit=1", "/books?limit=1"} {
			if r := call(t, "GET", gs.g+path, nil); r.status != http.StatusOK {
				return fmt.Errorf("GET %s: %d", path, r.status)
			}
		}
		return nil
	})

	t.Run("accounts, tokens and roles work through the gateway", gs.accountsAndRoles)
	if gs.bookID == "" {
		t.Fatal("the accounts subtest did not create a book")
	}
	t.Run("a book instance killed under load costs no request", gs.failover)
	t.Run("a client over its rate limit is answered 429 and no other is", gs.rateLimit)
}

// gatewaySystem is what TestGateway's subtests share: the programs, and a book
// created through the gateway by the first subtest, which the others read.
type gatewaySystem struct {
	reg          *discovery.Registry // nil without NATS: static URLs
	auth, author *service
	books        []*service
	gw           *service
	g            string // the gateway's URL
	bookID       string
}

// The admin account the auth service is started with.
const gatewayAdminEmail, gatewayAdminPassword = "admin@folio.test", "admin-password-123"

// token logs in through the gateway and returns the access token.
func (gs *gatewaySystem) token(t *testing.T, email, password string) string {
	t.Helper()
	r := call(t, "POST", gs.g+"/auth/token", map[string]any{"email": email, "password": password})
	expect(t, r, http.StatusOK)
	m := r.json(t)
	if m["token_type"] != "Bearer" {
		t.Fatalf("token_type %v, want Bearer", m["token_type"])
	}
	tok, _ := m["access_token"].(string)
	if tok == "" {
		t.Fatalf("no access_token in %s", r.body)
	}
	return tok
}

// register makes a reader's account through the gateway and returns its id.
func (gs *gatewaySystem) register(t *testing.T, email string) string {
	t.Helper()
	r := call(t, "POST", gs.g+"/auth/register", map[string]any{"email": email, "password": "correct-horse-battery"})
	expect(t, r, http.StatusCreated)
	m := r.json(t)
	roles, _ := m["roles"].([]any)
	if len(roles) != 1 || roles[0] != "reader" || m["email"] != email {
		t.Fatalf("registered %v, want email %s and roles [reader]", m, email)
	}
	return m["id"].(string)
}

// accountsAndRoles walks the contract's auth rules through the gateway: register,
// log in, roles, who may see and change what; then creates a book as an editor.
func (gs *gatewaySystem) accountsAndRoles(t *testing.T) {
	g := gs.g
	gs.register(t, "reader@folio.test")
	readerTok := gs.token(t, "reader@folio.test", "correct-horse-battery")
	editorID := gs.register(t, "editor@folio.test")
	expect(t, call(t, "GET", g+"/auth/users/"+editorID, nil), http.StatusUnauthorized) // no token

	wrongPw := call(t, "POST", g+"/auth/token", map[string]any{"email": "reader@folio.test", "password": "not-the-password-x"})
	unknown := call(t, "POST", g+"/auth/token", map[string]any{"email": "nobody@folio.test", "password": "not-the-password-x"})
	expect(t, wrongPw, http.StatusUnauthorized)
	expect(t, unknown, http.StatusUnauthorized)
	if !bytes.Equal(wrongPw.body, unknown.body) {
		t.Errorf("wrong password and unknown email answer differently:\n%s\n%s", wrongPw.body, unknown.body)
	}

	r := call(t, "GET", g+"/.well-known/jwks.json", nil)
	expect(t, r, http.StatusOK)
	if keys, _ := r.json(t)["keys"].([]any); len(keys) == 0 {
		t.Errorf("JWKS without keys: %s", r.body)
	}
	expect(t, call(t, "GET", g+"/books", nil), http.StatusOK)

	author := map[string]any{"name": "Ursula K. Le Guin"}
	expect(t, call(t, "POST", g+"/authors", author), http.StatusUnauthorized)
	expect(t, call(t, "POST", g+"/authors", author, "Authorization", bearer(readerTok)), http.StatusForbidden)
	expect(t, call(t, "POST", g+"/authors", author, "Authorization", "Bearer not-a-token"), http.StatusUnauthorized)

	// The reader may not change roles, nor see another account.
	expect(t, call(t, "PUT", g+"/auth/users/"+editorID+"/roles", map[string]any{"roles": []string{"editor"}},
		"Authorization", bearer(readerTok)), http.StatusForbidden)
	expect(t, call(t, "GET", g+"/auth/users/"+editorID, nil, "Authorization", bearer(readerTok)), http.StatusNotFound)

	adminTok := gs.token(t, gatewayAdminEmail, gatewayAdminPassword)
	r = call(t, "PUT", g+"/auth/users/"+editorID+"/roles", map[string]any{"roles": []string{"editor"}},
		"Authorization", bearer(adminTok))
	expect(t, r, http.StatusOK)
	r = call(t, "GET", g+"/auth/users/"+editorID, nil, "Authorization", bearer(adminTok))
	expect(t, r, http.StatusOK)
	if roles, _ := r.json(t)["roles"].([]any); len(roles) != 1 || roles[0] != "editor" {
		t.Errorf("after PUT roles the account is %s, want roles [editor]", r.body)
	}

	editorTok := gs.token(t, "editor@folio.test", "correct-horse-battery")
	// The editor cannot change roles either: that is for admins.
	expect(t, call(t, "PUT", g+"/auth/users/"+editorID+"/roles", map[string]any{"roles": []string{"admin"}},
		"Authorization", bearer(editorTok)), http.StatusForbidden)
	// An account can see itself.
	expect(t, call(t, "GET", g+"/auth/users/"+editorID, nil, "Authorization", bearer(editorTok)), http.StatusOK)

	r = call(t, "POST", g+"/authors", author, "Authorization", bearer(editorTok))
	expect(t, r, http.StatusCreated)
	aid := r.json(t)["id"].(string)
	r = call(t, "POST", g+"/books", map[string]any{"title": "The Dispossessed", "author_id": aid, "genre": "sf"},
		"Authorization", bearer(editorTok))
	expect(t, r, http.StatusCreated)
	gs.bookID = r.json(t)["id"].(string)
	expect(t, call(t, "GET", g+"/books/"+gs.bookID, nil), http.StatusOK)
	expect(t, call(t, "GET", g+"/authors/"+aid, nil), http.StatusOK)

	const rid = "e2e-gateway-request-0001"
	r = call(t, "GET", g+"/books/"+gs.bookID, nil, "X-Request-ID", rid)
	expect(t, r, http.StatusOK)
	if got := r.header.Get("X-Request-ID"); got != rid {
		t.Errorf("X-Request-ID %q came back, want %q", got, rid)
	}
}

// failover kills one of three book instances under a GET load through the
// gateway: no request fails, and the instance, started again, gets traffic again.
func (gs *gatewaySystem) failover(t *testing.T) {
	g := gs.g
	reg := gs.reg
	books := gs.books
	bookID := gs.bookID
	victim := books[2]
	route := "GET /books/{id}"
	// 600 GETs from four workers; one instance is killed after the first 100.
	const total = 600
	load := startGETLoad(g+"/books/"+bookID, 4)
	defer load.stop()
	answered := func(n int) func() error {
		return func() error {
			if got := load.snapshot().total().requests; got < n {
				return fmt.Errorf("%d GETs answered", got)
			}
			return nil
		}
	}
	polltest.Until(t, "100 GETs answered before the kill", answered(100))
	served, servedErr := readRouteCount(victim.MetricsURL(), route, "200") // by the victim before it was killed
	victim.kill()                                                          // SIGKILL, as a crash would
	killedAt := time.Now()
	polltest.Until(t, fmt.Sprintf("%d GETs answered", total), answered(total))
	load.stop()
	st := load.snapshot().total()
	t.Logf("%d GETs through the gateway, %d failed; the killed instance had served %v", st.requests, st.failures, served)
	if servedErr != nil || served == 0 {
		t.Errorf("the instance killed had served no GET /books/{id} before (%v): the failover was not exercised", servedErr)
	}
	if st.failures > 0 {
		t.Fatalf("%d of %d GETs failed after SIGKILL of one instance; first: %s", st.failures, st.requests, st.firstFailures[0])
	}
	// The others carried the load.
	for i, b := range books[:2] {
		if routeCount(t, b.MetricsURL(), route, "200") == 0 {
			t.Errorf("book instance %d served no GET /books/{id}", i)
		}
	}

	if reg != nil {
		// The dead instance cannot withdraw itself: its entry expires by the TTL.
		waitRegistered(t, reg, "book-2", false, killedAt)
	}

	// Started again on the same address, it receives traffic again once the
	// gateway stops skipping it.
	victim.start()
	if reg != nil {
		waitRegistered(t, reg, "book-2", true, time.Now())
	}
	polltest.Until(t, "the restarted book instance receives GET /books/{id}", func() error {
		for range 6 {
			r := call(t, "GET", g+"/books/"+bookID, nil)
			expect(t, r, http.StatusOK)
		}
		if routeCount(t, victim.MetricsURL(), route, "200") == 0 {
			return errors.New("no 200 counted on it yet")
		}
		return nil
	})
}

// rateLimit checks a gateway of its own with a limit of 1/s and bursts of 5.
func (gs *gatewaySystem) rateLimit(t *testing.T) {
	auth := gs.auth
	author := gs.author
	books := gs.books
	bookID := gs.bookID
	limited := startExtra(t, "gateway", anyAddr, gatewayEnv(auth, author, books,
		"FOLIO_RATE_LIMIT=1", "FOLIO_RATE_BURST=5")...)
	l := limited.URL()
	// Tokens are fetched directly from the auth service, so as not to spend the
	// limited gateway's budget for this client.
	tok := func(email string) string {
		r := call(t, "POST", auth.URL()+"/auth/token", map[string]any{"email": email, "password": "correct-horse-battery"})
		expect(t, r, http.StatusOK)
		return r.json(t)["access_token"].(string)
	}
	readerTok, editorTok := tok("reader@folio.test"), tok("editor@folio.test")

	var limitedResp *response
	for range 10 {
		r := call(t, "GET", l+"/books/"+bookID, nil, "Authorization", bearer(readerTok))
		switch r.status {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			if limitedResp == nil {
				limitedResp = &r
			}
		default:
			t.Fatalf("GET through the limited gateway: status %d: %s", r.status, r.body)
		}
	}
	if limitedResp == nil {
		t.Fatal("10 rapid GETs over a limit of 1/s with bursts of 5 were never answered 429")
	}
	expect(t, *limitedResp, http.StatusTooManyRequests)
	ra := limitedResp.header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n < 1 {
		t.Errorf("429 with Retry-After %q, want a positive number of seconds", ra)
	}
	// Another client (another token subject) is unaffected.
	r := call(t, "GET", l+"/books/"+bookID, nil, "Authorization", bearer(editorTok))
	expect(t, r, http.StatusOK)
}
