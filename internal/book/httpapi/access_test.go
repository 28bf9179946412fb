package httpapi_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/book/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestAccess replays, against the service alone, what reached it directly before it
// checked tokens itself: writes without a token, with a reader's token, with a token
// signed by a key that is not the auth service's. Each is refused as the gateway
// refuses it, and changes nothing; reads stay public.
func TestAccess(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newServer(t, db)
		target := s.create(t, fields("access"))
		now := time.Now().Truncate(time.Second)
		callers := []struct {
			name          string
			authorization string
			want          int
		}{
			{"no token", "", http.StatusUnauthorized},
			{"not a bearer token", "Basic ZWRpdG9yOmVkaXRvcg==", http.StatusUnauthorized},
			{"a token from a foreign key", authntest.Bearer(authntest.New(t).Token("editor-1", authn.RoleEditor)), http.StatusUnauthorized},
			{"an expired token", authntest.Bearer(s.iss.Sign(authntest.Claims{Roles: []string{authn.RoleEditor},
				RegisteredClaims: jwt.RegisteredClaims{Issuer: authntest.IssuerName, Audience: jwt.ClaimStrings{authntest.Audience},
					Subject: "editor-1", IssuedAt: jwt.NewNumericDate(now.Add(-time.Hour)),
					ExpiresAt: jwt.NewNumericDate(now.Add(-time.Hour + authntest.TTL))}})), http.StatusUnauthorized},
			{"a reader's token", authntest.Bearer(s.iss.Token("reader-1", authn.RoleReader)), http.StatusForbidden},
			{"a token with no role", authntest.Bearer(s.iss.Token("nobody-1")), http.StatusForbidden},
		}
		writes := []struct{ method, path, body string }{
			{http.MethodPost, "/books", mustJSON(t, fields("access"))},
			{http.MethodPut, "/books/" + target.ID, mustJSON(t, fields("access", "title", "Replaced"))},
			{http.MethodPatch, "/books/" + target.ID, `{"title":"Patched"}`},
			{http.MethodDelete, "/books/" + target.ID, ""},
		}
		for _, c := range callers {
			for _, w := range writes {
				t.Run(c.name+"/"+w.method, func(t *testing.T) {
					p := s.do(t, w.method, w.path, w.body, "Authorization", c.authorization,
						idempotency.Header, "access-"+id.New()).problem(t, c.want)
					if c.want == http.StatusUnauthorized {
						p.wantType(t, "/unauthorized")
					} else {
						p.wantType(t, "/forbidden")
					}
				})
			}
		}
		if got := s.do(t, http.MethodGet, "/books?genre=access", "", "Authorization", "").page(t); !slices.Equal(ids(got.Items), []string{target.ID}) {
			t.Errorf("refused writes changed the catalogue: got books %v, want only %s", ids(got.Items), target.ID)
		}
		if diff := sameBook(s.get(t, target.ID), target); diff != "" {
			t.Errorf("refused writes changed the book: %s", diff)
		}

		t.Run("reads are public", func(t *testing.T) {
			for _, r := range []struct{ method, path string }{
				{http.MethodGet, "/books"}, {http.MethodGet, "/books?genre=access"},
				{http.MethodGet, "/books/" + target.ID}, {http.MethodHead, "/books/" + target.ID},
			} {
				if resp := s.do(t, r.method, r.path, "", "Authorization", ""); resp.Status != http.StatusOK {
					t.Errorf("%s %s without a token: got %d %s, want 200", r.method, r.path, resp.Status, resp.Body)
				}
				if resp := s.do(t, r.method, r.path, "", "Authorization", authntest.Bearer(s.iss.Token("reader-1", authn.RoleReader))); resp.Status != http.StatusOK {
					t.Errorf("%s %s with a reader's token: got %d %s, want 200", r.method, r.path, resp.Status, resp.Body)
				}
			}
			// A token that is sent must be valid even where none is needed.
			foreign := authntest.Bearer(authntest.New(t).Token("reader-1", authn.RoleReader))
			s.do(t, http.MethodGet, "/books/"+target.ID, "", "Authorization", foreign).problem(t, http.StatusUnauthorized)
		})

		t.Run("editors and admins write", func(t *testing.T) {
			for _, role := range []string{authn.RoleEditor, authn.RoleAdmin} {
				bearer := authntest.Bearer(s.iss.Token(role+"-1", role))
				b := s.create(t, fields("access-"+role), "Authorization", bearer)
				if resp := s.do(t, http.MethodPatch, "/books/"+b.ID, `{"title":"Patched"}`, "Authorization", bearer); resp.Status != http.StatusOK {
					t.Errorf("%s: PATCH: got %d %s, want 200", role, resp.Status, resp.Body)
				}
				if resp := s.do(t, http.MethodPut, "/books/"+b.ID, mustJSON(t, fields("access-"+role)), "Authorization", bearer); resp.Status != http.StatusOK {
					t.Errorf("%s: PUT: got %d %s, want 200", role, resp.Status, resp.Body)
				}
				if resp := s.do(t, http.MethodDelete, "/books/"+b.ID, "", "Authorization", bearer); resp.Status != http.StatusNoContent {
					t.Errorf("%s: DELETE: got %d %s, want 204", role, resp.Status, resp.Body)
				}
			}
		})
	})
}

// subjectHeader is the header the gateway once named the caller in, and the services
// trusted.
const subjectHeader = "X-Folio-Subject"

// TestIdempotencyKeysBelongToTheTokenSubject replays a spoofed X-Folio-Subject: a
// caller naming another in that header, with the other's key and body, must not get
// the other's answer back, since keys are scoped to the verified token's subject.
func TestIdempotencyKeysBelongToTheTokenSubject(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newServer(t, db)
		alice := authntest.Bearer(s.iss.Token("alice", authn.RoleEditor))
		mallory := authntest.Bearer(s.iss.Token("mallory", authn.RoleEditor))
		key, body := "spoof-"+id.New(), fields("spoof")
		first := s.create(t, body, "Authorization", alice, idempotency.Header, key, subjectHeader, "alice")

		// Without a token, the header is worth nothing.
		s.do(t, http.MethodPost, "/books", mustJSON(t, body), "Authorization", "",
			idempotency.Header, key, subjectHeader, "alice").problem(t, http.StatusUnauthorized)
		// With a token of its own, the caller is the token's subject, whatever it says.
		other := s.create(t, body, "Authorization", mallory, idempotency.Header, key, subjectHeader, "alice")
		if other.ID == first.ID {
			t.Fatalf("mallory naming alice in %s got alice's book %s back", subjectHeader, first.ID)
		}
		// And alice's own repeat still gets her first answer, whatever the header says.
		again := s.create(t, body, "Authorization", alice, idempotency.Header, key, subjectHeader, "mallory")
		if again.ID != first.ID {
			t.Errorf("alice's repeat: got book %s, want her first answer %s", again.ID, first.ID)
		}
	})
}
