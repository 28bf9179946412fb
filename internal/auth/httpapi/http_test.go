package httpapi_test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"folio/internal/auth"
	"folio/internal/auth/httpapi"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
)

func TestRegister(t *testing.T) {
	s := newServer(t, openSQLite(t))
	rec := s.do("POST", "/auth/register", `{"email":"  Ada@Example.COM ","password":"twelve chars","roles":["admin"],"id":"x"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("got %d, want 201: %s", rec.Code, rec.Body)
	}
	u := decode[auth.User](t, rec)
	if !id.Valid(u.ID) || u.Email != "ada@example.com" || !slices.Equal(u.Roles, []string{"reader"}) || u.Version != 1 {
		t.Errorf("got %+v, want a new id, the normalised email and only the reader role", u)
	}
	if loc := rec.Header().Get("Location"); loc != "/auth/users/"+u.ID {
		t.Errorf("got Location %q, want /auth/users/%s", loc, u.ID)
	}
	if body := rec.Body.String(); slices.ContainsFunc([]string{"password", "argon2", "hash"}, func(w string) bool {
		return strings.Contains(body, w)
	}) {
		t.Errorf("the answer shows the password or its hash: %s", body)
	}

	t.Run("taken email", func(t *testing.T) {
		wantProblem(t, s.do("POST", "/auth/register", credentials("ADA@example.com", "another password")), 409, problem.TypeConflict)
	})
	t.Run("idempotent", func(t *testing.T) {
		body := credentials("idem@example.com", "twelve chars")
		first := s.do("POST", "/auth/register", body, idempotency.Header, "k1")
		again := s.do("POST", "/auth/register", body, idempotency.Header, "k1")
		if first.Code != 201 || again.Code != 201 || first.Body.String() != again.Body.String() {
			t.Errorf("got %d %s then %d %s, want the same 201 twice", first.Code, first.Body, again.Code, again.Body)
		}
		wantProblem(t, s.do("POST", "/auth/register", credentials("other@example.com", "twelve chars"), idempotency.Header, "k1"),
			422, problem.TypeValidation)
	})
}

func TestToken(t *testing.T) {
	s := newServer(t, openSQLite(t))
	u := s.register("ada@example.com", "twelve chars")

	rec := s.do("POST", "/auth/token", credentials(" ADA@example.com", "twelve chars"))
	if rec.Code != http.StatusOK {
		t.Fatalf("got %d, want 200: %s", rec.Code, rec.Body)
	}
	tok := decode[auth.Token](t, rec)
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.AccessToken == "" {
		t.Errorf("got %+v, want a Bearer token that expires in 900 s", tok)
	}
	c := s.verify(tok.AccessToken)
	now := s.clock.Now()
	if c.Subject != u.ID || c.Issuer != "folio-auth" || !slices.Equal(c.Audience, []string{"folio"}) ||
		!slices.Equal(c.Roles, []string{"reader"}) || !id.Valid(c.ID) ||
		!c.IssuedAt.Equal(now) || !c.NotBefore.Equal(now) || !c.ExpiresAt.Equal(now.Add(15*time.Minute)) {
		t.Errorf("got claims %+v, want sub %s, iss folio-auth, aud folio, roles [reader], a UUID jti, iat=nbf=now, exp now+15m", c, u.ID)
	}
	if again := s.verify(s.token("ada@example.com", "twelve chars")); again.ID == c.ID {
		t.Error("two tokens share a jti")
	}

	t.Run("wrong credentials", func(t *testing.T) {
		unknown := s.do("POST", "/auth/token", credentials("nobody@example.com", "twelve chars"))
		wrong := s.do("POST", "/auth/token", credentials("ada@example.com", "wrong password"))
		wantProblem(t, unknown, 401, problem.TypeUnauthorized)
		wantProblem(t, wrong, 401, problem.TypeUnauthorized)
		if unknown.Body.String() != wrong.Body.String() {
			t.Errorf("unknown email and wrong password differ:\n%s\n%s", unknown.Body, wrong.Body)
		}
		for _, body := range []string{`{}`, `{"email":"ada@example.com"}`, `{"email":"not an email","password":"twelve chars"}`} {
			wantProblem(t, s.do("POST", "/auth/token", body), 401, problem.TypeUnauthorized)
		}
		wantProblem(t, s.do("POST", "/auth/token", `{"email":1}`), 400, problem.TypeMalformed)
	})
}

func TestLoginRateLimit(t *testing.T) {
	s := newServer(t, openSQLite(t))
	s.register("ada@example.com", "twelve chars")
	s.register("bob@example.com", "twelve chars")
	burst := httpapi.DefaultEmailLimit.Burst
	for range burst {
		rec := s.do("POST", "/auth/token", credentials("ada@example.com", "wrong password"), "RemoteAddr", "10.0.0.1:1000")
		wantProblem(t, rec, 401, problem.TypeUnauthorized)
	}
	// The account's bucket at this address is dry.
	rec := s.do("POST", "/auth/token", credentials("ada@example.com", "twelve chars"), "RemoteAddr", "10.0.0.1:1000")
	wantProblem(t, rec, 429, problem.TypeTooManyRequests)
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("got Retry-After %q, want a positive number of seconds", rec.Header().Get("Retry-After"))
	}
	// The same account from another address is not locked out, and the address
	// can still log in to another account.
	if rec := s.do("POST", "/auth/token", credentials("ada@example.com", "twelve chars"), "RemoteAddr", "10.0.1.1:1000"); rec.Code != 200 {
		t.Errorf("the account from another address: got %d, want 200: %s", rec.Code, rec.Body)
	}
	if rec := s.do("POST", "/auth/token", credentials("bob@example.com", "twelve chars"), "RemoteAddr", "10.0.0.1:1000"); rec.Code != 200 {
		t.Errorf("another account from the address: got %d, want 200: %s", rec.Code, rec.Body)
	}
	// The bucket refills with time.
	s.clock.Advance(time.Minute)
	if rec := s.do("POST", "/auth/token", credentials("ada@example.com", "twelve chars"), "RemoteAddr", "10.0.0.1:1000"); rec.Code != 200 {
		t.Errorf("a minute later: got %d, want 200: %s", rec.Code, rec.Body)
	}

	t.Run("per address", func(t *testing.T) {
		s := newServer(t, openSQLite(t), func(s *settings) { s.limits.IP = httpapi.Limit{Every: time.Minute, Burst: 3} })
		for i := range 3 {
			wantProblem(t, s.do("POST", "/auth/token", credentials("u"+strconv.Itoa(i)+"@example.com", "twelve chars"), "RemoteAddr", "10.9.9.9:1"),
				401, problem.TypeUnauthorized)
		}
		wantProblem(t, s.do("POST", "/auth/token", credentials("fresh@example.com", "twelve chars"), "RemoteAddr", "10.9.9.9:2"),
			429, problem.TypeTooManyRequests)
		wantProblem(t, s.do("POST", "/auth/token", credentials("fresh@example.com", "twelve chars"), "RemoteAddr", "10.9.9.8:2"),
			401, problem.TypeUnauthorized)
	})
}

func TestRoles(t *testing.T) {
	s := newServer(t, openSQLite(t))
	admin, adminTok := s.admin()
	ada := s.register("ada@example.com", "twelve chars")
	adaTok := s.token("ada@example.com", "twelve chars")
	path := "/auth/users/" + ada.ID + "/roles"

	t.Run("by admin", func(t *testing.T) {
		rec := s.do("PUT", path, `{"roles":["editor","reader","editor"]}`, bearer(adminTok)...)
		if rec.Code != 200 {
			t.Fatalf("got %d, want 200: %s", rec.Code, rec.Body)
		}
		u := decode[auth.User](t, rec)
		if u.ID != ada.ID || !slices.Equal(u.Roles, []string{"reader", "editor"}) || u.Version != 2 {
			t.Errorf("got %+v, want roles [reader editor] at version 2", u)
		}
		if rec.Header().Get("ETag") != `"2"` {
			t.Errorf("got ETag %q, want \"2\"", rec.Header().Get("ETag"))
		}
		if c := s.verify(s.token("ada@example.com", "twelve chars")); !slices.Equal(c.Roles, []string{"reader", "editor"}) {
			t.Errorf("a new token has roles %v, want [reader editor]", c.Roles)
		}
	})
	t.Run("if-match", func(t *testing.T) {
		wantProblem(t, s.do("PUT", path, `{"roles":["reader"]}`, append(bearer(adminTok), "If-Match", `"1"`)...), 412, problem.TypePreconditionFailed)
	})
	t.Run("by non-admin", func(t *testing.T) {
		// The role change revoked ada's earlier token; a new one still is no admin's.
		wantProblem(t, s.do("PUT", path, `{"roles":["admin"]}`, bearer(adaTok)...), 401, problem.TypeUnauthorized)
		adaTok := s.token("ada@example.com", "twelve chars")
		wantProblem(t, s.do("PUT", path, `{"roles":["admin"]}`, bearer(adaTok)...), 403, problem.TypeForbidden)
		wantProblem(t, s.do("PUT", "/auth/users/"+admin.ID+"/roles", `{"roles":["reader"]}`, bearer(adaTok)...), 403, problem.TypeForbidden)
	})
	t.Run("validation", func(t *testing.T) {
		wantProblem(t, s.do("PUT", path, `{"roles":["reader","root"]}`, bearer(adminTok)...), 422, problem.TypeValidation, "roles")
		wantProblem(t, s.do("PUT", path, `{}`, bearer(adminTok)...), 422, problem.TypeValidation, "roles")
		wantProblem(t, s.do("PUT", path, `{"roles":"admin"}`, bearer(adminTok)...), 400, problem.TypeMalformed)
	})
	t.Run("unknown account", func(t *testing.T) {
		wantProblem(t, s.do("PUT", "/auth/users/"+id.New()+"/roles", `{"roles":["reader"]}`, bearer(adminTok)...), 404, problem.TypeNotFound)
		wantProblem(t, s.do("PUT", "/auth/users/nope/roles", `{"roles":["reader"]}`, bearer(adminTok)...), 404, problem.TypeNotFound)
	})
	t.Run("no token", func(t *testing.T) {
		rec := s.do("PUT", path, `{"roles":["admin"]}`)
		wantProblem(t, rec, 401, problem.TypeUnauthorized)
		if rec.Header().Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	})
}

func TestUserGet(t *testing.T) {
	s := newServer(t, openSQLite(t))
	_, adminTok := s.admin()
	ada := s.register("ada@example.com", "twelve chars")
	s.register("bob@example.com", "twelve chars")
	adaTok := s.token("ada@example.com", "twelve chars")
	bobTok := s.token("bob@example.com", "twelve chars")
	path := "/auth/users/" + ada.ID

	for _, tc := range []struct {
		name, tok string
	}{{"self", adaTok}, {"admin", adminTok}} {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.do("GET", path, "", bearer(tc.tok)...)
			if rec.Code != 200 {
				t.Fatalf("got %d, want 200: %s", rec.Code, rec.Body)
			}
			if u := decode[auth.User](t, rec); u.ID != ada.ID || u.Email != ada.Email || !slices.Equal(u.Roles, ada.Roles) {
				t.Errorf("got %+v, want %+v", u, ada)
			}
			if rec := s.do("GET", path, "", append(bearer(tc.tok), "If-None-Match", `"1"`)...); rec.Code != 304 {
				t.Errorf("If-None-Match: got %d, want 304", rec.Code)
			}
		})
	}
	t.Run("other user", func(t *testing.T) {
		wantProblem(t, s.do("GET", path, "", bearer(bobTok)...), 404, problem.TypeNotFound)
	})
	t.Run("unknown and invalid ids", func(t *testing.T) {
		wantProblem(t, s.do("GET", "/auth/users/"+id.New(), "", bearer(adminTok)...), 404, problem.TypeNotFound)
		wantProblem(t, s.do("GET", "/auth/users/nope", "", bearer(adminTok)...), 404, problem.TypeNotFound)
	})
	t.Run("no token", func(t *testing.T) {
		wantProblem(t, s.do("GET", path, ""), 401, problem.TypeUnauthorized)
		wantProblem(t, s.do("GET", path, "", "Authorization", "Basic YTpi"), 401, problem.TypeUnauthorized)
		wantProblem(t, s.do("GET", path, "", "Authorization", "Bearer "), 401, problem.TypeUnauthorized)
	})
}
