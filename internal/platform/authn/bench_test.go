package authn

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkRequire measures what in-service token verification adds to a request:
// Require in front of a handler that does nothing, with a token the verifier has
// cached (every request after a caller's first, for up to a minute) and with a
// new token each time (a signature check). It reports numbers only:
//
//	go test -run '^$' -bench Require ./internal/platform/authn/
func BenchmarkRequire(b *testing.B) {
	f := newFixture(b, nil)
	h := f.v.Require(Editor, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	request := func(token string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/books", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}
	serve := func(b *testing.B, req *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status = %d (%s)", rec.Code, rec.Body)
		}
	}
	b.Run("no token, public", func(b *testing.B) {
		h := f.v.Require(Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		req := httptest.NewRequest(http.MethodGet, "/books", nil)
		for b.Loop() {
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	})
	b.Run("cached token", func(b *testing.B) {
		req := request(f.token("ed", []string{RoleEditor}))
		serve(b, req)
		for b.Loop() {
			serve(b, req)
		}
	})
	b.Run("uncached token", func(b *testing.B) {
		// Tokens signed beforehand, so that signing is not measured; each is new
		// to the verifier.
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			reqs[i] = request(f.token(fmt.Sprint("ed-", i), []string{RoleEditor}))
		}
		serve(b, request(f.token("warm", []string{RoleEditor}))) // fetch the JWKS first
		b.ResetTimer()
		for i := range b.N {
			serve(b, reqs[i])
		}
	})
}
