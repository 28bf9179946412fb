package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/auth"
	"folio/internal/auth/httpapi"
	"folio/internal/auth/sqlstore"
	"folio/internal/platform/clientip"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// cheap are argon2id parameters that keep tests fast; the real ones are tested apart.
var cheap = auth.Params{Time: 1, Memory: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// openSQLite opens a new, migrated auth database in a temporary directory.
func openSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	return sqldbtest.Open(tb, "sqlite:"+filepath.Join(tb.TempDir(), "auth.db"), sqlstore.Migrations)
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

// newBox returns a secrets box with a fresh key.
func newBox(tb testing.TB) *secrets.Box {
	tb.Helper()
	box, err := secrets.Load(secrets.Config{Key: secrets.GenerateKey()}, "", quiet)
	if err != nil {
		tb.Fatalf("secrets: %v", err)
	}
	return box
}

// server is an auth service in-process, with the chassis around its routes.
type server struct {
	tb    testing.TB
	h     http.Handler
	svc   *auth.Service
	store *sqlstore.Store
	db    *sqldb.DB
	box   *secrets.Box
	clock *clock
	// onHash, when it holds a func(), is called inside each argon2id run.
	onHash atomic.Pointer[func()]
}

// settings are what a test may change of a server before it starts.
type settings struct {
	opts   auth.Options
	limits httpapi.Limits
}

// trustedProxy is the address the tests' servers take for a proxy whose
// X-Forwarded-For names the client, as the gateway is.
const trustedProxy = "10.255.0.1"

// newServer serves the auth service over db with cheap hashing and a settable clock;
// change adjusts the settings first.
func newServer(tb testing.TB, db *sqldb.DB, change ...func(*settings)) *server {
	tb.Helper()
	return newServerWith(tb, db, newBox(tb), change...)
}

// newServerWith is newServer with the given secrets box: another instance, or a
// restart, over the same database and secrets key.
func newServerWith(tb testing.TB, db *sqldb.DB, box *secrets.Box, change ...func(*settings)) *server {
	tb.Helper()
	s := &server{tb: tb, db: db, box: box, clock: newClock()}
	set := settings{
		opts: auth.Options{Hashing: cheap, Now: s.clock.Now, Log: quiet, OnHash: func() {
			if f := s.onHash.Load(); f != nil {
				(*f)()
			}
		}},
		limits: httpapi.Limits{Now: s.clock.Now},
	}
	for _, f := range change {
		f(&set)
	}
	outboxtest.Migrate(tb, db)
	s.store = sqlstore.New(outbox.NewWriter(db, nil), box)
	svc, err := auth.NewService(s.store, set.opts)
	if err != nil {
		tb.Fatalf("NewService: %v", err)
	}
	if err := svc.Rotate(context.Background()); err != nil {
		tb.Fatalf("Rotate: %v", err)
	}
	mux := http.NewServeMux()
	keys := idempotency.New(db, quiet)
	keys.Fingerprint = svc.Fingerprint
	proxies, err := clientip.Parse(trustedProxy)
	if err != nil {
		tb.Fatal(err)
	}
	httpapi.Routes(mux, svc, keys, proxies, set.limits)
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, httpapi.OpenAPI, db.PingContext)
	s.h, s.svc = srv.Handler(), svc
	return s
}

// setHashHook has f called inside each argon2id run, before it hashes.
func (s *server) setHashHook(f func()) { s.onHash.Store(&f) }

// currentKID returns the id of the stored key that signs new tokens.
func (s *server) currentKID() string {
	s.tb.Helper()
	key := s.signingKey()
	return key.KID
}

func (s *server) signingKey() auth.SigningKey {
	s.tb.Helper()
	keys, err := s.store.SigningKeys(context.Background())
	if err != nil {
		s.tb.Fatalf("SigningKeys: %v", err)
	}
	key := auth.ActiveKey(keys)
	if key == nil {
		s.tb.Fatal("no active signing key")
	}
	return *key
}

// sign signs claims with the service's current signing key, naming kid in the
// header (the key's own id when kid is empty), so that tests can forge tokens that
// only a chosen claim makes invalid.
func (s *server) sign(claims auth.Claims, kid string) string {
	s.tb.Helper()
	key := s.signingKey()
	if kid == "" {
		kid = key.KID
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = kid
	tok, err := t.SignedString(key.Private)
	if err != nil {
		s.tb.Fatalf("sign: %v", err)
	}
	return tok
}

// do serves one request; header holds name, value pairs, and the pseudo-header
// "RemoteAddr" sets the client address.
func (s *server) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	return resttest.Do(s.h, method, path, body, header...)
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

// decode and wantProblem are resttest's, under the names the tests of this package use.
func decode[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	return resttest.Decode[T](tb, rec)
}

var wantProblem = resttest.WantProblem
