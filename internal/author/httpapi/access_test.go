package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
)

// TestAccess replays, against the service alone, what reached it directly before it
// checked tokens itself: writes without a token, with a reader's token, with a token
// signed by a key that is not the auth service's. Each is refused as the gateway
// refuses it, and changes nothing; reads stay public.
func TestAccess(t *testing.T) {
	_, books := authortest.StartBookService(t)
	s := newServer(t, openSQLite(t), booksAt(books))
	target := s.create(`{"name":"Target"}`)
	now := time.Now().Truncate(time.Second)
	callers := []struct {
		name          string
		authorization string
		want          int
		typ           string
	}{
		{"no token", "", http.StatusUnauthorized, authn.TypeUnauthorized},
		{"not a bearer token", "Basic ZWRpdG9yOmVkaXRvcg==", http.StatusUnauthorized, authn.TypeUnauthorized},
		{"a token from a foreign key", authntest.Bearer(authntest.New(t).Token("editor-1", authn.RoleEditor)), http.StatusUnauthorized, authn.TypeUnauthorized},
		{"an expired token", authntest.Bearer(s.iss.Sign(authntest.Claims{Roles: []string{authn.RoleEditor},
			RegisteredClaims: jwt.RegisteredClaims{Issuer: authntest.IssuerName, Audience: jwt.ClaimStrings{authntest.Audience},
				Subject: "editor-1", IssuedAt: jwt.NewNumericDate(now.Add(-time.Hour)),
				ExpiresAt: jwt.NewNumericDate(now.Add(-time.Hour + authntest.TTL))}})), http.StatusUnauthorized, authn.TypeUnauthorized},
		{"a reader's token", authntest.Bearer(s.iss.Token("reader-1", authn.RoleReader)), http.StatusForbidden, authn.TypeForbidden},
		{"a token with no role", authntest.Bearer(s.iss.Token("nobody-1")), http.StatusForbidden, authn.TypeForbidden},
	}
	writes := []struct{ method, path, body string }{
		{http.MethodPost, "/authors", `{"name":"Intruder"}`},
		{http.MethodPut, "/authors/" + target.ID, `{"name":"Replaced"}`},
		{http.MethodPatch, "/authors/" + target.ID, `{"name":"Patched"}`},
		{http.MethodDelete, "/authors/" + target.ID, ""},
	}
	for _, c := range callers {
		for _, w := range writes {
			t.Run(c.name+"/"+w.method, func(t *testing.T) {
				header := []string{"Authorization", c.authorization, idempotency.Header, "access-" + id.New()}
				if w.method == http.MethodPatch {
					header = append(header, "Content-Type", "application/merge-patch+json")
				}
				wantProblem(t, s.do(w.method, w.path, w.body, header...), c.want, c.typ)
			})
		}
	}
	list := decode[struct{ Items []author.Author }](t, s.do(http.MethodGet, "/authors", "", "Authorization", ""))
	if len(list.Items) != 1 || list.Items[0].ID != target.ID {
		t.Errorf("refused writes changed the authors: got %+v, want only %s", list.Items, target.ID)
	}
	if got := decode[author.Author](t, s.do(http.MethodGet, "/authors/"+target.ID, "", "Authorization", "")); got.Name != "Target" || got.Version != 1 {
		t.Errorf("refused writes changed the author: got %+v", got)
	}

	t.Run("reads are public", func(t *testing.T) {
		reader := authntest.Bearer(s.iss.Token("reader-1", authn.RoleReader))
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/authors"}, {http.MethodGet, "/authors/" + target.ID}, {http.MethodHead, "/authors/" + target.ID},
			{http.MethodGet, "/authors/" + target.ID + "/books"}, {http.MethodGet, "/authors/books?genre=poetry"},
		} {
			for _, authorization := range []string{"", reader} {
				if rec := s.do(r.method, r.path, "", "Authorization", authorization); rec.Code != http.StatusOK {
					t.Errorf("%s %s, Authorization %.10q: got %d %s, want 200", r.method, r.path, authorization, rec.Code, rec.Body)
				}
			}
		}
		// A token that is sent must be valid even where none is needed.
		foreign := authntest.Bearer(authntest.New(t).Token("reader-1", authn.RoleReader))
		wantProblem(t, s.do(http.MethodGet, "/authors/"+target.ID, "", "Authorization", foreign), http.StatusUnauthorized, authn.TypeUnauthorized)
	})

	t.Run("editors and admins write", func(t *testing.T) {
		for _, role := range []string{authn.RoleEditor, authn.RoleAdmin} {
			bearer := authntest.Bearer(s.iss.Token(role+"-1", role))
			rec := s.do(http.MethodPost, "/authors", `{"name":"By `+role+`"}`, "Authorization", bearer)
			if rec.Code != http.StatusCreated {
				t.Fatalf("%s: POST: got %d %s, want 201", role, rec.Code, rec.Body)
			}
			a := decode[author.Author](t, rec)
			for _, w := range []struct {
				method, body, contentType string
				want                      int
			}{
				{http.MethodPatch, `{"bio":"Patched"}`, "application/merge-patch+json", http.StatusOK},
				{http.MethodPut, `{"name":"Replaced"}`, "application/json", http.StatusOK},
				{http.MethodDelete, "", "", http.StatusNoContent},
			} {
				if rec := s.do(w.method, "/authors/"+a.ID, w.body, "Authorization", bearer, "Content-Type", w.contentType); rec.Code != w.want {
					t.Errorf("%s: %s: got %d %s, want %d", role, w.method, rec.Code, rec.Body, w.want)
				}
			}
		}
	})
}

// subjectHeader is the header the gateway once named the caller in, and the services
// trusted.
const subjectHeader = "X-Folio-Subject"

// TestIdempotencyKeysBelongToTheTokenSubject replays a spoofed X-Folio-Subject: a
// caller naming another in that header, with the other's key and body, must not get
// the other's answer back, since keys are scoped to the verified token's subject.
func TestIdempotencyKeysBelongToTheTokenSubject(t *testing.T) {
	s := newOfflineServer(t)
	alice := authntest.Bearer(s.iss.Token("alice", authn.RoleEditor))
	mallory := authntest.Bearer(s.iss.Token("mallory", authn.RoleEditor))
	key, body := "spoof-"+id.New(), `{"name":"Spoofed"}`
	post := func(authorization, subject string) *author.Author {
		t.Helper()
		rec := s.do(http.MethodPost, "/authors", body, "Authorization", authorization,
			idempotency.Header, key, subjectHeader, subject)
		if rec.Code != http.StatusCreated {
			wantProblem(t, rec, http.StatusUnauthorized, authn.TypeUnauthorized)
			return nil
		}
		a := decode[author.Author](t, rec)
		return &a
	}
	first := post(alice, "alice")
	if first == nil {
		t.Fatal("alice's create was refused")
	}
	// Without a token, the header is worth nothing.
	if a := post("", "alice"); a != nil {
		t.Fatalf("a request without a token naming alice got %s, want 401", a.ID)
	}
	// With a token of its own, the caller is the token's subject, whatever it says.
	if other := post(mallory, "alice"); other == nil || other.ID == first.ID {
		t.Fatalf("mallory naming alice in %s: got %+v, want a new author, not alice's %s", subjectHeader, other, first.ID)
	}
	// And alice's own repeat still gets her first answer, whatever the header says.
	if again := post(alice, "mallory"); again == nil || again.ID != first.ID {
		t.Errorf("alice's repeat: got %+v, want her first answer %s", again, first.ID)
	}
}
