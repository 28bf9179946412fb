package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
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

func TestRunRejectsBadConfiguration(t *testing.T) {
	for _, args := range [][]string{{"payment", "extra"}, {"payment", cardPublicKeyFlag, "extra"}} {
		if err := run(context.Background(), args, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
			t.Errorf("run %q: got nil, want an error", args)
		}
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_PAYMENT_SLOW_DELAY", "-1s"},
		{"FOLIO_PAYMENT_CARD_KEY", "not-a-key"},
		{"FOLIO_PAYMENT_CARD_KEY", "c2hvcnQ="},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "payment", tc.name, tc.value)
		})
	}
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_PAYMENT_SLOW_DELAY": "soon"}
	if err := run(context.Background(), []string{"payment"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
		t.Error("unparsable duration: got nil, want an error")
	}
	vars = map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_PAYMENT_CARD_KEY": secrets.GenerateRecipientKey(), "FOLIO_PAYMENT_CARD_KEY_FILE": "x.key"}
	if err := run(context.Background(), []string{"payment"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil || !strings.Contains(err.Error(), "FOLIO_PAYMENT_CARD_KEY") {
		t.Errorf("both a card key and a key file: got %v, want an error naming them", err)
	}
}

// TestRunRejectsASettingBeforeOpeningAnything: a bad setting of the service's own,
// or of those every service shares, ends run before anything is logged or opened.
func TestRunRejectsASettingBeforeOpeningAnything(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_PAYMENT_SLOW_DELAY", "-1s"},
		{"FOLIO_PAYMENT_CARD_KEY", "not-a-key"},
		{"FOLIO_BROKER_STALE_AFTER", "0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := chassistest.WantRefusedBeforeOpening(t, run, "payment",
				map[string]string{"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1", tc.name: tc.value}, tc.name)
			if logs != "" {
				t.Errorf("run logged before refusing: %s", logs)
			}
		})
	}
}

// TestRunPrintsItsCardPublicKey: --card-public-key prints the public key of the
// card key and exits, making the key file on first use so that the service
// started afterwards opens what is sealed to that key.
func TestRunPrintsItsCardPublicKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	printed := func(vars map[string]string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), []string{"payment", cardPublicKeyFlag}, chassistest.Env(vars), &out); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	first := printed(map[string]string{"FOLIO_DATA_DIR": dir})
	key, err := secrets.EnsureRecipientKeyFile(filepath.Join(dir, DefaultCardKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if first != key.PublicKey() {
		t.Errorf("printed %q, want the public key of %s, %q", first, DefaultCardKeyFile, key.PublicKey())
	}
	if again := printed(map[string]string{"FOLIO_DATA_DIR": dir}); again != first {
		t.Errorf("printed %q the second time, want %q again", again, first)
	}
	if fi, err := os.Stat(filepath.Join(dir, DefaultCardKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, fi)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the data directory holds %v, want only the key file", entries)
	}
	given := secrets.GenerateRecipientKey()
	want, _ := secrets.LoadRecipient(given)
	if got := printed(map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_PAYMENT_CARD_KEY": given}); got != want.PublicKey() {
		t.Errorf("with FOLIO_PAYMENT_CARD_KEY: printed %q, want %q", got, want.PublicKey())
	}
	file := filepath.Join(t.TempDir(), "elsewhere", "card.key")
	got := printed(map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_PAYMENT_CARD_KEY_FILE": file})
	if k, err := secrets.EnsureRecipientKeyFile(file); err != nil || k.PublicKey() != got {
		t.Errorf("with FOLIO_PAYMENT_CARD_KEY_FILE: printed %q, the file holds %v (%v)", got, k, err)
	}
}

func call(t *testing.T, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
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

// TestRunServesWhileTheBrokerIsDown starts the service with no broker to reach
// (port 1: nobody serves it): it serves its API all the same, logs its card public
// key, and never its card private key.
func TestRunServesWhileTheBrokerIsDown(t *testing.T) {
	iss := authntest.New(t)
	admin := iss.Token("admin-1", "admin")
	cardKey := secrets.GenerateRecipientKey()
	key, _ := secrets.LoadRecipient(cardKey)
	prog := chassistest.Start(t, run, []string{"payment"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_METRICS_ADDR": "127.0.0.1:0", "FOLIO_PAYMENT_CARD_KEY": cardKey,
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1", "FOLIO_JWKS_URL": iss.JWKSURL(),
	})
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/openapi.json": 200, "/payments/" + id.New(): 404} {
		if resp := call(t, prog.URL+path, admin); resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	logs := prog.Logs.String()
	if !strings.Contains(logs, key.PublicKey()) {
		t.Error("the logs lack the card public key")
	}
	if strings.Contains(logs, cardKey) {
		t.Error("the logs show the card private key")
	}
	metrics := call(t, prog.MetricsURL+"/metrics", "")
	if text, _ := io.ReadAll(metrics.Body); !bytes.Contains(text, []byte(`go_sql_max_open_connections{db_name="payment"}`)) {
		t.Error("/metrics lacks the payment database's metrics")
	}
}

// TestRunWarnsOfAnOpenCardKeyFile: a card key file every user of the machine can
// read is a leak of every card the order service seals; the service says so.
func TestRunWarnsOfAnOpenCardKeyFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "card.key")
	if _, err := secrets.EnsureRecipientKeyFile(file); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o600, 0o644} {
		if err := os.Chmod(file, mode); err != nil {
			t.Fatal(err)
		}
		prog := chassistest.Start(t, run, []string{"payment"}, map[string]string{
			"FOLIO_DATA_DIR": dir, "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
			"FOLIO_METRICS_ADDR": "127.0.0.1:0", "FOLIO_PAYMENT_CARD_KEY_FILE": file,
			"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": "nats://127.0.0.1:1",
		})
		warned := strings.Contains(prog.Logs.String(), "the card key file is open to every user")
		if warned != (mode == 0o644) {
			t.Errorf("mode %v: warned %t, want %t", mode, warned, mode == 0o644)
		}
		prog.Stop()
	}
}

// TestRunRequiresAnAdmin calls the service on its own port, as anyone who reaches
// it could: only an admin reads payments.
func TestRunRequiresAnAdmin(t *testing.T) {
	iss := authntest.New(t)
	base := chassistest.Start(t, run, []string{"payment"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json", "FOLIO_JWKS_URL": iss.JWKSURL(),
	}).URL
	path := base + "/payments/" + id.New()
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", 401},
		{"a forged token", authntest.New(t).Token("x", "admin"), 401},
		{"a reader", iss.Token("r", "reader"), 403},
		{"an editor", iss.Token("e", "editor"), 403},
		{"an admin", iss.Token("a", "admin"), 404},
	} {
		resp := call(t, path, tc.token)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want problem+json", tc.name, ct)
		}
	}
}

// TestCommandsAreAnswered runs the service against a real NATS server (set
// FOLIO_TEST_NATS_URL): an authorise and a capture published as the order service
// publishes them are applied, and answered on the broker.
func TestCommandsAreAnswered(t *testing.T) {
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
	cardKey := secrets.GenerateRecipientKey()
	key, _ := secrets.LoadRecipient(cardKey)
	prog := chassistest.Start(t, run, []string{"payment"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json", "FOLIO_METRICS_ADDR": "127.0.0.1:0",
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": natsURL, "FOLIO_EVENTS_STREAM": bcfg.Stream, "FOLIO_EVENTS_PREFIX": tag,
		"FOLIO_JWKS_URL": iss.JWKSURL(), "FOLIO_PAYMENT_CARD_KEY": cardKey,
	})

	bk, err := broker.Open(context.Background(), bcfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	replies := make(chan broker.Envelope, 10)
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		consumed <- bk.Consume(ctx, broker.Subscription{Name: "test-order-replies", Subjects: []string{tag + ".payment.>"}, Concurrency: 1},
			func(_ context.Context, m broker.Message) error {
				env, err := broker.ParseEnvelope(m.Body)
				if err != nil {
					return err
				}
				replies <- env
				return nil
			})
	}()
	t.Cleanup(func() { cancel(); <-consumed })

	orderID := id.New()
	sealed, err := secrets.SealTo(key.PublicKey(), []byte(`{"number":"4242424242424242","expiry":"12/30","cvc":"123"}`))
	if err != nil {
		t.Fatal(err)
	}
	publish := func(typ string, data map[string]any) {
		t.Helper()
		raw, _ := json.Marshal(data)
		eventID := id.New()
		body, _ := json.Marshal(broker.Envelope{ID: eventID, Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
		// The stream may not exist yet: publish until the broker takes the command.
		polltest.Until(t, "the broker takes "+typ, func() error {
			return bk.Publish(context.Background(), broker.Message{Subject: tag + "." + typ, ID: eventID, Body: body})
		})
	}
	next := func(want string) broker.Envelope {
		t.Helper()
		select {
		case env := <-replies:
			if env.Type != want {
				t.Fatalf("got reply %s %s, want %s", env.Type, env.Data, want)
			}
			return env
		case <-time.After(polltest.Deadline):
			t.Fatalf("no reply %s", want)
		}
		return broker.Envelope{}
	}
	publish("order.payment.authorise", map[string]any{"order_id": orderID, "amount": map[string]any{"amount": 1299, "currency": "EUR"}, "sealed_card": sealed})
	env := next("payment.authorised")
	var auth struct {
		OrderID   string `json:"order_id"`
		PaymentID string `json:"payment_id"`
		Card      struct{ Brand, Last4 string }
	}
	if err := json.Unmarshal(env.Data, &auth); err != nil || auth.OrderID != orderID || !id.Valid(auth.PaymentID) || auth.Card.Brand != "visa" || auth.Card.Last4 != "4242" {
		t.Errorf("payment.authorised data %s (%v)", env.Data, err)
	}
	publish("order.payment.capture", map[string]any{"order_id": orderID})
	next("payment.captured")

	resp := call(t, prog.URL+"/payments/"+orderID, iss.Token("a", "admin"))
	var p struct {
		State    string `json:"state"`
		Captured int64  `json:"captured"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.State != "captured" || p.Captured != 1299 {
		t.Errorf("GET /payments/%s: %d %+v (%v), want captured 1299", orderID, resp.StatusCode, p, err)
	}
	polltest.Until(t, "the operations are counted", func() error {
		text, _ := io.ReadAll(call(t, prog.MetricsURL+"/metrics", "").Body)
		for _, want := range []string{`folio_payment_operations_total{operation="authorise",result="authorised"} 1`, `folio_payment_operations_total{operation="capture",result="captured"} 1`} {
			if !bytes.Contains(text, []byte(want)) {
				return errors.New("/metrics lacks " + want)
			}
		}
		return nil
	})
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "payment") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready (chassis.Healthcheck) instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"payment", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("payment --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
