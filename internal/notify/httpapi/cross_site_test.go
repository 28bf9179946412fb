package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"folio/internal/platform/problem"
	"folio/internal/platform/rest/resttest"
)

// TestCrossSiteSubscription replays issue 8, finding 3: any web page could make a
// developer's browser POST text/plain to localhost:8084/subscriptions (no CORS
// preflight for that type) and got 201. Now the body's type is refused with 415 and
// no subscription exists.
func TestCrossSiteSubscription(t *testing.T) {
	s := newServer(t, openSQLite(t))
	body := `{"url":"https://hooks.example.com/folio","events":["book.created"],"secret":"` + secret + `"}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		rec := s.do(http.MethodPost, "/subscriptions", body, "Content-Type", ct)
		resttest.WantProblem(t, rec, http.StatusUnsupportedMediaType, problem.TypeUnsupportedMedia)
	}
	list := s.do(http.MethodGet, "/subscriptions", "")
	if list.Code != http.StatusOK || strings.Contains(list.Body.String(), "hooks.example.com") {
		t.Errorf("after the refused requests: got %d %s, want no subscription", list.Code, list.Body)
	}
	if rec := s.do(http.MethodPost, "/subscriptions", body); rec.Code != http.StatusCreated {
		t.Errorf("the same body as application/json: got %d %s, want 201", rec.Code, rec.Body)
	}
}
