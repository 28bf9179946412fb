package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
	"folio/internal/platform/secrets"
)

// paymentKey is the payment service's key pair, as its program would hold it.
func paymentKey(t *testing.T) *secrets.Recipient {
	t.Helper()
	r, err := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"order", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_ORDER_STEP_TIMEOUT", "0s"},
		{"FOLIO_ORDER_RETRY_INTERVAL", "-1s"},
		{"FOLIO_ORDER_RETRY_MAX", "1ms"},
		{"FOLIO_PAYMENT_CARD_PUBLIC_KEY", ""},
		{"FOLIO_PAYMENT_CARD_PUBLIC_KEY", "not-a-key"},
		{"FOLIO_PAYMENT_CARD_PUBLIC_KEY", "c2hvcnQ="},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "order", tc.name, tc.value)
		})
	}
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_ORDER_STEP_TIMEOUT": "soon"}
	if err := run(context.Background(), []string{"order"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
		t.Error("unparsable duration: got nil, want an error")
	}
}

// TestRunRejectsASettingBeforeOpeningAnything: a bad setting, the card key
// included, ends run before anything is logged or opened.
func TestRunRejectsASettingBeforeOpeningAnything(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_ORDER_RETRY_MAX", "1ms"},
		{"FOLIO_BROKER_STALE_AFTER", "0s"},
		{"FOLIO_PAYMENT_CARD_PUBLIC_KEY", "not-a-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := chassistest.WantRefusedBeforeOpening(t, run, "order", map[string]string{
				"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1",
				"FOLIO_PAYMENT_CARD_PUBLIC_KEY": paymentKey(t).PublicKey(), tc.name: tc.value}, tc.name)
			if logs != "" {
				t.Errorf("run logged before refusing: %s", logs)
			}
		})
	}
}

func call(t *testing.T, method, url, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
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

const orderBody = `{"items":[{"book_id":"0190f5c4-5b1e-7000-8000-000000000001","quantity":2}],
	"payment":{"card":{"number":"4242424242424242","expiry":"12/99","cvc":"123"}}}`

// TestRunServesWhileTheBrokerIsDown starts the service with no broker to reach
// (port 1: nobody serves it): it takes orders all the same, their commands
// waiting in the outbox.
func TestRunServesWhileTheBrokerIsDown(t *testing.T) {
	iss := authntest.New(t)
	user := iss.Token("u1", "reader")
	prog := chassistest.Start(t, run, []string{"order"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_METRICS_ADDR": "127.0.0.1:0", "FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1",
		"FOLIO_JWKS_URL": iss.JWKSURL(), "FOLIO_PAYMENT_CARD_PUBLIC_KEY": paymentKey(t).PublicKey(),
	})
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/orders": 200, "/openapi.json": 200} {
		if resp := call(t, "GET", prog.URL+path, user, ""); resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	if resp := call(t, "POST", prog.URL+"/orders", "", orderBody); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /orders without a token: got %d, want 401", resp.StatusCode)
	}
	resp := call(t, "POST", prog.URL+"/orders", user, orderBody)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /orders: got %d, want 202", resp.StatusCode)
	}
	var o struct{ ID, State string }
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || o.State != "pending" {
		t.Fatalf("placed %+v, %v", o, err)
	}
	if resp := call(t, "GET", prog.URL+"/orders/"+o.ID, iss.Token("u2", "reader"), ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another user's GET: got %d, want 404", resp.StatusCode)
	}
	metrics := call(t, "GET", prog.MetricsURL+"/metrics", "", "")
	if text, _ := io.ReadAll(metrics.Body); !bytes.Contains(text, []byte("folio_order_saga_stuck")) {
		t.Error("/metrics lacks the saga's metrics")
	}
}

// TestSagaOverTheBroker runs the service against a real NATS server (set
// FOLIO_TEST_NATS_URL), playing the inventory and payment services: each command
// the order sends is answered, and the order ends confirmed; the authorisation
// carries a card only the payment service's key opens.
func TestSagaOverTheBroker(t *testing.T) {
	natsURL := os.Getenv("FOLIO_TEST_NATS_URL")
	if natsURL == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_REQUIRE_INTEGRATION=1 but FOLIO_TEST_NATS_URL is not set")
		}
		t.Skip("set FOLIO_TEST_NATS_URL (e.g. nats://127.0.0.1:4222, JetStream enabled) to run it")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "t" + hex.EncodeToString(b)
	bcfg := broker.Config{Kind: "nats", NATSURL: natsURL, Stream: "FOLIO_" + tag, Prefix: tag}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if err := js.DeleteStream(context.Background(), bcfg.Stream); err != nil {
			t.Errorf("delete stream %s: %v", bcfg.Stream, err)
		}
	})
	commands, err := nc.SubscribeSync(tag + ".order.>")
	if err != nil {
		t.Fatal(err)
	}
	payment := paymentKey(t)
	iss := authntest.New(t)
	user := iss.Token("u1", "reader")
	prog := chassistest.Start(t, run, []string{"order"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_METRICS_ADDR": "127.0.0.1:0",
		"FOLIO_BROKER":       "nats", "FOLIO_NATS_URL": natsURL, "FOLIO_EVENTS_STREAM": bcfg.Stream, "FOLIO_EVENTS_PREFIX": tag,
		"FOLIO_JWKS_URL": iss.JWKSURL(), "FOLIO_PAYMENT_CARD_PUBLIC_KEY": payment.PublicKey(),
	})
	pub, err := broker.Open(context.Background(), bcfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	resp := call(t, "POST", prog.URL+"/orders", user, orderBody)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /orders: got %d", resp.StatusCode)
	}
	var placed struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&placed); err != nil {
		t.Fatal(err)
	}
	// next returns the next command the order service sent, skipping its state
	// events.
	next := func(want string) map[string]any {
		t.Helper()
		for {
			m, err := commands.NextMsg(polltest.Deadline)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			var env struct {
				Type string
				Data map[string]any
			}
			if err := json.Unmarshal(m.Data, &env); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(env.Type, "order.stock.") && !strings.HasPrefix(env.Type, "order.payment.") {
				continue
			}
			if env.Type != want {
				t.Fatalf("command %s, want %s", env.Type, want)
			}
			if env.Data["order_id"] != placed.ID {
				t.Fatalf("%s of order %v, want %s", want, env.Data["order_id"], placed.ID)
			}
			return env.Data
		}
	}
	answer := func(typ string, data map[string]any) {
		t.Helper()
		data["order_id"] = placed.ID
		raw, _ := json.Marshal(data)
		eventID := id.New()
		body, _ := json.Marshal(broker.Envelope{ID: eventID, Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
		polltest.Until(t, "the broker takes "+typ, func() error {
			return pub.Publish(context.Background(), broker.Message{Subject: tag + "." + typ, ID: eventID, Body: body})
		})
	}
	reserve := next("order.stock.reserve")
	items, _ := reserve["items"].([]any)
	if len(items) != 1 || reserve["expires_at"] == nil {
		t.Fatalf("reserve %v", reserve)
	}
	answer("inventory.reserved", map[string]any{
		"items": []any{map[string]any{"book_id": "0190f5c4-5b1e-7000-8000-000000000001", "quantity": 2, "unit_price": map[string]any{"amount": 1299, "currency": "EUR"}}},
		"total": map[string]any{"amount": 2598, "currency": "EUR"}, "expires_at": reserve["expires_at"],
	})
	auth := next("order.payment.authorise")
	sealed, _ := auth["sealed_card"].(string)
	if card, err := payment.Open(sealed); err != nil || !strings.Contains(string(card), "4242424242424242") {
		t.Errorf("the payment service opens %q: %v", card, err)
	}
	if amount := fmt.Sprint(auth["amount"]); amount != "map[amount:2598 currency:EUR]" {
		t.Errorf("authorise amount %s", amount)
	}
	answer("payment.authorised", map[string]any{"payment_id": id.New(), "amount": auth["amount"], "card": map[string]any{"brand": "visa", "last4": "4242"}})
	next("order.payment.capture")
	answer("payment.captured", map[string]any{"amount": auth["amount"]})
	next("order.stock.commit")
	answer("inventory.committed", map[string]any{})
	polltest.Until(t, "the order is confirmed", func() error {
		resp := call(t, "GET", prog.URL+"/orders/"+placed.ID, user, "")
		var o struct{ State string }
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
			return err
		}
		if o.State != "confirmed" {
			return fmt.Errorf("state %s", o.State)
		}
		return nil
	})
	metrics := call(t, "GET", prog.MetricsURL+"/metrics", "", "")
	text, _ := io.ReadAll(metrics.Body)
	for _, want := range []string{`folio_order_transitions_total{from="paid",to="confirmed"} 1`, `folio_order_step_seconds_count{step="commit"} 1`} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "order") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"order", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("order --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
