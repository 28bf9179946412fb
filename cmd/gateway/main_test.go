package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"folio/internal/gateway"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/config"
	"folio/internal/platform/polltest"
)

// refusedURL is a URL whose port nobody serves (1 is privileged and unassigned on a
// test machine): an upstream the gateway can never reach, and which no other
// test's server can take.
const refusedURL = "http://127.0.0.1:1"

func TestRunServesAndStops(t *testing.T) {
	gw := chassistest.Start(t, run, []string{"gateway"}, map[string]string{
		"FOLIO_HTTP_ADDR":    "127.0.0.1:0",
		"FOLIO_METRICS_ADDR": "127.0.0.1:0",
		"FOLIO_BOOK_URLS":    refusedURL + ", " + refusedURL + "/",
		"FOLIO_LOG_LEVEL":    "error",
		"FOLIO_ACCESS_LOG":   "false",
	})
	base := gw.URL
	for _, c := range []struct {
		path string
		want int
	}{{"/healthz", 200}, {"/readyz", 200}, {"/nope", 404}, {"/books", 503}, {"/metrics", 404}, {"metrics:/metrics", 200}} {
		path, want := c.path, c.want
		url := base + path
		if p, ok := strings.CutPrefix(path, "metrics:"); ok {
			// The metrics are on their own listener, not on the public port.
			path, url = p, gw.MetricsURL+p
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: status = %d, want %d (%s)", path, resp.StatusCode, want, body)
		}
		if url != base+path && !strings.Contains(string(body), "gateway_upstream_requests_total") {
			t.Errorf("metrics lack the gateway's own")
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"bad book URL":    {"FOLIO_BOOK_URLS": "ftp://x"},
		"empty auth list": {"FOLIO_AUTH_URLS": " , "},
		"bad rate":        {"FOLIO_RATE_LIMIT": "-1"},
		"bad timeout":     {"FOLIO_UPSTREAM_TIMEOUT": "0s"},
		"not a duration":  {"FOLIO_UPSTREAM_TIMEOUT": "soon"},
		"no token TTL":    {"FOLIO_TOKEN_TTL": "0s"},
		"bad proxies":     {"FOLIO_TRUSTED_PROXIES": "10.0.0.0/33"},
	} {
		t.Run(name, func(t *testing.T) {
			env["FOLIO_HTTP_ADDR"] = "127.0.0.1:0"
			err := run(context.Background(), []string{"gateway"}, func(k string) string { return env[k] }, io.Discard)
			if err == nil {
				t.Fatal("run accepted the configuration")
			}
		})
	}
	if err := run(context.Background(), []string{"gateway", "extra"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("run accepted an argument")
	}
}

func TestSettingsFromEnvironment(t *testing.T) {
	env := map[string]string{
		"FOLIO_AUTH_URLS":       " http://auth-1:8083/ ,http://auth-2",
		"FOLIO_ROUTE_TIMEOUTS":  "/authors/books=3s,/auth/token=500ms",
		"FOLIO_TOKEN_TTL":       "5m",
		"FOLIO_TRUSTED_PROXIES": "10.0.0.0/8",
	}
	var c settings
	if err := config.Load(&c, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	gc, err := c.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := gc.Instances[gateway.ServiceAuth]; len(got) != 2 || got[0] != "http://auth-1:8083/" {
		t.Fatalf("auth instances = %q", got)
	}
	want := map[string]time.Duration{"/authors/books": 3 * time.Second, "/auth/token": 500 * time.Millisecond}
	if len(gc.RouteTimeouts) != len(want) {
		t.Fatalf("route timeouts = %v, want %v", gc.RouteTimeouts, want)
	}
	for k, v := range want {
		if gc.RouteTimeouts[k] != v {
			t.Fatalf("route timeouts = %v, want %v", gc.RouteTimeouts, want)
		}
	}
	if gc.TokenTTL != 5*time.Minute {
		t.Errorf("token TTL = %s, want 5m", gc.TokenTTL)
	}
	if !gc.Proxies.Trusts(netip.MustParseAddr("10.1.2.3")) || gc.Proxies.Trusts(netip.MustParseAddr("192.0.2.1")) {
		t.Errorf("trusted proxies = %v, want 10.0.0.0/8", gc.Proxies)
	}
	if gc.JWKSURL != "" {
		t.Fatalf("JWKS URL = %q, want empty (fetched through the auth pool)", gc.JWKSURL)
	}
}

// TestRunFollowsRevocations starts the gateway with a broker: once the auth
// service publishes an account's revocation, the gateway refuses that account's
// earlier token within seconds (finding 8 of issue 8).
func TestRunFollowsRevocations(t *testing.T) {
	iss := authntest.New(t)
	feed := authntest.NewFeed(t)
	books := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(books.Close)
	gw := chassistest.Start(t, run, []string{"gateway"}, map[string]string{
		"FOLIO_HTTP_ADDR":     "127.0.0.1:0",
		"FOLIO_BOOK_URLS":     books.URL,
		"FOLIO_ACCESS_LOG":    "false",
		"FOLIO_JWKS_URL":      iss.JWKSURL(),
		"FOLIO_NATS_URL":      feed.URL,
		"FOLIO_EVENTS_STREAM": feed.Stream,
		"FOLIO_EVENTS_PREFIX": feed.Prefix,
	})

	tok := authntest.Bearer(iss.Token("ed-1", authn.RoleEditor))
	post := func() int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, gw.URL+"/books", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(); got != http.StatusCreated {
		t.Fatalf("an editor's write before the revocation: status %d, want 201", got)
	}
	feed.Revoke("ed-1", time.Now().Add(time.Second))
	polltest.Until(t, "the gateway refuses the revoked token", func() error {
		if got := post(); got != http.StatusUnauthorized {
			return fmt.Errorf("status %d, want 401", got)
		}
		return nil
	})
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "gateway") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready (chassis.Healthcheck) instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"gateway", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("gateway --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
