package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/notify/webhook"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"notify", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_WEBHOOK_CONCURRENCY", "0"},
		{"FOLIO_WEBHOOK_TIMEOUT", "0s"},
		{"FOLIO_WEBHOOK_BACKOFF", "-1s"},
		{"FOLIO_WEBHOOK_BACKOFF_MAX", "1ms"},
		{"FOLIO_WEBHOOK_GIVE_UP", "0s"},
		{"FOLIO_DELIVERY_RETENTION", "-1h"},
		{"FOLIO_MAX_SUBSCRIPTIONS", "0"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "notify", tc.name, tc.value)
		})
	}
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_WEBHOOK_TIMEOUT": "soon"}
	if err := run(context.Background(), []string{"notify"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
		t.Error("unparsable duration: got nil, want an error")
	}
}

// TestRunRejectsASettingBeforeOpeningAnything: a bad setting of the service's own,
// or of those every service shares, ends run before anything is logged or opened;
// a bad secrets key, before the database is: the data directory stays empty.
func TestRunRejectsASettingBeforeOpeningAnything(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		logs        bool // the start is logged before the secrets key is read
	}{
		{"FOLIO_WEBHOOK_BACKOFF_MAX", "1ms", false},
		{"FOLIO_BROKER_STALE_AFTER", "0s", false},
		{"FOLIO_SECRETS_KEY", "not-a-key", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := chassistest.WantRefusedBeforeOpening(t, run, "notify",
				map[string]string{"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1", tc.name: tc.value}, tc.name)
			if !tc.logs && logs != "" {
				t.Errorf("run logged before refusing: %s", logs)
			}
		})
	}
}

// start runs the service with vars until the test ends, and returns its base URL.
func start(t *testing.T, vars map[string]string) string {
	t.Helper()
	return chassistest.Start(t, run, []string{"notify"}, vars).URL
}

// post sends body to url as JSON with the token (none when "").
func post(t *testing.T, url, token, body string) *http.Response {
	t.Helper()
	return call(t, http.MethodPost, url, token, "application/json", body)
}

func call(t *testing.T, method, url, token, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", authntest.Bearer(token))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestRunServesWhileTheBrokerIsDown starts the service with no broker to reach (port
// 1: nobody serves it, and no other test can take it): it serves its API all the
// same.
func TestRunServesWhileTheBrokerIsDown(t *testing.T) {
	iss := authntest.New(t)
	admin := iss.Token("admin-1", "admin")
	prog := chassistest.Start(t, run, []string{"notify"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_METRICS_ADDR": "127.0.0.1:0",
		"FOLIO_BROKER":       "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1", "FOLIO_JWKS_URL": iss.JWKSURL(),
	})
	base := prog.URL
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/subscriptions": 200, "/openapi.json": 200} {
		resp := call(t, http.MethodGet, base+path, admin, "", "")
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp := post(t, base+"/subscriptions", admin, `{"url":"http://198.51.100.7/hook","events":["book.created"],"secret":"0123456789abcdef"}`)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("POST /subscriptions to a documentation address: got %d, want 422", resp.StatusCode)
	}
	resp = post(t, base+"/subscriptions", admin, `{"url":"http://8.8.8.8/hook","events":["book.created"],"secret":"0123456789abcdef"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("POST /subscriptions: got %d, want 201", resp.StatusCode)
	}
	if prog.MetricsURL == "" {
		t.Fatal("no metrics listener")
	}
	metrics := call(t, http.MethodGet, prog.MetricsURL+"/metrics", "", "", "")
	if text, _ := io.ReadAll(metrics.Body); !bytes.Contains(text, []byte("folio_webhook_attempt_duration_seconds")) {
		t.Error("/metrics lacks the webhook metrics")
	}
}

// TestRunRequiresAnAdmin replays the direct calls of the review: the service on its
// own port, without the gateway, lets no one but an admin list or make
// subscriptions, and a browser's cross-site form post (text/plain, no token) makes
// nothing.
func TestRunRequiresAnAdmin(t *testing.T) {
	iss := authntest.New(t)
	base := start(t, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_JWKS_URL": iss.JWKSURL(),
	})
	body := `{"url":"http://8.8.8.8/hook","events":["book.created"],"secret":"0123456789abcdef"}`
	subID := id.New()
	for _, tc := range []struct {
		name, method, path, token, contentType string
		want                                   int
	}{
		{"create without a token", "POST", "/subscriptions", "", "application/json", 401},
		{"create with a forged token", "POST", "/subscriptions", authntest.New(t).Token("x", "admin"), "application/json", 401},
		{"create as a reader", "POST", "/subscriptions", iss.Token("r", "reader"), "application/json", 403},
		{"create as an editor", "POST", "/subscriptions", iss.Token("e", "editor"), "application/json", 403},
		// Refused for the missing token, or before that for its content type.
		{"cross-site form post", "POST", "/subscriptions", "", "text/plain", 401},
		{"cross-site urlencoded form post", "POST", "/subscriptions", "", "application/x-www-form-urlencoded", 401},
		{"list without a token", "GET", "/subscriptions", "", "", 401},
		{"list as an editor", "GET", "/subscriptions", iss.Token("e", "editor"), "", 403},
		{"get without a token", "GET", "/subscriptions/" + subID, "", "", 401},
		{"deliveries as an editor", "GET", "/subscriptions/" + subID + "/deliveries", iss.Token("e", "editor"), "", 403},
		{"delete without a token", "DELETE", "/subscriptions/" + subID, "", "", 401},
		{"delete as an editor", "DELETE", "/subscriptions/" + subID, iss.Token("e", "editor"), "", 403},
		{"get as an admin", "GET", "/subscriptions/" + subID, iss.Token("a", "admin"), "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := ""
			if tc.method == "POST" {
				b = body
			}
			resp := call(t, tc.method, base+tc.path, tc.token, tc.contentType, b)
			crossSite := tc.contentType != "" && tc.contentType != "application/json"
			if resp.StatusCode != tc.want && !(crossSite && resp.StatusCode == http.StatusUnsupportedMediaType) {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if ct := resp.Header.Get("Content-Type"); tc.want >= 400 && ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want problem+json", ct)
			}
		})
	}
	resp := call(t, http.MethodGet, base+"/subscriptions", iss.Token("a", "admin"), "", "")
	if text, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !bytes.Contains(text, []byte(`"items":[]`)) {
		t.Errorf("after the refused calls: got %d %s, want no subscription", resp.StatusCode, text)
	}
}

// TestEventsReachSubscribers runs the service against a real NATS server (set
// FOLIO_TEST_NATS_URL): an event published on the broker reaches the subscriber,
// signed, once.
func TestEventsReachSubscribers(t *testing.T) {
	natsURL := os.Getenv("FOLIO_TEST_NATS_URL")
	if natsURL == "" {
		t.Skip("set FOLIO_TEST_NATS_URL (e.g. nats://127.0.0.1:4222, JetStream enabled) to run it")
	}
	got := make(chan *http.Request, 10)
	bodies := make(chan []byte, 10)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer receiver.Close()

	// A stream and prefix of its own, so that runs do not see each other's events.
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "t" + hex.EncodeToString(b)
	bcfg := broker.Config{Kind: "nats", NATSURL: natsURL, Stream: "FOLIO_" + tag, Prefix: tag}
	t.Cleanup(func() {
		// The server is shared: leave no stream behind.
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Errorf("delete stream %s: %v", bcfg.Stream, err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if err := js.DeleteStream(context.Background(), bcfg.Stream); err != nil {
			t.Errorf("delete stream %s: %v", bcfg.Stream, err)
		}
	})
	iss := authntest.New(t)
	base := start(t, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": natsURL, "FOLIO_EVENTS_STREAM": bcfg.Stream, "FOLIO_EVENTS_PREFIX": tag,
		"FOLIO_JWKS_URL": iss.JWKSURL(), "FOLIO_WEBHOOK_ALLOW_PRIVATE": "1", // the receiver is on the loopback
	})
	const secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="
	resp := post(t, base+"/subscriptions", iss.Token("a", "admin"), `{"url":"`+receiver.URL+`","events":["book.created"],"secret":"`+secret+`"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /subscriptions: got %d", resp.StatusCode)
	}

	pub, err := broker.Open(context.Background(), bcfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	eventID := id.New()
	body := []byte(`{"id":"` + eventID + `","type":"book.created","occurred_at":"2030-01-01T00:00:00Z","data":{"id":"` + id.New() + `"}}`)
	// The consumer may not exist yet when the first publish lands; the stream keeps
	// the event for it either way. Publish until the broker accepts it.
	polltest.Until(t, "the broker accepts the event", func() error {
		return pub.Publish(context.Background(), broker.Message{Subject: tag + ".book.created", ID: eventID, Body: body})
	})
	select {
	case r := <-got:
		gotBody := <-bodies
		if !bytes.Equal(gotBody, body) {
			t.Errorf("body %s, want %s", gotBody, body)
		}
		ts, err := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
		if err != nil {
			t.Fatalf("webhook-timestamp %q: %v", r.Header.Get(webhook.HeaderTimestamp), err)
		}
		want := webhook.Sign(secret, eventID, time.Unix(ts, 0), body)
		if sig := r.Header.Get(webhook.HeaderSignature); r.Header.Get(webhook.HeaderID) != eventID || sig != want {
			t.Errorf("webhook-id %q, webhook-signature %q; want %s, %q", r.Header.Get(webhook.HeaderID), sig, eventID, want)
		}
	case <-time.After(polltest.Deadline):
		t.Fatal("the event did not reach the subscriber")
	}
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "notify") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready (chassis.Healthcheck) instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"notify", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("notify --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
