package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"folio/internal/auth"
	"folio/internal/platform/problem"
)

// FuzzRegisterDecode sends arbitrary bodies to POST /auth/register through the whole
// chassis: no body may get a 5xx, an error must be a problem document, and an account
// that is created must keep the rules.
func FuzzRegisterDecode(f *testing.F) {
	seeds := []string{
		`{"email":"ada@example.com","password":"twelve chars"}`,
		`{"email":"  ADA@example.com ","password":"twelve chars","roles":["admin"],"id":"x","version":9}`,
		`{"email":"ada@example.com","password":"short"}`,
		`{"email":"","password":""}`,
		`{"email":"a@b","password":"twelve chars"}`,
		`{"email":"a\u0000@b.com","password":"twelve chars"}`,
		`{"email":"a@b.com","password":"twelve\u0000chars"}`,
		`{"email":"a@b.com","password":"` + strings.Repeat("p", 1025) + `"}`,
		`{"email":5,"password":"twelve chars"}`,
		`{"email":"a@b.com","password":null}`,
		`{"EMAIL":"a@b.com","password":"twelve chars"}`,
		`{"email":"a@b.com","password":"twelve chars"} trailing`,
		`[]`, `null`, `""`, `0`, `{`, ``, "\xff\xfe", `{"email":"\ud800@b.com","password":"twelve chars"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	srv := newServer(f, openSQLite(f))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/auth/register", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.h.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusCreated:
			var u auth.User
			if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil {
				t.Fatalf("201 with a body that is not an account: %s", rec.Body)
			}
			if e, ok := auth.NormalizeEmail(u.Email); !ok || e != u.Email || !slices.Equal(u.Roles, []string{"reader"}) {
				t.Fatalf("created %+v: the email is not normalised or the roles are not [reader]", u)
			}
		case rec.Code >= 500:
			t.Fatalf("body %q: got %d: %s", body, rec.Code, rec.Body)
		default:
			if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Fatalf("body %q: got %d with Content-Type %q, want a problem", body, rec.Code, ct)
			}
			if rec.Code != 400 && rec.Code != 409 && rec.Code != 422 {
				t.Fatalf("body %q: got %d, want 400, 409 or 422", body, rec.Code)
			}
		}
	})
}
