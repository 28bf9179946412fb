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
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/notify"
	"folio/internal/platform/broker"
	"folio/internal/platform/process/processtest"
	"folio/internal/platform/rest"
	"folio/internal/platform/rest/resttest"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"notify", "extra"}, processtest.Env(nil), &processtest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_WEBHOOK_CONCURRENCY", "0"},
		{"FOLIO_WEBHOOK_TIMEOUT", "0s"},
		{"FOLIO_WEBHOOK_BACKOFF", "-1s"},
		{"FOLIO_WEBHOOK_BACKOFF_MAX", "1ms"},
		{"FOLIO_WEBHOOK_GIVE_UP", "0s"},
		{"FOLIO_DELIVERY_RETENTION", "-1h"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			processtest.WantSettingRejected(t, run, "notify", tc.name, tc.value)
		})
	}
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_WEBHOOK_TIMEOUT": "soon"}
	if err := run(context.Background(), []string{"notify"}, processtest.Env(vars), &processtest.LogBuffer{}); err == nil {
		t.Error("unparsable duration: got nil, want an error")
	}
}

// start runs the service with vars until the test ends, and returns its base URL.
func start(t *testing.T, vars map[string]string) string {
	t.Helper()
	return processtest.Start(t, run, []string{"notify"}, vars).URL
}

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestRunServesWhileTheBrokerIsDown starts the service with no broker to reach: it
// serves its API all the same.
func TestRunServesWhileTheBrokerIsDown(t *testing.T) {
	base := start(t, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": resttest.ClosedURL(t, "nats"),
	})
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/subscriptions": 200, "/openapi.json": 200, "/metrics": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp := post(t, base+"/subscriptions", `{"url":"http://example.com/hook","events":["book.created"],"secret":"0123456789abcdef"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("POST /subscriptions: got %d, want 201", resp.StatusCode)
	}
	metrics, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Body.Close()
	if text, _ := io.ReadAll(metrics.Body); !bytes.Contains(text, []byte("folio_webhook_attempt_duration_seconds")) {
		t.Error("/metrics lacks the webhook metrics")
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
	base := start(t, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_LOG_FORMAT": "json",
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": natsURL, "FOLIO_EVENTS_STREAM": bcfg.Stream, "FOLIO_EVENTS_PREFIX": tag,
	})
	const secret = "0123456789abcdef"
	resp := post(t, base+"/subscriptions", `{"url":"`+receiver.URL+`","events":["book.created"],"secret":"`+secret+`"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /subscriptions: got %d", resp.StatusCode)
	}

	pub, err := broker.Open(context.Background(), bcfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	id := rest.NewID()
	body := []byte(`{"id":"` + id + `","type":"book.created","occurred_at":"2030-01-01T00:00:00Z","data":{"id":"` + rest.NewID() + `"}}`)
	// The consumer may not exist yet when the first publish lands; the stream keeps
	// the event for it either way. Publish until the broker accepts it.
	for deadline := time.Now().Add(20 * time.Second); ; {
		err := pub.Publish(context.Background(), broker.Message{Subject: tag + ".book.created", ID: id, Body: body})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-got:
		gotBody := <-bodies
		if !bytes.Equal(gotBody, body) {
			t.Errorf("body %s, want %s", gotBody, body)
		}
		if sig := r.Header.Get(notify.HeaderSignature); sig != notify.Sign(secret, body) {
			t.Errorf("signature %q, want %q", sig, notify.Sign(secret, body))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the event did not reach the subscriber")
	}
}
