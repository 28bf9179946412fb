package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"inventory", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_RESERVATION_SWEEP_INTERVAL", "0s"},
		{"FOLIO_RESERVATION_SWEEP_INTERVAL", "-5s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "inventory", tc.name, tc.value)
		})
	}
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_RESERVATION_SWEEP_INTERVAL": "often"}
	if err := run(context.Background(), []string{"inventory"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
		t.Error("unparsable duration: got nil, want an error")
	}
}

// TestRunRejectsASettingBeforeOpeningAnything: a bad setting of the service's own,
// or of those every service shares, ends run before anything is logged or opened.
func TestRunRejectsASettingBeforeOpeningAnything(t *testing.T) {
	for _, name := range []string{"FOLIO_RESERVATION_SWEEP_INTERVAL", "FOLIO_BROKER_STALE_AFTER"} {
		t.Run(name, func(t *testing.T) {
			logs := chassistest.WantRefusedBeforeOpening(t, run, "inventory",
				map[string]string{"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1", name: "0s"}, name)
			if logs != "" {
				t.Errorf("run logged before refusing: %s", logs)
			}
		})
	}
}

func call(t *testing.T, method, url, token, body string, header ...string) *http.Response {
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
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestRunServesWhileTheBrokerIsDown starts the service with no broker to reach
// (port 1: nobody serves it): it serves its API all the same, and a reader cannot
// set stock.
func TestRunServesWhileTheBrokerIsDown(t *testing.T) {
	iss := authntest.New(t)
	editor := iss.Token("editor-1", "editor")
	prog := chassistest.Start(t, run, []string{"inventory"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_METRICS_ADDR": "127.0.0.1:0",
		"FOLIO_BROKER":       "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1", "FOLIO_JWKS_URL": iss.JWKSURL(),
	})
	base := prog.URL
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/inventory": 200, "/openapi.json": 200, "/inventory/" + id.New(): 404} {
		if resp := call(t, http.MethodGet, base+path, "", ""); resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	path := base + "/inventory/" + id.New()
	body := `{"price":{"amount":1299,"currency":"EUR"},"quantity":3}`
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", 401},
		{"forged token", authntest.New(t).Token("x", "admin"), 401},
		{"reader", iss.Token("r", "reader"), 403},
		{"editor", editor, 201},
	} {
		if resp := call(t, http.MethodPut, path, tc.token, body); resp.StatusCode != tc.want {
			t.Errorf("PUT as %s: got %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if resp := call(t, http.MethodPut, path, editor, body); resp.StatusCode != http.StatusPreconditionRequired {
		t.Errorf("PUT of existing stock without If-Match: got %d, want 428", resp.StatusCode)
	}
	if prog.MetricsURL == "" {
		t.Fatal("no metrics listener")
	}
	metrics := call(t, http.MethodGet, prog.MetricsURL+"/metrics", "", "")
	if text, _ := io.ReadAll(metrics.Body); !bytes.Contains(text, []byte(`folio_inventory_reservations_total{result="reserved"}`)) {
		t.Error("/metrics lacks folio_inventory_reservations_total")
	}
}

// TestRunAnswersTheOrderSaga runs the service against a real NATS server (set
// FOLIO_TEST_NATS_URL): a reserve command published on the broker is answered
// there with inventory.reserved, and a book.deleted takes the book off sale.
func TestRunAnswersTheOrderSaga(t *testing.T) {
	natsURL := os.Getenv("FOLIO_TEST_NATS_URL")
	if natsURL == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("set FOLIO_TEST_NATS_URL (e.g. nats://127.0.0.1:4222, JetStream enabled) to run it")
	}
	// A stream and prefix of its own, so that runs do not see each other's events.
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "t" + hex.EncodeToString(b)
	bcfg := broker.Config{Kind: "nats", NATSURL: natsURL, Stream: "FOLIO_" + tag, Prefix: tag}
	t.Cleanup(func() {
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
	editor := iss.Token("editor-1", "editor")
	base := chassistest.Start(t, run, []string{"inventory"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": natsURL, "FOLIO_EVENTS_STREAM": bcfg.Stream, "FOLIO_EVENTS_PREFIX": tag,
		"FOLIO_JWKS_URL": iss.JWKSURL(), "FOLIO_RESERVATION_SWEEP_INTERVAL": "50ms",
	}).URL
	bookID, deleted := id.New(), id.New()
	for _, b := range []string{bookID, deleted} {
		if resp := call(t, http.MethodPut, base+"/inventory/"+b, editor, `{"price":{"amount":1299,"currency":"EUR"},"quantity":3}`); resp.StatusCode != 201 {
			t.Fatalf("PUT stock: got %d", resp.StatusCode)
		}
	}

	bk, err := broker.Open(context.Background(), bcfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	replies := make(chan broker.Envelope, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = bk.Consume(ctx, broker.Subscription{Name: "replies", Subjects: []string{tag + ".inventory.>"}}, func(_ context.Context, m broker.Message) error {
			env, err := broker.ParseEnvelope(m.Body)
			if err != nil {
				return err
			}
			replies <- env
			return nil
		})
	}()
	publish := func(typ string, data any) {
		raw, _ := json.Marshal(data)
		env := broker.Envelope{ID: id.New(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw}
		body, _ := json.Marshal(env)
		// The consumer may not exist yet when the first publish lands; the stream
		// keeps the event for it either way. Publish until the broker accepts it.
		polltest.Until(t, "the broker accepts "+typ, func() error {
			return bk.Publish(context.Background(), broker.Message{Subject: tag + "." + typ, ID: env.ID, Body: body})
		})
	}
	next := func() broker.Envelope {
		t.Helper()
		select {
		case env := <-replies:
			return env
		case <-time.After(polltest.Deadline):
			t.Fatal("no reply from the inventory service")
			return broker.Envelope{}
		}
	}

	publish("book.deleted", map[string]string{"id": deleted})
	polltest.Until(t, "the deleted book is off sale", func() error {
		if resp := call(t, http.MethodGet, base+"/inventory/"+deleted, "", ""); resp.StatusCode != 404 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	orderID := id.New()
	publish("order.stock.reserve", map[string]any{"order_id": orderID,
		"items": []map[string]any{{"book_id": bookID, "quantity": 2}}, "expires_at": time.Now().Add(time.Hour)})
	if env := next(); env.Type != "inventory.reserved" || !bytes.Contains(env.Data, []byte(`"total":{"amount":2598,"currency":"EUR"}`)) {
		t.Errorf("reply %s %s, want inventory.reserved with a total of 2598 EUR", env.Type, env.Data)
	}
	// A reservation past its expiry is freed by the sweep.
	expiring := id.New()
	publish("order.stock.reserve", map[string]any{"order_id": expiring,
		"items": []map[string]any{{"book_id": bookID, "quantity": 1}}, "expires_at": time.Now().Add(-time.Second)})
	if env := next(); env.Type != "inventory.reserved" {
		t.Errorf("reply %s %s, want inventory.reserved", env.Type, env.Data)
	}
	if env := next(); env.Type != "inventory.released" || !bytes.Contains(env.Data, []byte(`"reason":"expired"`)) {
		t.Errorf("reply %s %s, want inventory.released, reason expired", env.Type, env.Data)
	}
	publish("order.stock.reserve", map[string]any{"order_id": id.New(),
		"items": []map[string]any{{"book_id": deleted, "quantity": 1}}, "expires_at": time.Now().Add(time.Hour)})
	if env := next(); env.Type != "inventory.rejected" || !bytes.Contains(env.Data, []byte(`"reason":"not_for_sale"`)) {
		t.Errorf("reply %s %s, want inventory.rejected, reason not_for_sale", env.Type, env.Data)
	}
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "inventory") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"inventory", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("inventory --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
