package e2e

// Finding 3 of issue 8, replayed against the real programs: the book and author
// services, reached directly rather than through the gateway, took writes from
// anyone, and scoped idempotency keys to an X-Folio-Subject header any caller
// could send. Now each service checks the caller's token itself, and a caller is
// only ever who its verified token says.

import (
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
)

// subjectHeader is the header the gateway once named the caller in, and the
// services trusted.
const subjectHeader = "X-Folio-Subject"

// tokenSubject returns the sub claim of a token the test got from the auth service.
func tokenSubject(t *testing.T, tok string) string {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil || c.Subject == "" {
		t.Fatalf("token %.20s…: no subject (%v)", tok, err)
	}
	return c.Subject
}

func TestServicesCheckTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	const adminEmail, adminPassword = "admin@folio.test", "admin-password-123"
	auth := startExtra(t, "auth", anyAddr, "FOLIO_ADMIN_EMAIL="+adminEmail, "FOLIO_ADMIN_PASSWORD="+adminPassword)
	jwks := authJWKS(auth)
	authorSvc, bookSvc := startPair(t, []string{jwks}, []string{jwks})
	g := startExtra(t, "gateway", anyAddr, gatewayEnv(auth, authorSvc, []*service{bookSvc})...).URL()
	authors, books := authorSvc.URL(), bookSvc.URL()

	// The accounts, made on the auth service itself: the admin, an editor the admin
	// gave the role to, a reader.
	login := func(email, password string) string {
		t.Helper()
		r := call(t, "POST", auth.URL()+"/auth/token", map[string]any{"email": email, "password": password})
		expect(t, r, http.StatusOK)
		return r.json(t)["access_token"].(string)
	}
	register := func(email string) string {
		t.Helper()
		r := call(t, "POST", auth.URL()+"/auth/register", map[string]any{"email": email, "password": "correct-horse-battery"})
		expect(t, r, http.StatusCreated)
		return r.json(t)["id"].(string)
	}
	adminTok := login(adminEmail, adminPassword)
	admin := bearer(adminTok)
	editorID := register("editor@folio.test")
	expect(t, call(t, "PUT", auth.URL()+"/auth/users/"+editorID+"/roles", map[string]any{"roles": []string{"editor"}},
		"Authorization", admin), http.StatusOK)
	editor := bearer(login("editor@folio.test", "correct-horse-battery"))
	register("reader@folio.test")
	reader := bearer(login("reader@folio.test", "correct-horse-battery"))

	// Through the gateway, with a token, writes work as they always did.
	r := call(t, "POST", g+"/authors", map[string]any{"name": "Mary Shelley"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
	aid := r.json(t)["id"].(string)
	ts := &trustSystem{g: g, authors: authors, books: books, admin: admin, adminTok: adminTok, editor: editor,
		reader: reader, editorID: editorID, aid: aid}
	r = call(t, "POST", g+"/books", ts.newBook("Frankenstein"), "Authorization", editor)
	expect(t, r, http.StatusCreated)
	ts.victim = r.json(t)["id"].(string)

	t.Run("direct writes without a valid token are refused", ts.directWritesWithoutTokenRefused)
	t.Run("writes with a token work, directly and through the gateway", ts.writesWithTokenWork)
	t.Run("a spoofed subject does not replay another caller's answer", ts.spoofedSubjectReplaysNothing)
}

// trustSystem is what TestServicesCheckTokens' subtests share: the programs'
// URLs, the accounts' tokens, and the author and book the attacks aim at.
type trustSystem struct {
	g, authors, books               string
	admin, adminTok, editor, reader string // admin is adminTok as an Authorization value
	editorID                        string
	aid, victim                     string
}

// newBook is the body of a book by the test's author.
func (ts *trustSystem) newBook(title string) map[string]any {
	return map[string]any{"title": title, "author_id": ts.aid, "genre": "gothic"}
}

func (ts *trustSystem) directWritesWithoutTokenRefused(t *testing.T) {
	g := ts.g
	authors := ts.authors
	books := ts.books
	adminTok := ts.adminTok
	reader := ts.reader
	aid := ts.aid
	victim := ts.victim
	writes := []struct {
		method, url string
		body        any
	}{
		{"POST", authors + "/authors", map[string]any{"name": "Intruder"}},
		{"PUT", authors + "/authors/" + aid, map[string]any{"name": "Defaced"}},
		{"DELETE", authors + "/authors/" + aid, nil},
		{"POST", books + "/books", ts.newBook("Forged")},
		{"PUT", books + "/books/" + victim, ts.newBook("Defaced")},
		{"DELETE", books + "/books/" + victim, nil},
	}
	callers := []struct {
		name   string
		header []string
		want   int
	}{
		{"no token", nil, http.StatusUnauthorized},
		// The header the gateway once set, naming the admin: worth nothing.
		{"no token, naming the admin in " + subjectHeader, []string{subjectHeader, tokenSubject(t, adminTok)}, http.StatusUnauthorized},
		{"a token signed by a key of the attacker's", []string{"Authorization",
			bearer(authntest.New(t).Token(tokenSubject(t, adminTok), authn.RoleAdmin))}, http.StatusUnauthorized},
		{"a reader's token", []string{"Authorization", reader}, http.StatusForbidden},
	}
	for _, c := range callers {
		for _, w := range writes {
			r := call(t, w.method, w.url, w.body, c.header...)
			if r.status != c.want || r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s: %s %s: got %d %s, want %d problem+json", c.name, w.method, w.url, r.status, r.body, c.want)
				continue
			}
			want := "/unauthorized"
			if c.want == http.StatusForbidden {
				want = "/forbidden"
			}
			if typ := problemType(t, r); !strings.HasSuffix(typ, want) {
				t.Errorf("%s: %s %s: problem type %q, want one ending in %s", c.name, w.method, w.url, typ, want)
			}
		}
	}
	// Nothing changed.
	r := call(t, "GET", books+"/books/"+victim, nil)
	expect(t, r, http.StatusOK)
	if b := r.json(t); b["title"] != "Frankenstein" || b["version"] != float64(1) {
		t.Errorf("the book after refused writes: %s", r.body)
	}
	r = call(t, "GET", authors+"/authors/"+aid, nil)
	expect(t, r, http.StatusOK)
	if a := r.json(t); a["name"] != "Mary Shelley" || a["version"] != float64(1) {
		t.Errorf("the author after refused writes: %s", r.body)
	}
	if n := count(t, books+"/books"); n != 1 {
		t.Errorf("%d books after refused writes, want 1", n)
	}
	if n := count(t, authors+"/authors"); n != 1 {
		t.Errorf("%d authors after refused writes, want 1", n)
	}
	// Reads stay public, directly as through the gateway.
	expect(t, call(t, "GET", books+"/books/"+victim, nil), http.StatusOK)
	expect(t, call(t, "GET", authors+"/authors/"+aid+"/books", nil), http.StatusOK)
	expect(t, call(t, "GET", g+"/books/"+victim, nil), http.StatusOK)
}

func (ts *trustSystem) writesWithTokenWork(t *testing.T) {
	g := ts.g
	authors := ts.authors
	books := ts.books
	admin := ts.admin
	editor := ts.editor
	victim := ts.victim
	r := call(t, "POST", authors+"/authors", map[string]any{"name": "Percy Shelley"}, "Authorization", editor)
	expect(t, r, http.StatusCreated)
	r = call(t, "POST", books+"/books", ts.newBook("The Last Man"), "Authorization", admin)
	expect(t, r, http.StatusCreated)
	expect(t, call(t, "DELETE", books+"/books/"+r.json(t)["id"].(string), nil, "Authorization", editor), http.StatusNoContent)
	expect(t, call(t, "DELETE", g+"/books/"+victim, nil, "Authorization", editor), http.StatusNoContent)
	expect(t, call(t, "GET", books+"/books/"+victim, nil), http.StatusNotFound)
}

func (ts *trustSystem) spoofedSubjectReplaysNothing(t *testing.T) {
	g := ts.g
	books := ts.books
	admin := ts.admin
	adminTok := ts.adminTok
	editor := ts.editor
	editorID := ts.editorID
	key := "spoof-" + randomTag()
	body := ts.newBook("Mathilda")
	first := call(t, "POST", g+"/books", body, "Authorization", admin, "Idempotency-Key", key)
	expect(t, first, http.StatusCreated)
	adminBook := first.json(t)["id"].(string)

	// Without a token, naming the admin gets nothing at all.
	expect(t, call(t, "POST", books+"/books", body, "Idempotency-Key", key, subjectHeader, tokenSubject(t, adminTok)),
		http.StatusUnauthorized)
	// The editor naming the admin, straight to the service: its own create, not
	// the admin's answer.
	direct := call(t, "POST", books+"/books", body, "Authorization", editor, "Idempotency-Key", key,
		subjectHeader, tokenSubject(t, adminTok))
	expect(t, direct, http.StatusCreated)
	editorBook := direct.json(t)["id"].(string)
	if editorBook == adminBook {
		t.Fatalf("the editor naming the admin in %s got the admin's book %s back", subjectHeader, adminBook)
	}
	// Through the gateway likewise: the editor's own earlier answer.
	via := call(t, "POST", g+"/books", body, "Authorization", editor, "Idempotency-Key", key,
		subjectHeader, tokenSubject(t, adminTok))
	expect(t, via, http.StatusCreated)
	if got := via.json(t)["id"]; got != editorBook {
		t.Errorf("the editor's repeat through the gateway: got book %v, want its own %s", got, editorBook)
	}
	// And the admin's own repeat, whatever it names, still gets the admin's answer.
	again := call(t, "POST", books+"/books", body, "Authorization", admin, "Idempotency-Key", key,
		subjectHeader, editorID)
	expect(t, again, http.StatusCreated)
	if got := again.json(t)["id"]; got != adminBook {
		t.Errorf("the admin's repeat: got book %v, want %s", got, adminBook)
	}
}
