package httpapi_test

import (
	"net/http"
	"testing"

	"folio/internal/platform/problem"
)

// TestCrossSiteBodies: a page in a browser can POST text/plain or a form without a
// CORS preflight; the auth service refuses such bodies with 415 (issue 8, finding 3),
// so no page can register accounts or try passwords through a visitor's browser.
func TestCrossSiteBodies(t *testing.T) {
	s := newServer(t, openSQLite(t))
	body := credentials("ada@example.com", "twelve chars")
	for _, path := range []string{"/auth/register", "/auth/token"} {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
			rec := s.do("POST", path, body, "Content-Type", ct)
			wantProblem(t, rec, http.StatusUnsupportedMediaType, problem.TypeUnsupportedMedia)
		}
	}
	// Nothing was registered: the account can be registered now, once.
	s.register("ada@example.com", "twelve chars")
}
