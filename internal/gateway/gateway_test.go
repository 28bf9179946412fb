package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/clientip"
)

func TestRoutes(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("admin-1", []string{authn.RoleAdmin})
	tests := []struct {
		method, target, body, service, path, query string
	}{
		{"GET", "/books?limit=5&cursor=abc", "", ServiceBook, "/books", "limit=5&cursor=abc"},
		{"GET", "/books/0190-x", "", ServiceBook, "/books/0190-x", ""},
		{"POST", "/books", `{"title":"Dune"}`, ServiceBook, "/books", ""},
		{"PATCH", "/books/a%2Fb", `{"title":"x"}`, ServiceBook, "/books/a%2Fb", ""},
		{"PUT", "/authors/7", `{"name":"Le Guin"}`, ServiceAuthor, "/authors/7", ""},
		{"GET", "/authors/books?genre=sf", "", ServiceAuthor, "/authors/books", "genre=sf"},
		{"DELETE", "/authors/7", "", ServiceAuthor, "/authors/7", ""},
		{"POST", "/auth/token", `{"email":"a@b.c"}`, ServiceAuth, "/auth/token", ""},
		{"GET", "/auth/users/1", "", ServiceAuth, "/auth/users/1", ""},
		{"GET", "/.well-known/jwks.json", "", ServiceAuth, "/.well-known/jwks.json", ""},
		{"GET", "/subscriptions", "", ServiceNotify, "/subscriptions", ""},
		{"DELETE", "/subscriptions/9", "", ServiceNotify, "/subscriptions/9", ""},
		{"GET", "/inventory/0190-x", "", ServiceInventory, "/inventory/0190-x", ""},
		{"PUT", "/inventory/0190-x", `{"quantity":3}`, ServiceInventory, "/inventory/0190-x", ""},
		{"POST", "/orders", `{"items":[]}`, ServiceOrder, "/orders", ""},
		{"POST", "/orders/7/cancel", "", ServiceOrder, "/orders/7/cancel", ""},
	}
	for i, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rid := fmt.Sprintf("req-%d", i)
			trace := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			r := h.do(tt.method, tt.target, admin, tt.body, map[string]string{
				"X-Request-ID": rid, "traceparent": trace, "X-Custom": "kept", "Content-Type": "application/json",
			})
			if r.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", r.status, r.body)
			}
			e := r.echo(t)
			checks := []struct{ name, got, want string }{
				{"service", e.Service, tt.service},
				{"method", e.Method, tt.method},
				{"path", e.RawPath, tt.path},
				{"query", e.Query, tt.query},
				{"body", e.Body, tt.body},
				{"X-Custom", e.Header.Get("X-Custom"), "kept"},
				{"Content-Type", e.Header.Get("Content-Type"), "application/json"},
				{"Authorization", e.Header.Get("Authorization"), "Bearer " + admin},
				{"X-Request-ID upstream", e.Header.Get("X-Request-ID"), rid},
				{"X-Request-ID echoed", r.header.Get("X-Request-ID"), rid},
				// A client's trace context stops at the gateway (tracing_test.go).
				{"traceparent", e.Header.Get("Traceparent"), ""},
				{"X-Forwarded-For", e.Header.Get("X-Forwarded-For"), "127.0.0.1"},
				{"X-Forwarded-Host", e.Header.Get("X-Forwarded-Host"), strings.TrimPrefix(h.url, "http://")},
				{"X-Forwarded-Proto", e.Header.Get("X-Forwarded-Proto"), "http"},
				{"X-Folio-Subject", e.Header.Get("X-Folio-Subject"), ""},
			}
			if got := r.header.Values("X-Request-ID"); len(got) != 1 {
				t.Errorf("response X-Request-ID values = %q, want exactly one", got)
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}

	t.Run("a request id is generated and passed on", func(t *testing.T) {
		r := h.do("GET", "/books", "", "", nil)
		id := r.header.Get("X-Request-ID")
		if id == "" || r.echo(t).Header.Get("X-Request-ID") != id {
			t.Fatalf("response id %q, upstream id %q", id, r.echo(t).Header.Get("X-Request-ID"))
		}
	})
	for _, path := range []string{"/nope", "/booksx", "/v1/books", "/", "/authorsbooks", "/Books"} {
		t.Run("unknown "+path, func(t *testing.T) {
			wantProblem(t, h.do("GET", path, admin, "", nil), http.StatusNotFound)
		})
	}
}

func TestAuthorization(t *testing.T) {
	h := newHarness(t, nil)
	tokens := map[string]string{
		"none":   "",
		"reader": h.token("reader-1", []string{authn.RoleReader}),
		"editor": h.token("editor-1", []string{authn.RoleEditor}),
		"admin":  h.token("admin-1", []string{authn.RoleAdmin}),
		"norole": h.token("norole-1", nil),
	}
	tests := []struct {
		method, path string
		want         map[string]int // by role; roles not listed get def
		def          int
	}{
		{"GET", "/books", nil, 200},
		{"HEAD", "/books/1", nil, 200},
		{"GET", "/authors/1", nil, 200},
		{"GET", "/authors/books?genre=sf", nil, 200},
		{"POST", "/books", map[string]int{"none": 401, "reader": 403, "norole": 403}, 200},
		{"PUT", "/books/1", map[string]int{"none": 401, "reader": 403, "norole": 403}, 200},
		{"PATCH", "/authors/1", map[string]int{"none": 401, "reader": 403, "norole": 403}, 200},
		{"DELETE", "/authors/1", map[string]int{"none": 401, "reader": 403, "norole": 403}, 200},
		{"OPTIONS", "/books", map[string]int{"none": 401, "reader": 403, "norole": 403}, 200},
		{"GET", "/subscriptions", map[string]int{"none": 401, "admin": 200}, 403},
		{"POST", "/subscriptions", map[string]int{"none": 401, "admin": 200}, 403},
		{"GET", "/subscriptions/1/deliveries", map[string]int{"none": 401, "admin": 200}, 403},
		{"DELETE", "/subscriptions/1", map[string]int{"none": 401, "admin": 200}, 403},
		{"POST", "/auth/register", nil, 200},
		{"POST", "/auth/token", nil, 200},
		{"GET", "/.well-known/jwks.json", nil, 200},
		{"GET", "/auth/users/1", map[string]int{"none": 401}, 200},
		{"PUT", "/auth/users/1/roles", map[string]int{"none": 401}, 200},
		{"GET", "/auth/register", map[string]int{"none": 401}, 200},
		// The order saga's routes: stock is public to read and an editor's to set;
		// orders are any signed-in user's (the order service shows each its own).
		{"GET", "/inventory/1", nil, 200},
		{"GET", "/inventory", nil, 200},
		{"PUT", "/inventory/1", map[string]int{"none": 401, "reader": 403, "norole": 403}, 200},
		{"POST", "/orders", map[string]int{"none": 401}, 200},
		{"GET", "/orders", map[string]int{"none": 401}, 200},
		{"GET", "/orders/1", map[string]int{"none": 401}, 200},
		{"POST", "/orders/1/cancel", map[string]int{"none": 401}, 200},
		{"GET", "/payments/1", nil, 404}, // the payment service is internal: no route
	}
	for _, tt := range tests {
		for _, role := range []string{"none", "reader", "editor", "admin", "norole"} {
			want, ok := tt.want[role]
			if !ok {
				want = tt.def
			}
			t.Run(fmt.Sprintf("%s %s as %s", tt.method, tt.path, role), func(t *testing.T) {
				r := h.do(tt.method, tt.path, tokens[role], "", nil)
				if r.status != want {
					t.Fatalf("status = %d, want %d (body %s)", r.status, want, r.body)
				}
				if want == 401 {
					if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
						t.Errorf("WWW-Authenticate = %q, want Bearer…", got)
					}
				}
				if want >= 400 && tt.method != "HEAD" {
					wantProblem(t, r, want)
				}
			})
		}
	}
}

func TestJWTAttacks(t *testing.T) {
	h := newHarness(t, nil)
	other := h.iss.Impostor() // same kid, a key the JWKS does not hold
	unknown := authntest.New(t)
	good := h.token("eve", []string{authn.RoleAdmin})
	if r := h.do("POST", "/books", good, "{}", nil); r.status != 200 {
		t.Fatalf("control: a valid token got %d (%s)", r.status, r.body)
	}

	skewed := h.token("eve", []string{authn.RoleAdmin}, func(c *claims) {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-authn.Leeway / 2))
	})
	if r := h.do("POST", "/books", skewed, "{}", nil); r.status != 200 {
		t.Fatalf("control: a token expired within the leeway got %d (%s)", r.status, r.body)
	}

	validClaims := func() claims { return h.iss.Claims("eve", authn.RoleAdmin) }
	algNone := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims())
		tok.Header["kid"] = h.iss.KeyID()
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hs256 := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims())
		tok.Header["kid"] = h.iss.KeyID()
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	escalated := func() string {
		// A reader's valid token whose payload is rewritten to claim admin, keeping the signature.
		parts := strings.Split(h.token("eve", []string{authn.RoleReader}), ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		payload = []byte(strings.Replace(string(payload), `"reader"`, `"admin"`, 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(payload)
		return strings.Join(parts, ".")
	}
	now := time.Now()
	attacks := []struct{ name, token string }{
		{"alg none", algNone()},
		{"alg none without signature dot", strings.TrimSuffix(algNone(), ".")},
		{"HS256 keyed with the public key bytes", hs256(h.iss.PublicKey())},
		{"HS256 keyed with the public key's x", hs256([]byte(base64.RawURLEncoding.EncodeToString(h.iss.PublicKey())))},
		{"another key with a known kid", other.Sign(validClaims())},
		{"expired", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) })},
		{"expired beyond the leeway", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-authn.Leeway - 5*time.Second)) })},
		{"not yet valid", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })},
		{"issued in the future", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })},
		{"no exp", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.ExpiresAt = nil })},
		{"no sub", h.token("", []string{authn.RoleAdmin})},
		{"wrong iss", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.Issuer = "evil-auth" })},
		{"no iss", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.Issuer = "" })},
		{"wrong aud", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.Audience = jwt.ClaimStrings{"other"} })},
		{"tampered payload (roles escalated)", escalated()},
		{"exp in the year 3000", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
		})},
		{"lifetime over the token TTL", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-time.Hour))
		})},
		{"no iat", h.token("eve", []string{authn.RoleAdmin}, func(c *claims) { c.IssuedAt = nil })},
		{"garbage", "not.a.jwt"},
		{"empty signature", strings.Join(strings.Split(good, ".")[:2], ".") + "."},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			r := h.do("POST", "/books", a.token, "{}", nil)
			wantProblem(t, r, http.StatusUnauthorized)
			// Each attack must fail for its own reason, not by accident.
			if want := attackReason[a.name]; !strings.Contains(string(r.body), want) {
				t.Errorf("problem %s does not say %q", r.body, want)
			}
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer…", got)
			}
		})
	}
	t.Run("not Bearer", func(t *testing.T) {
		r := h.do("POST", "/books", "", "{}", map[string]string{"Authorization": "Basic ZXZlOmV2ZQ=="})
		wantProblem(t, r, http.StatusUnauthorized)
	})
	t.Run("a bad token is refused on a public path too", func(t *testing.T) {
		wantProblem(t, h.do("GET", "/books", escalated(), "", nil), http.StatusUnauthorized)
	})

	t.Run("unknown kid, without fetching the JWKS per request", func(t *testing.T) {
		before := h.iss.Fetches()
		tok := unknown.Sign(validClaims())
		for range 20 {
			r := h.do("POST", "/books", tok, "{}", nil)
			wantProblem(t, r, http.StatusUnauthorized)
			if !strings.Contains(string(r.body), "not signed by a known key") {
				t.Fatalf("problem %s does not name the unknown key", r.body)
			}
		}
		if got := h.iss.Fetches(); got-before > 1 || got > 2 {
			t.Fatalf("JWKS fetched %d times in all, %d for 20 unknown-kid requests; want at most 2 and 1", got, got-before)
		}
	})
}

var attackReason = map[string]string{
	"alg none":                              "signature or algorithm",
	"alg none without signature dot":        "malformed",
	"HS256 keyed with the public key bytes": "signature or algorithm",
	"HS256 keyed with the public key's x":   "signature or algorithm",
	"another key with a known kid":          "signature or algorithm",
	"expired":                               "expired",
	"expired beyond the leeway":             "expired",
	"not yet valid":                         "not valid yet",
	"issued in the future":                  "not valid yet",
	"no exp":                                "lacks a required claim",
	"no sub":                                "no subject",
	"wrong iss":                             "issued by someone else",
	"no iss":                                "lacks a required claim",
	"wrong aud":                             "meant for someone else",
	"tampered payload (roles escalated)":    "signature or algorithm",
	"garbage":                               "malformed",
	"exp in the year 3000":                  "lifetime",
	"lifetime over the token TTL":           "lifetime",
	"no iat":                                "lacks a required claim",
	"empty signature":                       "signature or algorithm",
}

func TestJWKSCachedAndRefreshedOnUnknownKid(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.JWKSMinRefresh = time.Nanosecond })
	tok := h.token("ed", []string{authn.RoleEditor})
	for range 30 {
		if r := h.do("POST", "/books", tok, "{}", nil); r.status != 200 {
			t.Fatalf("status = %d, want 200 (%s)", r.status, r.body)
		}
	}
	if got := h.iss.Fetches(); got != 1 {
		t.Fatalf("JWKS fetched %d times for 30 requests with a known key, want 1", got)
	}
	// The auth service rotates to a new key: the first token with its kid makes the
	// gateway fetch the set again.
	h.iss.Rotate()
	if r := h.do("POST", "/books", h.token("ed", []string{authn.RoleEditor}), "{}", nil); r.status != 200 {
		t.Fatalf("token from the rotated key: status = %d, want 200 (%s)", r.status, r.body)
	}
	if got := h.iss.Fetches(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", got)
	}
}

// TestNoHeaderNamesTheCaller replays finding 9 of issue 8 and its kin: the services
// learn the caller only from the token, which reaches them whatever hop-by-hop
// header names it, and an X-Folio-* header a client sends never reaches them.
func TestNoHeaderNamesTheCaller(t *testing.T) {
	h := newHarness(t, nil)
	forged := map[string]string{"X-Folio-Subject": "admin-1", "X-Folio-Roles": "admin"}
	e := h.do("GET", "/books", "", "", forged).echo(t)
	for _, name := range []string{"X-Folio-Subject", "X-Folio-Roles"} {
		if got := e.Header.Values(name); len(got) != 0 {
			t.Errorf("anonymous: upstream saw %s %q, want none", name, got)
		}
	}
	tok := h.token("editor-7", []string{authn.RoleEditor})
	for _, conn := range []string{"", "X-Folio-Subject", "Authorization", "authorization, X-Folio-Subject, keep-alive"} {
		t.Run("Connection: "+conn, func(t *testing.T) {
			hdr := map[string]string{"X-Folio-Subject": "admin-1"}
			if conn != "" {
				hdr["Connection"] = conn
			}
			e := h.do("POST", "/books", tok, "{}", hdr).echo(t)
			if got := e.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+tok {
				t.Errorf("upstream saw Authorization %q, want the client's token", got)
			}
			if got := e.Header.Values("X-Folio-Subject"); len(got) != 0 {
				t.Errorf("upstream saw X-Folio-Subject %q, want none", got)
			}
		})
	}
	t.Run("only the verified Authorization value is passed on", func(t *testing.T) {
		req, err := http.NewRequest("POST", h.url+"/books", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Add("Authorization", "Bearer "+tok)
		req.Header.Add("Authorization", "Bearer "+h.token("admin-1", []string{authn.RoleAdmin}))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		e := response{status: resp.StatusCode, body: b}.echo(t)
		if got := e.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+tok {
			t.Errorf("upstream saw Authorization %q, want only the first, verified one", got)
		}
	})
}

func TestRateLimit(t *testing.T) {
	// A rate this low refills nothing while the test runs, so the counts are exact.
	h := newHarness(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 3 })
	alice := h.token("alice", []string{authn.RoleReader})
	limited := 0
	for i := range 5 {
		r := h.do("GET", "/books", alice, "", nil)
		if r.status == http.StatusOK {
			continue
		}
		limited++
		if i < 3 {
			t.Fatalf("request %d was limited within the burst of 3", i+1)
		}
		wantProblem(t, r, http.StatusTooManyRequests)
		n, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || n < 1 {
			t.Fatalf("Retry-After = %q, want whole seconds >= 1", r.header.Get("Retry-After"))
		}
	}
	if limited != 2 {
		t.Fatalf("%d of 5 requests limited, want 2", limited)
	}
	// Another subject from the same address, and anonymous callers (keyed by the
	// address), have budgets of their own.
	if r := h.do("GET", "/books", h.token("bob", []string{authn.RoleReader}), "", nil); r.status != http.StatusOK {
		t.Fatalf("another subject: status = %d, want 200", r.status)
	}
	for i := range 3 {
		if r := h.do("GET", "/books", "", "", nil); r.status != http.StatusOK {
			t.Fatalf("anonymous request %d: status = %d, want 200", i+1, r.status)
		}
	}
	wantProblem(t, h.do("GET", "/books", "", "", nil), http.StatusTooManyRequests)
	if r := h.do("GET", "/books", h.token("carol", []string{authn.RoleReader}), "", nil); r.status != http.StatusOK {
		t.Fatalf("a third subject after the address ran out: status = %d, want 200", r.status)
	}
}

func TestLoadBalancing(t *testing.T) {
	t.Run("every healthy instance gets traffic", func(t *testing.T) {
		var a, b atomic.Int64
		h := newHarness(t, func(c *Config) {
			c.Instances[ServiceBook] = []string{newEcho(t, ServiceBook, "a", &a).URL, newEcho(t, ServiceBook, "b", &b).URL}
		})
		for range 10 {
			if r := h.do("GET", "/books", "", "", nil); r.status != 200 {
				t.Fatalf("status = %d", r.status)
			}
		}
		if a.Load() == 0 || b.Load() == 0 || a.Load()+b.Load() != 10 {
			t.Fatalf("instance hits a=%d b=%d, want both > 0 and 10 in all", a.Load(), b.Load())
		}
	})

	t.Run("a dead instance costs no failed GET", func(t *testing.T) {
		var a, b atomic.Int64
		h := newHarness(t, func(c *Config) {
			c.Instances[ServiceBook] = []string{newEcho(t, ServiceBook, "a", &a).URL, closedURL(t), newEcho(t, ServiceBook, "b", &b).URL}
		})
		editor := h.token("ed", []string{authn.RoleEditor})
		failed := 0
		for i := range 100 {
			method := "GET"
			if i%2 == 1 {
				method = "HEAD"
			}
			if r := h.do(method, "/books/1", editor, "", nil); r.status != 200 {
				failed++
			}
		}
		if failed != 0 {
			t.Fatalf("%d of 100 reads failed, want 0", failed)
		}
		if a.Load()+b.Load() != 100 || a.Load() == 0 || b.Load() == 0 {
			t.Fatalf("instance hits a=%d b=%d, want 100 in all over both", a.Load(), b.Load())
		}
		// The dead instance was ejected: later writes (never retried) all reach a live one.
		for range 10 {
			if r := h.do("POST", "/books", editor, "{}", nil); r.status != 200 {
				t.Fatalf("POST after ejection: status = %d, want 200 (%s)", r.status, r.body)
			}
		}
	})
}

func TestPoolEjection(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := Config{EjectAfter: 3, EjectFor: 10 * time.Second, Now: func() time.Time { return now }}
	urls := mustURLs(t, "http://a", "http://b", "http://c")
	m := newInstruments(prometheusRegistry())
	p := newPool(ServiceBook, urls, cfg, m)
	dead := (*p.instances.Load())[1]
	picked := func(n int) map[*instance]int {
		got := map[*instance]int{}
		for range n {
			got[p.pick(nil)]++
		}
		return got
	}
	p.failed(dead, "connect_error")
	p.failed(dead, "connect_error")
	if picked(9)[dead] == 0 {
		t.Fatal("an instance was ejected before 3 consecutive failures")
	}
	p.failed(dead, "connect_error")
	p.failed(dead, "timeout") // a request that was in flight on it
	if n := testutil.ToFloat64(m.ejections.WithLabelValues(ServiceBook, "connect_error")) +
		testutil.ToFloat64(m.ejections.WithLabelValues(ServiceBook, "timeout")); n != 1 {
		t.Fatalf("%v ejections counted, want 1: a failure while ejected is not another ejection", n)
	}
	if n := picked(30)[dead]; n != 0 {
		t.Fatalf("ejected instance picked %d times, want 0", n)
	}
	now = now.Add(10 * time.Second)
	if picked(9)[dead] == 0 {
		t.Fatal("instance not tried again after its ejection ended")
	}
	p.failed(dead, "connect_error") // still failing: out again at once
	if n := picked(30)[dead]; n != 0 {
		t.Fatalf("re-ejected instance picked %d times, want 0", n)
	}
	p.succeeded(dead)
	if picked(9)[dead] == 0 {
		t.Fatal("instance not back in rotation after a success")
	}
	// All ejected: still pick one rather than refuse; the retry avoids the first choice.
	for _, in := range *p.instances.Load() {
		for range 3 {
			p.failed(in, "connect_error")
		}
	}
	first := p.pick(nil)
	if first == nil {
		t.Fatal("pick returned nil with every instance ejected")
	}
	if second := p.pick(first); second == nil || second == first {
		t.Fatalf("pick(first) = %v, want another instance", second)
	}
	solo := newPool(ServiceBook, urls[:1], cfg, newInstruments(prometheusRegistry()))
	if got := solo.pick((*solo.instances.Load())[0]); got != nil {
		t.Fatalf("pick excluding the only instance = %v, want nil", got)
	}
}

func TestUpstreamFailures(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	h := newHarness(t, func(c *Config) {
		c.UpstreamTimeout = 300 * time.Millisecond
		c.Instances[ServiceBook] = []string{closedURL(t)}
		c.Instances[ServiceAuthor] = []string{newAborting(t).URL}
		c.Instances[ServiceNotify] = []string{newHanging(t, hang).URL}
	})
	editor := h.token("ed", []string{authn.RoleEditor})
	admin := h.token("root", []string{authn.RoleAdmin})

	t.Run("service down, GET", func(t *testing.T) {
		r := h.do("GET", "/books", "", "", nil)
		wantProblem(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After on 503")
		}
		if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "refused") {
			t.Errorf("the problem leaks the cause: %s", r.body)
		}
	})
	t.Run("service down, POST", func(t *testing.T) {
		wantProblem(t, h.do("POST", "/books", editor, "{}", nil), http.StatusServiceUnavailable)
	})
	t.Run("connection dropped", func(t *testing.T) {
		wantProblem(t, h.do("GET", "/authors", "", "", nil), http.StatusBadGateway)
	})
	t.Run("no answer in time", func(t *testing.T) {
		wantProblem(t, h.do("GET", "/subscriptions", admin, "", nil), http.StatusGatewayTimeout)
	})
}

func TestCORS(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CORSOrigins = []string{"https://app.example"} })
	pre := h.do("OPTIONS", "/books", "", "", map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
	})
	if pre.status != http.StatusNoContent && pre.status != http.StatusOK {
		t.Fatalf("preflight status = %d, want 204", pre.status)
	}
	if got := pre.header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Fatalf("preflight Access-Control-Allow-Origin = %q", got)
	}
	r := h.do("GET", "/books", "", "", map[string]string{"Origin": "https://app.example"})
	if got := r.header.Get("Access-Control-Allow-Origin"); r.status != 200 || got != "https://app.example" {
		t.Fatalf("GET: status %d, Access-Control-Allow-Origin = %q", r.status, got)
	}
	r = h.do("GET", "/books", "", "", map[string]string{"Origin": "https://evil.example"})
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("other origin got Access-Control-Allow-Origin %q", got)
	}
	r = h.do("POST", "/books", "", "{}", map[string]string{"Origin": "https://app.example"})
	if got := r.header.Get("Access-Control-Allow-Origin"); r.status != 401 || got != "https://app.example" {
		t.Fatalf("401 answer: status %d, Access-Control-Allow-Origin %q; errors must be readable by the page", r.status, got)
	}

	off := newHarness(t, nil)
	r = off.do("GET", "/books", "", "", map[string]string{"Origin": "https://app.example"})
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("CORS off: Access-Control-Allow-Origin = %q", got)
	}
}

// TestRateLimitComesBeforeVerification replays the last point of finding 10 of
// issue 8: a flood of forged tokens from one address is refused by the rate limit
// before the gateway checks any more signatures, while a caller whose token it has
// already verified goes on.
func TestRateLimitComesBeforeVerification(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 3 })
	verifications := func() float64 {
		t.Helper()
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, mf := range mfs {
			if mf.GetName() == "folio_token_verifications_total" {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	alice := h.token("alice", []string{authn.RoleEditor})
	if r := h.do("POST", "/books", alice, "{}", nil); r.status != http.StatusOK {
		t.Fatalf("control: status = %d, want 200", r.status)
	}
	forger := h.iss.Impostor() // signs with a key id the JWKS knows, but not its key
	counts := map[int]int{}
	for i := range 30 {
		tok := forger.Token(fmt.Sprintf("forged-%d", i), authn.RoleAdmin)
		r := h.do("POST", "/books", tok, "{}", nil)
		counts[r.status]++
		if r.status == http.StatusTooManyRequests {
			wantProblem(t, r, http.StatusTooManyRequests)
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	// The burst of 3 is one for alice's first token and two forged ones.
	if counts[http.StatusUnauthorized] != 2 || counts[http.StatusTooManyRequests] != 28 {
		t.Errorf("forged tokens got %v, want 2 × 401 then 28 × 429", counts)
	}
	if got := verifications(); got != 3 {
		t.Errorf("%v tokens verified in full, want 3: alice's and the two forged ones within the burst", got)
	}
	if r := h.do("POST", "/books", alice, "{}", nil); r.status != http.StatusOK {
		t.Errorf("alice's verified token from the flooded address: status = %d, want 200", r.status)
	}
}

// TestRateLimitPerClientBehindTrustedProxies checks that the per-address budgets
// are the clients' behind a trusted proxy, and that a client cannot pick its
// address with X-Forwarded-For when it is not one.
func TestRateLimitPerClientBehindTrustedProxies(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprintf("loopback trusted %v", trusted), func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.RateLimit, c.RateBurst = 0.001, 2
				if trusted {
					p, err := clientip.Parse("127.0.0.0/8,::1")
					if err != nil {
						t.Fatal(err)
					}
					c.Proxies = p
				}
			})
			from := func(ip string) map[string]string { return map[string]string{"X-Forwarded-For": ip} }
			for range 2 {
				if r := h.do("GET", "/books", "", "", from("203.0.113.1")); r.status != http.StatusOK {
					t.Fatalf("within the burst: status = %d, want 200", r.status)
				}
			}
			wantProblem(t, h.do("GET", "/books", "", "", from("203.0.113.1")), http.StatusTooManyRequests)
			r := h.do("GET", "/books", "", "", from("203.0.113.2"))
			if trusted && r.status != http.StatusOK {
				t.Errorf("another client behind the proxy: status = %d, want 200", r.status)
			}
			if !trusted && r.status != http.StatusTooManyRequests {
				t.Errorf("a client naming another address itself: status = %d, want 429 (its own budget is spent)", r.status)
			}
		})
	}
}

// TestRevokedTokenRefused checks that the gateway refuses a revoked subject's
// earlier tokens, including one it has cached, and accepts its new ones.
func TestRevokedTokenRefused(t *testing.T) {
	h := newHarness(t, nil)
	old := h.token("ed", []string{authn.RoleEditor})
	if r := h.do("POST", "/books", old, "{}", nil); r.status != http.StatusOK {
		t.Fatalf("before the revocation: status = %d, want 200", r.status)
	}
	before := time.Now().Truncate(time.Second).Add(time.Second)
	h.gw.Verifier().Revoke("ed", before)
	r := h.do("POST", "/books", old, "{}", nil)
	wantProblem(t, r, http.StatusUnauthorized)
	if !strings.Contains(string(r.body), "revoked") {
		t.Errorf("problem %s does not say the token was revoked", r.body)
	}
	fresh := h.token("ed", []string{authn.RoleEditor}, func(c *claims) { c.IssuedAt = jwt.NewNumericDate(before) })
	if r := h.do("POST", "/books", fresh, "{}", nil); r.status != http.StatusOK {
		t.Errorf("a token issued at the revocation: status = %d, want 200 (%s)", r.status, r.body)
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 2 })
	h.do("GET", "/books", "", "", nil)
	h.do("POST", "/books", "", "{}", nil) // 401 missing
	h.do("GET", "/books", "", "", nil)    // 429
	body := scrapeMetrics(h.reg)
	for _, want := range []string{
		`gateway_upstream_requests_total{outcome="2xx",service="book"} 1`,
		`folio_auth_failures_total{reason="missing"} 1`,
		`gateway_rate_limited_total 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, 1, 100, func() time.Time { return now })
	for i := range 1000 {
		if v, _ := l.allow(context.Background(), fmt.Sprint("ip:", i)); v != admitted {
			t.Fatalf("client %d refused on its first request", i)
		}
	}
	if n := len(l.clients); n > 100 {
		t.Fatalf("%d clients kept, want at most 100", n)
	}
	now = now.Add(time.Hour)
	l.sweep()
	if n := len(l.clients); n != 0 {
		t.Fatalf("%d clients kept after an idle hour, want 0", n)
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{Instances: map[string][]string{ServiceBook: {"http://b"}, ServiceAuthor: {"http://a"},
			ServiceAuth: {"http://u"}, ServiceNotify: {"http://n"}, ServiceInventory: {"http://i"}, ServiceOrder: {"http://o"}},
			JWKSURL: "http://u/.well-known/jwks.json", Issuer: "i", Audience: "a", RateLimit: 1, RateBurst: 1}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no book instance": func(c *Config) { c.Instances[ServiceBook] = nil },
		"not http":         func(c *Config) { c.Instances[ServiceAuth] = []string{"ftp://x"} },
		"with a path":      func(c *Config) { c.Instances[ServiceNotify] = []string{"http://n/api"} },
		"bad JWKS URL":     func(c *Config) { c.JWKSURL = "jwks.json" },
		"no rate":          func(c *Config) { c.RateLimit = 0 },
		"no audience":      func(c *Config) { c.Audience = "" },
		"route without /":  func(c *Config) { c.RouteTimeouts = map[string]time.Duration{"authors": time.Second} },
		"zero route time":  func(c *Config) { c.RouteTimeouts = map[string]time.Duration{"/authors": 0} },
	} {
		c := good()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}
