package auth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/auth"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/sqldb"
)

var quiet = slog.New(slog.DiscardHandler)

// cheap are argon2id parameters that keep tests fast; the real ones are tested apart.
var cheap = auth.Params{Time: 1, Memory: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// openSQLite opens a new, migrated auth database in a temporary directory.
func openSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(tb.TempDir(), "auth.db"))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, auth.Migrations); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return db
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// server is an auth service in-process, with the chassis around its routes.
type server struct {
	tb    testing.TB
	h     http.Handler
	svc   *auth.Service
	clock *clock
}

// newServer serves the auth service over db with cheap hashing and a settable clock;
// change adjusts the options first.
func newServer(tb testing.TB, db *sqldb.DB, change ...func(*auth.Options)) *server {
	tb.Helper()
	c := newClock()
	o := auth.Options{Hashing: cheap, Now: c.Now, Log: quiet}
	for _, f := range change {
		f(&o)
	}
	svc, err := auth.NewService(auth.NewSQLStore(db), o)
	if err != nil {
		tb.Fatalf("NewService: %v", err)
	}
	if err := svc.Rotate(context.Background()); err != nil {
		tb.Fatalf("Rotate: %v", err)
	}
	mux := http.NewServeMux()
	if err := idempotency.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("idempotency migrate: %v", err)
	}
	keys := idempotency.New(db, quiet)
	keys.Fingerprint = auth.RequestFingerprint
	auth.Routes(mux, svc, keys, quiet)
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, auth.OpenAPI, db.PingContext)
	return &server{tb: tb, h: srv.Handler(), svc: svc, clock: c}
}

// do serves one request; header holds name, value pairs, and the pseudo-header
// "RemoteAddr" sets the client address.
func (s *server) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	s.tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "RemoteAddr" {
			req.RemoteAddr = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

func credentials(email, password string) string {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return string(b)
}

// register creates an account, failing unless it is created.
func (s *server) register(email, password string) auth.User {
	s.tb.Helper()
	rec := s.do("POST", "/auth/register", credentials(email, password))
	if rec.Code != http.StatusCreated {
		s.tb.Fatalf("register %s: got status %d, want 201: %s", email, rec.Code, rec.Body)
	}
	return decode[auth.User](s.tb, rec)
}

// token logs in from a fresh address, failing unless it succeeds.
func (s *server) token(email, password string) string {
	s.tb.Helper()
	rec := s.do("POST", "/auth/token", credentials(email, password))
	if rec.Code != http.StatusOK {
		s.tb.Fatalf("token %s: got status %d, want 200: %s", email, rec.Code, rec.Body)
	}
	return decode[auth.Token](s.tb, rec).AccessToken
}

// admin makes an admin account and returns it with a token.
func (s *server) admin() (auth.User, string) {
	s.tb.Helper()
	if _, err := s.svc.EnsureAdmin(context.Background(), "root@example.com", "root password 123"); err != nil {
		s.tb.Fatalf("EnsureAdmin: %v", err)
	}
	tok := s.token("root@example.com", "root password 123")
	claims := s.verify(tok)
	return auth.User{ID: claims.Subject, Email: "root@example.com", Roles: claims.Roles}, tok
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// jwks fetches the JWKS document through the handler and returns its keys by kid.
func (s *server) jwks() map[string]ed25519.PublicKey {
	s.tb.Helper()
	rec := s.do("GET", "/.well-known/jwks.json", "")
	if rec.Code != http.StatusOK {
		s.tb.Fatalf("GET jwks: got status %d, want 200", rec.Code)
	}
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		s.tb.Fatalf("decode jwks: %v", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range doc.Keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["kid"] == "" {
			s.tb.Fatalf("jwks key %v: want kty OKP, crv Ed25519, alg EdDSA, use sig and a kid", k)
		}
		x, err := base64.RawURLEncoding.DecodeString(k["x"])
		if err != nil || len(x) != ed25519.PublicKeySize {
			s.tb.Fatalf("jwks key %s: x is not an Ed25519 public key: %v", k["kid"], err)
		}
		keys[k["kid"]] = ed25519.PublicKey(x)
	}
	return keys
}

// verify checks tok against the JWKS the service publishes, as a gateway would.
func (s *server) verify(tok string) *auth.Claims {
	s.tb.Helper()
	c, err := s.tryVerify(tok)
	if err != nil {
		s.tb.Fatalf("verify token against the JWKS: %v", err)
	}
	return c
}

func (s *server) tryVerify(tok string) (*auth.Claims, error) {
	keys := s.jwks()
	var c auth.Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, jwt.ErrTokenUnverifiable
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer("folio-auth"), jwt.WithAudience("folio"),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.clock.Now))
	return &c, err
}

func decode[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	var v T
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("got Content-Type %q, want application/json (status %d: %s)", ct, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		tb.Fatalf("decode %s: %v", rec.Body, err)
	}
	return v
}

// wantProblem checks that rec is a problem+json document with the status and type,
// naming the fields given (at least these), and returns it.
func wantProblem(tb testing.TB, rec *httptest.ResponseRecorder, status int, typ string, fields ...string) problem.Problem {
	tb.Helper()
	if rec.Code != status {
		tb.Fatalf("got status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
		tb.Fatalf("got Content-Type %q, want %q", ct, problem.ContentType)
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		tb.Fatalf("decode problem %s: %v", rec.Body, err)
	}
	if p.Type != typ || p.Status != status || p.Title == "" {
		tb.Errorf("got problem type %q status %d title %q, want type %q status %d", p.Type, p.Status, p.Title, typ, status)
	}
	named := map[string]bool{}
	for _, e := range p.Errors {
		named[e.Field] = true
	}
	for _, f := range fields {
		if !named[f] {
			tb.Errorf("problem errors %+v do not name %q", p.Errors, f)
		}
	}
	return p
}
