package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
)

// TestPutNeedsAnEditor replays the direct calls of a review against the service's
// handler: without a token, with a malformed or forged one, or as a reader, a PUT
// is refused and changes nothing; an admin may, as an editor may.
func TestPutNeedsAnEditor(t *testing.T) {
	s := newServer(t, openSQLite(t))
	bookID := id.New()
	path := "/inventory/" + bookID
	for _, who := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", 401},
		{"not a token", "Bearer not-a-token", 401},
		{"forged", authntest.Bearer(authntest.New(t).Token("x", authn.RoleAdmin)), 401},
		{"reader", authntest.Bearer(s.iss.Token("r", authn.RoleReader)), 403},
	} {
		t.Run(who.name, func(t *testing.T) {
			rec := s.do(http.MethodPut, path, tenEuros, "Authorization", who.auth)
			if rec.Code != who.want {
				t.Errorf("got %d, want %d: %s", rec.Code, who.want, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want problem+json", ct)
			}
		})
	}
	// A browser's cross-site form post carries no token and no JSON.
	if rec := s.do(http.MethodPut, path, tenEuros, "Authorization", "", "Content-Type", "text/plain"); rec.Code != 401 && rec.Code != 415 {
		t.Errorf("cross-site form: got %d, want 401 or 415", rec.Code)
	}
	if rec := s.do(http.MethodGet, "/inventory", "", "Authorization", ""); !strings.Contains(rec.Body.String(), `"items":[]`) {
		t.Errorf("after the refused calls: %s, want no stock", rec.Body)
	}
	// Reads are public, but a read that carries a bad token is refused.
	if rec := s.do(http.MethodGet, "/inventory", "", "Authorization", "Bearer not-a-token"); rec.Code != 401 {
		t.Errorf("GET with a bad token: got %d, want 401", rec.Code)
	}
	if rec := s.do(http.MethodPut, path, tenEuros, "Authorization", authntest.Bearer(s.iss.Token("a", authn.RoleAdmin))); rec.Code != 201 {
		t.Errorf("PUT as an admin: got %d, want 201: %s", rec.Code, rec.Body)
	}
}
