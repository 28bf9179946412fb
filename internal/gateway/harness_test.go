package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/authn/authntest"
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

// closedURL returns the URL of a loopback port that nothing listens on: port 1, a
// privileged port no test binds, rather than a port just closed, which another
// process could bind before the test connects.
func closedURL(testing.TB) string { return "http://127.0.0.1:1" }

// claims are what the auth service puts in a token.
type claims = authntest.Claims

// harness is a gateway in the chassis, served on loopback, in front of echo upstreams.
// Spans are recorded when the test installed a recording tracer provider
// (tracingtest.Record) before newHarness.
type harness struct {
	t   testing.TB
	url string
	iss *authntest.Issuer
	gw  *Gateway
	reg *prometheus.Registry
}

// newHarness starts a gateway whose services are one echo upstream each, unless
// mutate changes the configuration.
func newHarness(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, iss: authntest.New(t, authntest.WithTTL(5*time.Minute))}
	cfg := Config{
		Instances:       map[string][]string{},
		JWKSURL:         h.iss.JWKSURL(),
		Issuer:          "folio-auth",
		Audience:        "folio",
		RateLimit:       10000,
		RateBurst:       10000,
		UpstreamTimeout: 5 * time.Second,
	}
	for _, name := range Services {
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
	// Public, as cmd/gateway serves it: the chassis continues no client's trace.
	// HTTP/1.1 and h2c, as the chassis serves (gRPC clients speak HTTP/2 only).
	srv := httptest.NewUnstartedServer(httpserver.New(httpserver.Config{ShutdownTimeout: time.Second, Public: true}, log, reg, mux,
		OpenAPI, func(context.Context) error { return nil }).Handler())
	srv.Config.Protocols = h2cProtocols()
	srv.Start()
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// token signs a token for sub with roles by the harness's issuer, issued now for
// 5 minutes, after mods.
func (h *harness) token(sub string, roles []string, mods ...func(*claims)) string {
	h.t.Helper()
	return h.iss.TokenWith(sub, roles, mods...)
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

// h2cProtocols are HTTP/1.1 and HTTP/2 without TLS (prior knowledge), as the
// chassis serves.
func h2cProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}
