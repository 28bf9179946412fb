package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/gateway"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/config"
	"folio/internal/platform/process/processtest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRunServesAndStops(t *testing.T) {
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"FOLIO_HTTP_ADDR":    addr,
		"FOLIO_METRICS_ADDR": metricsAddr,
		"FOLIO_BOOK_URLS":    "http://" + freeAddr(t) + ", http://" + freeAddr(t),
		"FOLIO_LOG_LEVEL":    "error",
		"FOLIO_ACCESS_LOG":   "false",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"gateway"}, func(k string) string { return env[k] }, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	base := "http://" + addr
	var resp *http.Response
	var err error
	for range 100 {
		if resp, err = http.Get(base + "/healthz"); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("gateway never answered /healthz: %v", err)
	}
	resp.Body.Close()
	for _, c := range []struct {
		path string
		want int
	}{{"/healthz", 200}, {"/readyz", 200}, {"/nope", 404}, {"/books", 503}, {"/metrics", 404}, {"metrics:/metrics", 200}} {
		path, want := c.path, c.want
		url := base + path
		if p, ok := strings.CutPrefix(path, "metrics:"); ok {
			// The metrics are on their own listener, not on the public port.
			path, url = p, "http://"+metricsAddr+p
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
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("FOLIO_TEST_NATS_URL is not set; skipping the revocation feed test")
	}
	iss := authntest.New(t)
	books := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(books.Close)
	unique := fmt.Sprint(time.Now().UnixNano())
	bcfg := broker.Config{Kind: "nats", NATSURL: url, Stream: "GATEWAY_TEST_" + unique, Prefix: "gatewaytest" + unique}
	vars := map[string]string{
		"FOLIO_HTTP_ADDR":     "127.0.0.1:0",
		"FOLIO_BOOK_URLS":     books.URL,
		"FOLIO_ACCESS_LOG":    "false",
		"FOLIO_NATS_URL":      url,
		"FOLIO_EVENTS_STREAM": bcfg.Stream,
		"FOLIO_EVENTS_PREFIX": bcfg.Prefix,
	}
	for _, kv := range iss.Env() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	gw := processtest.Start(t, run, []string{"gateway"}, vars)
	t.Cleanup(func() { deleteStream(t, url, bcfg.Stream) })

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
	b, err := broker.Open(t.Context(), bcfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	eventID := "evt-" + unique
	body := fmt.Sprintf(`{"id":%q,"type":"account.revoked","occurred_at":%q,"data":{"id":"ed-1","revoked_before":%d}}`,
		eventID, time.Now().UTC().Format(time.RFC3339), time.Now().Unix()+1)
	for deadline := time.Now().Add(15 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := b.Publish(ctx, broker.Message{Subject: bcfg.Prefix + ".account.revoked", ID: eventID, Body: []byte(body)})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish the revocation: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for deadline := time.Now().Add(15 * time.Second); post() != http.StatusUnauthorized; {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still takes the revoked token 15 s after the revocation was published")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func deleteStream(t *testing.T, url, stream string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Errorf("connect to delete stream %s: %v", stream, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("delete stream %s: %v", stream, err)
	}
}
