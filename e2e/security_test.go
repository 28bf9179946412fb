package e2e

// The security regression suite of issue 8: each of the ten findings, reproduced
// back then against `folio up`, replayed as the same attack against a running folio
// up (and, where folio up relaxes a rule for local use, against a service started
// without the relaxation), asserting the fixed behaviour. Deeper tests of single
// rules live with their packages; this suite checks that the whole system, as a
// developer runs it, holds.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	_ "modernc.org/sqlite"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/polltest"
	"folio/internal/platform/secrets"
)

func TestSecurity(t *testing.T) {
	u := startFolioUp(t)
	g := u.URL("gateway")
	admin := bearer(u.login(u.adminEmail, u.adminPassword))
	editor := bearer(u.login(u.editorEmail, u.editorPassword))
	adminSub := tokenSubject(t, strings.TrimPrefix(admin, "Bearer "))

	// An author and a book to attack.
	r := call(t, "POST", g+"/authors", map[string]any{"name": "Mary Shelley"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)
	r = call(t, "POST", g+"/books", map[string]any{"title": "Frankenstein", "author_id": authorID, "genre": "gothic"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
	bookID := r.json(t)["id"].(string)

	// The webhook secret registered below, searched for in the data directory at the end.
	secretBytes := make([]byte, 24)
	_, _ = rand.Read(secretBytes)
	webhookSecret := "whsec_" + base64.StdEncoding.EncodeToString(secretBytes)
	s := &securitySystem{u: u, g: g, admin: admin, editor: editor, adminSub: adminSub,
		authorID: authorID, bookID: bookID, webhookSecret: webhookSecret}

	t.Run("1 NATS refuses anonymous and unknown clients", s.natsRefusesStrangers)
	t.Run("2 a login flood from one client locks out no other", s.loginFloodLocksOutNoOther)
	t.Run("3 the services refuse direct writes without a token", s.servicesRefuseWritesWithoutToken)
	t.Run("4 the data directory and its databases are the owner's alone", s.dataDirectoryIsPrivate)
	t.Run("5 webhooks reach no internal address", s.webhooksReachNoInternalAddress)
	t.Run("5 and 10 deliveries are signed and last_error shows no peer bytes", s.deliveriesSignedAndLastErrorClean)
	t.Run("6 50 concurrent registers keep the auth service small", s.concurrentRegistersKeepAuthSmall)
	t.Run("7 the gateway answers bad bodies 413 and 400", s.gatewayAnswersBadBodies)
	t.Run("8 a demoted editor's token is refused within 5 s", func(t *testing.T) { s.demote(t, true) })
	t.Run("8 an editor demoted at once after its promotion is refused within 5 s", func(t *testing.T) { s.demote(t, false) })
	t.Run("8 a token living for ever is refused", s.everlastingTokenRefused)
	t.Run("9 a Connection header strips nothing", s.connectionHeaderStripsNothing)
	t.Run("10 hygiene", s.hygiene)
	// Finding 4, second half, and the logs of finding 10: once folio up has stopped
	// (its databases closed and checkpointed), the files hold no secret in clear and
	// the output showed none.
	u.stop()
	t.Run("4 a stolen database signs nothing and names no webhook secret", s.stolenDatabaseHoldsNoSecret)
	t.Run("10 the output shows no NATS seed or secret", s.outputShowsNoSecret)
}

// securitySystem is what TestSecurity's subtests share: one folio up, its accounts'
// tokens, and an author and a book to attack.
type securitySystem struct {
	u                          *upSystem
	g, admin, editor, adminSub string
	authorID, bookID           string
	webhookSecret              string // registered by a subtest, searched for in the data directory at the end
}

// Finding 1: the embedded NATS took anyone. The permissions of each program's
// credential are tested in internal/devtools/localnats and e2e/broker_trust_test.go
// (forged registry entries and events with every stolen credential); here:
// folio up's NATS refuses a client without a credential, or with one it does
// not know.
func (s *securitySystem) natsRefusesStrangers(t *testing.T) {
	u := s.u
	opts := []nats.Option{nats.NoReconnect(), nats.Timeout(10 * time.Second)}
	if nc, err := nats.Connect(u.natsURL(), opts...); err == nil {
		nc.Close()
		t.Errorf("an anonymous client connected to folio up's NATS at %s", u.natsURL())
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	sign := func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }
	if nc, err := nats.Connect(u.natsURL(), append(opts, nats.Nkey(pub, sign))...); err == nil {
		nc.Close()
		t.Errorf("a client with an nkey of its own making connected to folio up's NATS")
	}
	// Nor can a client forge the discovery entry of finding 1 with a user name and
	// password it guesses.
	if nc, err := nats.Connect(u.natsURL(), append(opts, nats.UserInfo("auth", "auth"))...); err == nil {
		nc.Close()
		t.Errorf("a client with a guessed user and password connected to folio up's NATS")
	}
}

// Finding 2: the auth service counted logins per connection address, which
// behind the gateway is always the gateway's.
func (s *securitySystem) loginFloodLocksOutNoOther(t *testing.T) {
	u := s.u
	g := s.g
	upRequireAddr(t, "127.0.0.2")
	upRequireAddr(t, "127.0.0.3")
	a, b := upClient("127.0.0.2", 30*time.Second), upClient("127.0.0.3", 30*time.Second)
	login := func(c *http.Client, password string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"email": u.adminEmail, "password": password})
		resp, err := c.Post(g+"/auth/token", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST /auth/token: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	for i := range 70 {
		if status, ct := login(a, "wrong-password-"+strconv.Itoa(i)); (status != http.StatusUnauthorized && status != http.StatusTooManyRequests) ||
			ct != "application/problem+json" {
			t.Fatalf("wrong login %d from A: got %d %s, want 401 or 429 problem+json", i, status, ct)
		}
	}
	if status, _ := login(b, u.adminPassword); status != http.StatusOK {
		t.Errorf("the admin's correct login from another client B after 70 wrong ones from A: got %d, want 200", status)
	}
	if status, _ := login(a, u.adminPassword); status != http.StatusTooManyRequests {
		t.Errorf("the admin's correct login from A after its 70 wrong ones: got %d, want 429", status)
	}
}

// Finding 3: the services took writes from anyone who reached their ports, and a
// web page could make a browser send them (text/plain needs no preflight).
func (s *securitySystem) servicesRefuseWritesWithoutToken(t *testing.T) {
	u := s.u
	g := s.g
	admin := s.admin
	editor := s.editor
	adminSub := s.adminSub
	authorID := s.authorID
	bookID := s.bookID
	book, author, notify := u.URL("book"), u.URL("author"), u.URL("notify")
	subscription := map[string]any{"url": "https://example.com/hook", "events": []string{"book.created"}, "secret": "s3cret-s3cret-s3cret"}
	writes := []struct {
		method, url string
		body        any
	}{
		{"POST", author + "/authors", map[string]any{"name": "Intruder"}},
		{"POST", book + "/books", map[string]any{"title": "Forged", "author_id": authorID, "genre": "gothic"}},
		{"DELETE", book + "/books/" + bookID, nil},
		{"POST", notify + "/subscriptions", subscription},
		{"PUT", u.URL("auth") + "/auth/users/" + adminSub + "/roles", map[string]any{"roles": []string{"reader"}}},
		{"PUT", u.URL("inventory") + "/inventory/" + bookID, map[string]any{"quantity": 1000, "price": map[string]any{"amount": 1, "currency": "EUR"}}},
		{"POST", u.URL("order") + "/orders", map[string]any{"items": []map[string]any{{"book_id": bookID, "quantity": 1}},
			"payment": map[string]any{"card": map[string]any{"number": "4242424242424242", "expiry": "12/39", "cvc": "123"}}}},
		{"GET", u.URL("payment") + "/payments/" + bookID, nil},
	}
	for _, w := range writes {
		for _, spoof := range [][]string{nil, {subjectHeader, adminSub}} {
			r := call(t, w.method, w.url, w.body, spoof...)
			if r.status != http.StatusUnauthorized || r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s without a token (headers %q): got %d %s, want 401 problem+json", w.method, w.url, spoof, r.status, r.body)
			}
		}
	}
	// The cross-site form of the same writes: a text/plain body, no token (a
	// page cannot add one), and also with one.
	crossSite := []struct{ url, body string }{
		{author + "/authors", `{"name":"Cross Site"}`},
		{book + "/books", fmt.Sprintf(`{"title":"Cross Site","author_id":%q,"genre":"gothic"}`, authorID)},
		{notify + "/subscriptions", `{"url":"https://example.com/cross","events":["book.created"],"secret":"s3cret-s3cret-s3cret"}`},
		{u.URL("auth") + "/auth/register", `{"email":"cross-site@folio.test","password":"correct-horse-battery"}`},
		{u.URL("order") + "/orders", fmt.Sprintf(`{"items":[{"book_id":%q,"quantity":1}],"payment":{"card":{"number":"4242424242424242","expiry":"12/39","cvc":"123"}}}`, bookID)},
		{g + "/authors", `{"name":"Cross Site"}`},
	}
	for _, c := range crossSite {
		for _, auth := range []string{"", editor, admin} {
			headers := []string{"Content-Type", "text/plain;charset=UTF-8", "Origin", "https://evil.example"}
			if auth != "" {
				headers = append(headers, "Authorization", auth)
			}
			r := call(t, "POST", c.url, c.body, headers...)
			// Refused either way: for its type, or first for a missing token or a role
			// short of the route's (only an admin may subscribe).
			refused := r.status == http.StatusUnsupportedMediaType || (auth == "" && r.status == http.StatusUnauthorized) ||
				(auth == editor && strings.HasSuffix(c.url, "/subscriptions") && r.status == http.StatusForbidden)
			if !refused || r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("text/plain POST %s (token: %t): got %d %s, want 415 (or 401 without a token, 403 for a role short of the route's) problem+json",
					c.url, auth != "", r.status, r.body)
			}
		}
	}
	// Nothing was created or deleted.
	expect(t, call(t, "GET", book+"/books/"+bookID, nil), http.StatusOK)
	for _, list := range []struct{ url, field, want string }{
		{author + "/authors?limit=100", "name", "Mary Shelley"},
		{book + "/books?limit=100", "title", "Frankenstein"},
	} {
		r := call(t, "GET", list.url, nil)
		expect(t, r, http.StatusOK)
		for _, it := range r.json(t)["items"].([]any) {
			if v := it.(map[string]any)[list.field]; v != list.want && v != "Idempotent Author" {
				t.Errorf("GET %s lists %q, made by a refused write", list.url, v)
			}
		}
	}
	r := call(t, "GET", notify+"/subscriptions", nil, "Authorization", admin)
	expect(t, r, http.StatusOK)
	if strings.Contains(string(r.body), "example.com") {
		t.Errorf("a refused write made a subscription: %s", r.body)
	}
	if r := call(t, "POST", g+"/auth/token", map[string]any{"email": "cross-site@folio.test", "password": "correct-horse-battery"}); r.status != http.StatusUnauthorized {
		t.Errorf("the account of the refused text/plain register: login got %d %s, want 401", r.status, r.body)
	}

	// A spoofed X-Folio-Subject replays nobody's idempotent answer.
	key := "spoof-" + randomTag()
	body := map[string]any{"name": "Idempotent Author"}
	first := call(t, "POST", g+"/authors", body, "Authorization", admin, "Idempotency-Key", key)
	expect(t, first, http.StatusCreated)
	for _, target := range []string{author, g} {
		r := call(t, "POST", target+"/authors", body, "Authorization", editor, "Idempotency-Key", key, subjectHeader, adminSub)
		if r.status != http.StatusCreated || r.json(t)["id"] == first.json(t)["id"] {
			t.Errorf("the editor naming the admin in %s to %s: got %d %s; want 201 with an author of its own, not the admin's %v",
				subjectHeader, target, r.status, r.body, first.json(t)["id"])
		}
	}
}

// Finding 4, first half (the files are read again once folio up has stopped).
func (s *securitySystem) dataDirectoryIsPrivate(t *testing.T) {
	u := s.u
	checkPrivate(t, u.dataDir)
}

// Finding 5: webhook URLs reached anything the notify service could reach, and
// last_error showed what answered. folio up allows private addresses (a
// developer's receivers are local), so the check is replayed against a notify
// service started without that relaxation, trusting folio up's auth service.
func (s *securitySystem) webhooksReachNoInternalAddress(t *testing.T) {
	u := s.u
	admin := s.admin
	notify := startStrictNotify(t, u)
	urls := []string{
		u.URL("auth") + "/auth/token",
		"http://localhost:" + strconv.Itoa(u.ports["auth"]) + "/",
		"http://0.0.0.0:" + strconv.Itoa(u.ports["auth"]) + "/",
		"http://127.0.0.1:" + strconv.Itoa(u.ports["nats"]) + "/",
		"http://[::1]:" + strconv.Itoa(u.ports["gateway"]) + "/",
		"http://[::ffff:127.0.0.1]:" + strconv.Itoa(u.ports["auth"]) + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/",
		"http://192.168.1.1/",
		"http://100.64.0.1/",
		"http://[fd00::1]/",
	}
	for _, target := range urls {
		r := call(t, "POST", notify+"/subscriptions", map[string]any{"url": target, "events": []string{"book.created"}, "secret": "s3cret-s3cret-s3cret"},
			"Authorization", admin)
		if r.status != http.StatusUnprocessableEntity || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("subscription to %s: got %d %s, want 422 problem+json", target, r.status, r.body)
		}
	}
	r := call(t, "GET", notify+"/subscriptions", nil, "Authorization", admin)
	expect(t, r, http.StatusOK)
	if items, _ := r.json(t)["items"].([]any); len(items) != 0 {
		t.Errorf("refused subscriptions were stored: %s", r.body)
	}
}

// Findings 5 (last_error) and 10 (signatures), on folio up's own notify service,
// which may reach local receivers: one that answers with a banner, one that
// verifies the Standard Webhooks signature.
func (s *securitySystem) deliveriesSignedAndLastErrorClean(t *testing.T) {
	g := s.g
	admin := s.admin
	editor := s.editor
	webhookSecret := s.webhookSecret
	const banner = "INFO {\"server_id\":\"BANNER-4f2a\",\"version\":\"2.10\"}"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, banner+"\r\n")
			c.Close()
		}
	}()
	verifier, err := standardwebhooks.NewWebhook(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	type received struct {
		header http.Header
		body   []byte
		err    error
	}
	deliveries := make(chan received, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		err := verifier.Verify(body, req.Header)
		select {
		case deliveries <- received{req.Header.Clone(), body, err}:
		default:
		}
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer recv.Close()
	subscribe := func(target, secret string) string {
		t.Helper()
		r := call(t, "POST", g+"/subscriptions", map[string]any{"url": target, "events": []string{"author.created"}, "secret": secret},
			"Authorization", admin)
		expect(t, r, http.StatusCreated)
		return r.json(t)["id"].(string)
	}
	bannerSub := subscribe("http://"+ln.Addr().String()+"/hook", "s3cret-s3cret-s3cret")
	subscribe(recv.URL+"/hook", webhookSecret)
	expect(t, call(t, "POST", g+"/authors", map[string]any{"name": "Percy Shelley"}, "Authorization", editor), http.StatusCreated)

	select {
	case d := <-deliveries:
		if d.err != nil {
			t.Errorf("the delivery's signature does not verify with the Standard Webhooks library: %v; headers %v", d.err, d.header)
		}
		ts, err := strconv.ParseInt(d.header.Get("webhook-timestamp"), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
			t.Errorf("webhook-timestamp %q: want the Unix time of the attempt", d.header.Get("webhook-timestamp"))
		}
		if !regexp.MustCompile(`^v1,[A-Za-z0-9+/]+=*$`).MatchString(d.header.Get("webhook-signature")) || d.header.Get("webhook-id") == "" {
			t.Errorf("webhook-id %q, webhook-signature %q: want an id and v1,<base64>", d.header.Get("webhook-id"), d.header.Get("webhook-signature"))
		}
	case <-time.After(60 * time.Second):
		t.Errorf("no delivery reached the receiver within 60 s of POST /authors")
	}

	var lastError string
	polltest.Until(t, "a failed attempt at the banner server", func() error {
		r := call(t, "GET", g+"/subscriptions/"+bannerSub+"/deliveries", nil, "Authorization", admin)
		expect(t, r, http.StatusOK)
		for _, it := range r.json(t)["items"].([]any) {
			if e, _ := it.(map[string]any)["last_error"].(string); e != "" {
				lastError = e
				return nil
			}
		}
		return fmt.Errorf("no delivery with a last_error yet: %s", r.body)
	})
	for _, leak := range []string{"INFO", "BANNER", "server_id", "2.10"} {
		if strings.Contains(lastError, leak) {
			t.Errorf("last_error %q carries the peer's bytes (%q)", lastError, leak)
		}
	}
	t.Logf("last_error for a server answering a NATS banner: %q", lastError)
}

// Finding 6: each register ran argon2id (19 MiB) with no bound on concurrency.
func (s *securitySystem) concurrentRegistersKeepAuthSmall(t *testing.T) {
	u := s.u
	g := s.g
	for i := 1; i <= 50; i++ {
		upRequireAddr(t, "127.0.3."+strconv.Itoa(i))
	}
	pid := u.pids()["auth"]
	if pid == 0 {
		t.Fatalf("folio up named no pid for the auth service")
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := 1; i <= 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each from an address of its own: 50 clients, not one client's burst.
			c := upClient("127.0.3."+strconv.Itoa(i), 60*time.Second)
			body := fmt.Sprintf(`{"email":"flood-%d-%s@folio.test","password":"correct-horse-battery-%d"}`, i, randomTag(), i)
			<-start
			resp, err := c.Post(g+"/auth/register", "application/json", strings.NewReader(body))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("register %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			statuses[resp.StatusCode]++
			switch resp.StatusCode {
			case http.StatusCreated, http.StatusTooManyRequests:
			case http.StatusServiceUnavailable:
				if resp.Header.Get("Retry-After") == "" {
					t.Errorf("register %d: 503 without Retry-After", i)
				}
			default:
				t.Errorf("register %d: got %d, want 201, 429 or 503", i, resp.StatusCode)
			}
		}()
	}
	close(start)
	wg.Wait()
	hwm := vmHWM(t, pid)
	t.Logf("50 concurrent registers from 50 clients: answers %v; auth service peak RSS (VmHWM) %.1f MiB", statuses, float64(hwm)/(1<<20))
	if hwm >= 200<<20 {
		t.Errorf("auth service peak RSS %.1f MiB under 50 concurrent registers, want under 200 MiB", float64(hwm)/(1<<20))
	}
	if statuses[http.StatusCreated] == 0 {
		t.Errorf("no register of 50 succeeded: %v", statuses)
	}
}

// Finding 7: the gateway answered a client's unreadable body with 502.
func (s *securitySystem) gatewayAnswersBadBodies(t *testing.T) {
	u := s.u
	g := s.g
	editor := s.editor
	for _, base := range []string{g, u.URL("book")} {
		// A chunked body over 1 MiB: the reader hides its length.
		big := io.MultiReader(strings.NewReader(`{"title":"`), bytes.NewReader(bytes.Repeat([]byte("a"), 2<<20)), strings.NewReader(`"}`))
		req, _ := http.NewRequest("POST", base+"/books", struct{ io.Reader }{big})
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", editor)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("chunked POST of 2 MiB to %s: %v", base, err)
		} else {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("chunked POST of 2 MiB to %s/books: got %d %s, want 413 problem+json", base, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
		malformed := "POST /books HTTP/1.1\r\nHost: folio\r\nAuthorization: " + editor + "\r\nContent-Type: application/json\r\n" +
			"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
		if status, ct, body := upRaw(t, upHostPort(base), malformed); status != http.StatusBadRequest || ct != "application/problem+json" {
			t.Errorf("malformed chunk to %s/books: got %d %s %s, want 400 problem+json", base, status, ct, body)
		}
	}
}

// Finding 8: a demoted editor kept writing with its old token. Replayed twice: for
// an editor of some standing (its token from an earlier second than the
// demotion), and for one demoted as soon as it got its token, where iat and the
// revocation fall in the same whole second.
func (s *securitySystem) demote(t *testing.T, waitNextSecond bool) {
	u := s.u
	g := s.g
	admin := s.admin
	authorID := s.authorID
	bookID := s.bookID
	email := "demoted-" + randomTag() + "@folio.test"
	r := call(t, "POST", g+"/auth/register", map[string]any{"email": email, "password": "correct-horse-battery"})
	expect(t, r, http.StatusCreated)
	id := r.json(t)["id"].(string)
	expect(t, call(t, "PUT", g+"/auth/users/"+id+"/roles", map[string]any{"roles": []string{"editor"}}, "Authorization", admin), http.StatusOK)
	oldTok := u.login(email, "correct-horse-battery")
	old := bearer(oldTok)
	iat := tokenIssuedAt(t, oldTok)
	// A write that changes nothing: deleting a book that does not exist is 404 for
	// an editor, 403 for a reader, 401 for a revoked token.
	probe := func(base, tok string) response {
		return call(t, "DELETE", base+"/books/00000000-0000-4000-8000-000000000000", nil, "Authorization", tok)
	}
	for _, base := range []string{g, u.URL("book")} {
		expect(t, probe(base, old), http.StatusNotFound)
	}
	if waitNextSecond {
		// Not a pause for the system: the clock's whole second has to move past
		// the token's iat for the editor to be "of some standing".
		for time.Now().Unix() <= iat {
			time.Sleep(20 * time.Millisecond)
		}
	}
	demoted := time.Now()
	expect(t, call(t, "PUT", g+"/auth/users/"+id+"/roles", map[string]any{"roles": []string{"reader"}}, "Authorization", admin), http.StatusOK)
	// The revocation travels through the broker: how long it takes is logged, not
	// bet on; a token never refused fails at polltest's deadline.
	for _, base := range []string{g, u.URL("book")} {
		polltest.Until(t, fmt.Sprintf("%s refuses the demoted editor's old token (iat %d) after the role change at %.3f", base, iat, float64(demoted.UnixMilli())/1000), func() error {
			r := probe(base, old)
			switch r.status {
			case http.StatusUnauthorized:
				t.Logf("%s refused the demoted editor's old token %s after the role change", base, time.Since(demoted).Round(time.Millisecond))
				return nil
			case http.StatusNotFound:
				return fmt.Errorf("DELETE got %d, not 401", r.status)
			default:
				t.Errorf("%s: the demoted editor's old token got %d %s, want 404 until refused, then 401", base, r.status, r.body)
				return nil
			}
		})
	}
	fresh := bearer(u.login(email, "correct-horse-battery"))
	for _, base := range []string{g, u.URL("book")} {
		expect(t, probe(base, fresh), http.StatusForbidden)
		expect(t, call(t, "POST", base+"/books", map[string]any{"title": "By a reader", "author_id": authorID, "genre": "gothic"},
			"Authorization", fresh), http.StatusForbidden)
		expect(t, call(t, "GET", base+"/books/"+bookID, nil, "Authorization", fresh), http.StatusOK)
	}
}

// Finding 8, second half: a validly signed token living until the year 3000 was
// accepted. folio up's signing keys are sealed in its database (finding 4), so
// this is replayed on a book service and a gateway of the test's own, which
// trust a test issuer's key.
func (s *securitySystem) everlastingTokenRefused(t *testing.T) {
	iss := authntest.New(t)
	book := upStart(t, "book", iss.Env()...)
	gateway := upStart(t, "gateway", append(iss.Env(), "FOLIO_BOOK_URLS="+book, "FOLIO_AUTHOR_URLS=http://127.0.0.1:1",
		"FOLIO_AUTH_URLS=http://127.0.0.1:1", "FOLIO_NOTIFY_URLS=http://127.0.0.1:1")...)
	now := time.Now().Truncate(time.Second)
	forever := iss.Sign(authntest.Claims{Roles: []string{authn.RoleEditor}, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: authntest.IssuerName, Audience: jwt.ClaimStrings{authntest.Audience}, Subject: "forever",
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)),
	}})
	for _, base := range []string{gateway, book} {
		probe := base + "/books/00000000-0000-4000-8000-000000000000"
		expect(t, call(t, "DELETE", probe, nil, "Authorization", bearer(iss.Token("fine", authn.RoleEditor))), http.StatusNotFound)
		expect(t, call(t, "DELETE", probe, nil, "Authorization", bearer(forever)), http.StatusUnauthorized)
	}
}

// Finding 9: "Connection: X-Folio-Subject" dropped the subject the gateway set,
// and with it the scope of idempotency keys. Now nothing names the caller but
// its token, which the gateway sets after the hop-by-hop headers are gone.
func (s *securitySystem) connectionHeaderStripsNothing(t *testing.T) {
	g := s.g
	admin := s.admin
	editor := s.editor
	adminSub := s.adminSub
	key := "hop-" + randomTag()
	body := map[string]any{"name": "Hop By Hop"}
	first := call(t, "POST", g+"/authors", body, "Authorization", admin, "Idempotency-Key", key)
	expect(t, first, http.StatusCreated)
	for _, conn := range []string{"X-Folio-Subject", "Authorization", "X-Folio-Subject, Authorization, Idempotency-Key"} {
		r := call(t, "POST", g+"/authors", body, "Authorization", editor, "Idempotency-Key", key, "Connection", conn, subjectHeader, adminSub)
		if r.status != http.StatusCreated {
			t.Errorf("Connection: %s: got %d %s, want 201", conn, r.status, r.body)
			continue
		}
		if r.json(t)["id"] == first.json(t)["id"] {
			t.Errorf("Connection: %s: the editor got the admin's answer %s", conn, r.body)
		}
	}
	// Without a token, Connection: Authorization makes no write pass.
	r := call(t, "POST", g+"/authors", body, "Connection", "Authorization", subjectHeader, adminSub)
	expect(t, r, http.StatusUnauthorized)
}

// Finding 10: the hygiene items, each as a request.
func (s *securitySystem) hygiene(t *testing.T) {
	u := s.u
	g := s.g
	editor := s.editor
	authorID := s.authorID
	bookID := s.bookID
	for _, name := range []string{"gateway", "auth", "author", "book", "notify", "inventory", "payment", "order"} {
		r := call(t, "GET", u.URL(name)+"/metrics", nil)
		if r.status != http.StatusNotFound {
			t.Errorf("GET /metrics on the public port of %s: got %d, want 404", name, r.status)
		}
		m := call(t, "GET", u.metricsURL(name)+"/metrics", nil)
		if m.status != http.StatusOK || !strings.Contains(string(m.body), "# TYPE") {
			t.Errorf("GET /metrics on %s's metrics listener %s: got %d, want 200 and metrics", name, u.metricsURL(name), m.status)
		}
		if host, _, _ := net.SplitHostPort(upHostPort(u.metricsURL(name))); !net.ParseIP(host).IsLoopback() {
			t.Errorf("%s serves /metrics on %s, want a loopback address", name, host)
		}
		for _, path := range []string{"/openapi.json", "/no-such-path"} {
			r := call(t, "GET", u.URL(name)+path, nil)
			if got := r.header.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
				t.Errorf("GET %s%s: X-Content-Type-Options %q, want nosniff", name, path, got)
			}
		}
		r = call(t, "GET", u.URL(name)+"/healthz", nil, "X-Padding", strings.Repeat("a", 100<<10))
		if r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("GET %s/healthz with 100 KiB of headers: got %d, want 431", name, r.status)
		}
	}
	for _, api := range []string{g + "/books/" + bookID, g + "/authors"} {
		if r := call(t, "GET", api, nil); r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Cache-Control") == "" {
			t.Errorf("GET %s: X-Content-Type-Options %q, Cache-Control %q; want nosniff and a Cache-Control", api,
				r.header.Get("X-Content-Type-Options"), r.header.Get("Cache-Control"))
		}
	}
	for _, invisible := range []string{"\u200b\u200b", "\u202e\u2066\u2069", "\ufeff\u200d", "\u00ad\u200c\u2060"} {
		r := call(t, "POST", g+"/authors", map[string]any{"name": invisible}, "Authorization", editor)
		if r.status != http.StatusUnprocessableEntity {
			t.Errorf("POST /authors with the name %+q: got %d %s, want 422", invisible, r.status, r.body)
		}
		r = call(t, "POST", g+"/books", map[string]any{"title": invisible, "author_id": authorID, "genre": "gothic"}, "Authorization", editor)
		if r.status != http.StatusUnprocessableEntity {
			t.Errorf("POST /books with the title %+q: got %d %s, want 422", invisible, r.status, r.body)
		}
	}
}

func (s *securitySystem) stolenDatabaseHoldsNoSecret(t *testing.T) {
	u := s.u
	webhookSecret := s.webhookSecret
	checkPrivate(t, u.dataDir)
	checkSealedKeys(t, filepath.Join(u.dataDir, "auth.db"))
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(webhookSecret, "whsec_"))
	for _, leak := range [][]byte{[]byte(webhookSecret), []byte(strings.TrimPrefix(webhookSecret, "whsec_")), raw} {
		_ = filepath.WalkDir(u.dataDir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(filepath.Dir(path)) == "bin" {
				return nil
			}
			if b, _ := os.ReadFile(path); bytes.Contains(b, leak) {
				t.Errorf("%s holds the webhook secret in clear", path)
			}
			return nil
		})
	}
}

func (s *securitySystem) outputShowsNoSecret(t *testing.T) {
	u := s.u
	webhookSecret := s.webhookSecret
	out := u.out.String()
	seeds, _ := filepath.Glob(filepath.Join(u.dataDir, "nats-keys", "*"))
	if len(seeds) == 0 {
		t.Fatalf("no NATS seeds in %s", filepath.Join(u.dataDir, "nats-keys"))
	}
	for _, f := range seeds {
		seed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.TrimSpace(string(seed)); s != "" && strings.Contains(out, s) {
			t.Errorf("folio up's output shows the NATS seed of %s", filepath.Base(f))
		}
	}
	if regexp.MustCompile(`\bS[UAO][A-Z2-7]{50,}`).MatchString(out) {
		t.Errorf("folio up's output shows something shaped like an nkey seed: %s", regexp.MustCompile(`\bS[UAO][A-Z2-7]{50,}`).FindString(out))
	}
	if m := regexp.MustCompile(`(nats|tls)://[^/\s"@]*:[^/\s"@]*@`).FindString(out); m != "" {
		t.Errorf("folio up's output shows a NATS URL with a password: %s", m)
	}
	if key, err := os.ReadFile(filepath.Join(u.dataDir, "secrets.key")); err == nil && len(bytes.TrimSpace(key)) > 0 &&
		strings.Contains(out, strings.TrimSpace(string(key))) {
		t.Errorf("folio up's output shows the secrets key")
	}
	if strings.Contains(out, webhookSecret) || strings.Contains(out, strings.TrimPrefix(webhookSecret, "whsec_")) {
		t.Errorf("folio up's output shows a webhook secret")
	}
}

// tokenIssuedAt is the iat claim of a token, in Unix seconds.
func tokenIssuedAt(t *testing.T, tok string) int64 {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil || c.IssuedAt == nil {
		t.Fatalf("token %.20s…: no iat (%v)", tok, err)
	}
	return c.IssuedAt.Unix()
}

// checkPrivate checks that dir is 0700 and every database, key and credential file
// in it 0600 (no bits for group or others).
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory %s: mode %v, want 0700", dir, fi.Mode().Perm())
	}
	var files []string
	for _, pattern := range []string{"*.db", "*.db-wal", "*.db-shm", "secrets.key", "credentials", "nats-keys/*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		files = append(files, m...)
	}
	if len(files) < 6 {
		t.Errorf("found only %q in the data directory; want the four databases, the secrets key and the credentials", files)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			continue // a -wal or -shm gone at a checkpoint
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no access for group or others (0600)", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "nats-keys")); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("nats-keys: mode %v, want 0700", fi.Mode().Perm())
	}
}

// checkSealedKeys reads the signing keys out of a copy of an auth database, as a
// thief would, and checks that each is sealed and none is an Ed25519 seed in clear.
func checkSealedKeys(t *testing.T, db string) {
	t.Helper()
	copyDir := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		if b, err := os.ReadFile(db + suffix); err == nil {
			if err := os.WriteFile(filepath.Join(copyDir, "auth.db"+suffix), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(copyDir, "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(`SELECT kid, private_key FROM signing_keys`)
	if err != nil {
		t.Fatalf("read the signing keys from a copy of auth.db: %v", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var kid string
		var stored []byte
		if err := rows.Scan(&kid, &stored); err != nil {
			t.Fatal(err)
		}
		n++
		if !secrets.IsSealed(string(stored)) {
			t.Errorf("signing key %s is stored unsealed (%d bytes)", kid, len(stored))
		}
		if len(stored) == ed25519.SeedSize || bytes.Contains(stored, []byte("PRIVATE KEY")) {
			t.Errorf("signing key %s is stored as a usable private key", kid)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Errorf("no signing keys in auth.db: the check read nothing")
	}
	raw, _ := os.ReadFile(db)
	if bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Errorf("auth.db holds a PEM private key")
	}
}

// startStrictNotify starts a notify service of its own, with the address check on
// (folio up turns it off), trusting the tokens of folio up's auth service; it
// returns its base URL.
func startStrictNotify(t *testing.T, u *upSystem) string {
	t.Helper()
	return upStart(t, "notify", "FOLIO_AUTH_URL="+u.URL("auth"), "FOLIO_WEBHOOK_ALLOW_PRIVATE=false")
}

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("cannot read the auth service's memory (%v): the RSS check needs Linux's /proc", err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}
