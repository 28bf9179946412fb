package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/httpserver"
)

// echoed is what an echo upstream saw.
type echoed struct {
	Service  string      `json:"service"`
	Instance string      `json:"instance"`
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawPath  string      `json:"raw_path"`
	Query    string      `json:"query"`
	Host     string      `json:"host"`
	Body     string      `json:"body"`
	Header   http.Header `json:"header"`
}

// newEcho starts an upstream that answers every request with what it saw, counting hits.
func newEcho(t testing.TB, service, instance string, hits *atomic.Int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-ID", r.Header.Get("X-Request-ID")) // as the chassis does
		_ = json.NewEncoder(w).Encode(echoed{Service: service, Instance: instance, Method: r.Method,
			Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery, Host: r.Host,
			Body: string(body), Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// closedURL returns the URL of a loopback port that nothing listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// claims are what the auth service puts in a token.
type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles"`
}

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

func (s *jwksServer) add(k signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
}

// harness is a gateway in the chassis, served on loopback, in front of echo upstreams.
type harness struct {
	t    testing.TB
	url  string
	jwks *jwksServer
	key  signingKey
	gw   *Gateway
	reg  *prometheus.Registry
}

// newHarness starts a gateway whose services are one echo upstream each, unless
// mutate changes the configuration.
func newHarness(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	key := newKey(t, "key-1")
	h := &harness{t: t, key: key, jwks: newJWKS(t, key)}
	cfg := Config{
		Instances:       map[string][]string{},
		JWKSURL:         h.jwks.URL + "/.well-known/jwks.json",
		Issuer:          "folio-auth",
		Audience:        "folio",
		RateLimit:       10000,
		RateBurst:       10000,
		UpstreamTimeout: 5 * time.Second,
	}
	for _, name := range []string{ServiceBook, ServiceAuthor, ServiceAuth, ServiceNotify} {
		cfg.Instances[name] = []string{newEcho(t, name, name+"-0", nil).URL}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	gw, err := New(cfg, log, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.gw, h.reg = gw, reg
	mux := http.NewServeMux()
	gw.Routes(mux)
	srv := httptest.NewServer(httpserver.New(httpserver.Config{ShutdownTimeout: time.Second}, log, reg, mux,
		OpenAPI, func(context.Context) error { return nil }).Handler())
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// token signs claims for sub with roles by the harness key, after mods.
func (h *harness) token(sub string, roles []string, mods ...func(*claims)) string {
	h.t.Helper()
	now := time.Now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "folio-auth", Audience: jwt.ClaimStrings{"folio"}, Subject: sub, ID: "jti-" + sub,
		ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		IssuedAt:  jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
	}, Roles: roles}
	for _, m := range mods {
		m(&c)
	}
	return sign(h.t, h.key, c)
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

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) echo(t testing.TB) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("upstream answer %q: %v", r.body, err)
	}
	return e
}

// do sends a request to the gateway; token "" sends no Authorization header.
func (h *harness) do(method, target, token, body string, header map[string]string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+target, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantProblem fails unless r is a problem+json answer with status.
func wantProblem(t testing.TB, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p struct {
		Status int `json:"status"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != status {
		t.Fatalf("problem body %s: status %d, err %v", r.body, p.Status, err)
	}
}
