package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"folio/internal/platform/problem"
)

// TestNameMustBeVisible replays issue 8, finding 10: author names made only of bidi
// or zero-width characters were accepted.
func TestNameMustBeVisible(t *testing.T) {
	s := newOfflineServer(t)
	for name, text := range map[string]string{
		"zero-width space":   "\u200b",
		"bidi override":      "\u202e",
		"bidi isolates":      "\u2066\u2069",
		"bidi marks":         "\u200e\u200f",
		"joiners and spaces": "\u200d \u2060\u00a0",
		"byte order mark":    "\ufeff",
		"hangul filler":      "\u3164",
		"blank braille":      "\u2800",
	} {
		t.Run(name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"name": text})
			rec := s.do("POST", "/authors", string(body))
			p := wantProblem(t, rec, http.StatusUnprocessableEntity, problem.TypeValidation)
			if len(p.Errors) != 1 || p.Errors[0].Field != "name" {
				t.Errorf("got errors %+v, want one naming name", p.Errors)
			}
		})
	}
	a := s.create(`{"name":"\u200fנגיב מחפוז\u200f"}`)
	rec := s.do("PATCH", "/authors/"+a.ID, `{"name":"\u200b\u202e"}`, "Content-Type", "application/merge-patch+json")
	wantProblem(t, rec, http.StatusUnprocessableEntity, problem.TypeValidation)
}

// TestCrossSiteBodies replays issue 8, finding 3: a page in a browser can POST
// text/plain to a service without a CORS preflight. It gets 415 and creates nothing.
func TestCrossSiteBodies(t *testing.T) {
	s := newOfflineServer(t)
	target := s.create(`{"name":"Target"}`)
	for _, tc := range []struct{ method, path, contentType string }{
		{"POST", "/authors", "text/plain"},
		{"POST", "/authors", "application/x-www-form-urlencoded"},
		{"PUT", "/authors/" + target.ID, "text/plain;charset=UTF-8"},
		{"PATCH", "/authors/" + target.ID, "text/plain"},
	} {
		rec := s.do(tc.method, tc.path, `{"name":"Sent Cross-Site"}`, "Content-Type", tc.contentType)
		wantProblem(t, rec, http.StatusUnsupportedMediaType, problem.TypeUnsupportedMedia)
	}
	rec := s.do("POST", "/authors", `{"name":"Sent Cross-Site"}`, "Content-Type", "text/plain", "Idempotency-Key", "cross-site")
	wantProblem(t, rec, http.StatusUnsupportedMediaType, problem.TypeUnsupportedMedia)
	list := s.do("GET", "/authors", "")
	if list.Code != http.StatusOK || strings.Contains(list.Body.String(), "Sent Cross-Site") {
		t.Errorf("after the refused requests: got %d %s, want nothing created or changed", list.Code, list.Body)
	}
}
