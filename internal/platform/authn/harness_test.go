package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type signingKey struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newKey(t testing.TB, kid string) signingKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, priv: priv, pub: pub}
}

// jwksServer publishes the public halves of its keys, as the auth service does.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	keys []signingKey
}

func newJWKS(t testing.TB, keys ...signingKey) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for _, k := range s.keys {
			set.Keys = append(set.Keys, map[string]string{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
				"use": "sig", "kid": k.kid, "x": base64.RawURLEncoding.EncodeToString(k.pub)})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

// fixture is a verifier of the tokens its key signs, with a clock tests can move.
type fixture struct {
	t      testing.TB
	jwks   *jwksServer
	key    signingKey
	v      *Verifier
	reg    *prometheus.Registry
	offset atomic.Int64 // added to the real time, in nanoseconds
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	key := newKey(t, "key-1")
	f := &fixture{t: t, key: key, jwks: newJWKS(t, key), reg: prometheus.NewRegistry()}
	cfg := Config{JWKSURL: f.jwks.URL + "/.well-known/jwks.json", Issuer: "folio-auth", Audience: "folio",
		MaxTTL: 15 * time.Minute, Now: f.now}
	if mutate != nil {
		mutate(&cfg)
	}
	f.v = NewVerifier(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), f.reg)
	return f
}

func (f *fixture) now() time.Time { return time.Now().Add(time.Duration(f.offset.Load())) }

// token signs claims for sub with roles by the fixture's key, issued now for 5
// minutes, after mods.
func (f *fixture) token(sub string, roles []string, mods ...func(*claims)) string {
	f.t.Helper()
	now := f.now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "folio-auth", Audience: jwt.ClaimStrings{"folio"}, Subject: sub, ID: "jti-" + sub,
		ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		IssuedAt:  jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
	}, Roles: roles}
	for _, m := range mods {
		m(&c)
	}
	return sign(f.t, f.key, c)
}

func sign(t testing.TB, k signingKey, c claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// answer is what a handler behind Require answered.
type answer struct {
	status int
	header http.Header
	body   string
	id     *Identity // what the handler found in its context
}

// serve sends a request with the Authorization header auth ("" for none) through
// Require(need) to a handler that answers 200.
func (f *fixture) serve(need Access, method, auth string) answer {
	f.t.Helper()
	var seen *Identity
	h := f.v.Require(need, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := FromContext(r.Context()); ok {
			seen = &id
		}
		w.WriteHeader(http.StatusOK)
	}))
	req := httptest.NewRequest(method, "/things", strings.NewReader("{}"))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Result().Header, body: rec.Body.String(), id: seen}
}

// write sends a POST with token as a bearer token through Require(Editor).
func (f *fixture) write(token string) answer {
	f.t.Helper()
	return f.serve(Editor, http.MethodPost, "Bearer "+token)
}

// wantRefused fails unless a is a 401 problem whose detail contains detail.
func wantRefused(t testing.TB, a answer, detail string) {
	t.Helper()
	wantProblem(t, a, http.StatusUnauthorized, TypeUnauthorized)
	if !strings.Contains(a.body, detail) {
		t.Errorf("problem %s does not say %q", a.body, detail)
	}
	if got := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("WWW-Authenticate = %q, want Bearer…", got)
	}
}

// wantProblem fails unless a is a problem+json answer with status and type.
func wantProblem(t testing.TB, a answer, status int, typ string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d, want %d (body %s)", a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(a.body), &p); err != nil || p.Status != status || p.Type != typ {
		t.Fatalf("problem body %s: want status %d type %s (err %v)", a.body, status, typ, err)
	}
}

// counter is the value of a counter of the fixture's registry.
func (f *fixture) counter(name string, labels ...string) float64 {
	f.t.Helper()
	var c prometheus.Collector
	switch name {
	case "verifications":
		c = f.v.metrics.verifications.WithLabelValues(labels...)
	case "failures":
		c = f.v.metrics.authFailures.WithLabelValues(labels...)
	default:
		f.t.Fatalf("no counter %s", name)
	}
	return testutil.ToFloat64(c)
}
