package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	if err := run(context.Background(), []string{"author", "extra"}, chassistest.Env(nil), &chassistest.LogBuffer{}); err == nil {
		t.Error("run with an argument: got nil, want an error")
	}
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_BOOK_URL", "ftp://book"},
		{"FOLIO_BOOK_URL", "book:8081"},
		{"FOLIO_PEER_TIMEOUT", "0s"},
		{"FOLIO_UPSTREAM_BUDGET", "-1s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantSettingRejected(t, run, "author", tc.name, tc.value)
		})
	}
}

// TestRunRejectsBadSettingBeforeOpeningAnything: a bad setting, the service's own or
// one every service shares, ends run before it creates the database in the data
// directory, so that a typo leaves nothing behind to clean up.
func TestRunRejectsBadSettingBeforeOpeningAnything(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"FOLIO_BOOK_URL", "ftp://book"},
		{"FOLIO_PEER_TIMEOUT", "0s"},
		{"FOLIO_UPSTREAM_BUDGET", "-1s"},
		{"FOLIO_TRUSTED_PROXIES", "not a network"},
		{"FOLIO_BROKER_STALE_AFTER", "0s"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			chassistest.WantRefusedBeforeOpening(t, run, "author", map[string]string{tc.name: tc.value}, tc.name)
		})
	}
}

func TestRunRejectsUnparsableConfiguration(t *testing.T) {
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_UPSTREAM_BUDGET": "soon"}
	if err := run(context.Background(), []string{"author"}, chassistest.Env(vars), &chassistest.LogBuffer{}); err == nil {
		t.Error("got nil, want an error")
	}
}

// refusedURL is a URL nobody serves (port 1 is privileged and unassigned on a test
// machine), which no other test's server can take while this one runs.
const refusedURL = "http://127.0.0.1:1"

func TestRunServesUntilCancelled(t *testing.T) {
	// No broker either: the service serves all the same, its outbox keeping the events.
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_BOOK_URL": refusedURL, "FOLIO_NATS_URL": "nats://127.0.0.1:1"}
	p := chassistest.Start(t, run, []string{"author"}, vars)

	for path, want := range map[string]int{
		"/readyz":                     http.StatusOK,
		"/authors":                    http.StatusOK,
		"/authors/books?genre=poetry": http.StatusServiceUnavailable, // the book service is down
	} {
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}
	p.Stop()
}

// TestRunChecksTokens replays a direct write to the author service: without a token
// it is refused, with an editor's token from the configured JWKS it is served.
func TestRunChecksTokens(t *testing.T) {
	iss := authntest.New(t)
	vars := map[string]string{"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0",
		"FOLIO_BOOK_URL": refusedURL, "FOLIO_NATS_URL": "nats://127.0.0.1:1",
		"FOLIO_JWKS_URL": iss.JWKSURL()}
	p := chassistest.Start(t, run, []string{"author"}, vars)
	defer p.Stop()

	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a token from a foreign key", authntest.New(t).Token("editor-1", authn.RoleEditor), http.StatusUnauthorized},
		{"a reader's token", iss.Token("reader-1", authn.RoleReader), http.StatusForbidden},
		{"an editor's token", iss.Token("editor-1", authn.RoleEditor), http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, p.URL+"/authors", strings.NewReader(`{"name":"Direct"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", authntest.Bearer(tc.token))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("POST /authors: got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestRunRunsTheEventJobs runs the service against a real NATS server (set
// FOLIO_TEST_NATS_URL): the relay publishes the outbox's events, and a book event
// published on the broker reaches the consumer, which counts the book.
func TestRunRunsTheEventJobs(t *testing.T) {
	natsURL := os.Getenv("FOLIO_TEST_NATS_URL")
	if natsURL == "" {
		t.Skip("set FOLIO_TEST_NATS_URL (e.g. nats://127.0.0.1:4222, JetStream enabled) to run it")
	}
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
	p := chassistest.Start(t, run, []string{"author"}, map[string]string{
		"FOLIO_DATA_DIR": t.TempDir(), "FOLIO_HTTP_ADDR": "127.0.0.1:0", "FOLIO_BOOK_URL": refusedURL,
		"FOLIO_BROKER": "nats", "FOLIO_NATS_URL": natsURL, "FOLIO_EVENTS_STREAM": bcfg.Stream, "FOLIO_EVENTS_PREFIX": tag,
		"FOLIO_JWKS_URL": iss.JWKSURL(),
	})
	defer p.Stop()

	req, _ := http.NewRequest(http.MethodPost, p.URL+"/authors", strings.NewReader(`{"name":"Evented"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", authntest.Bearer(iss.Token("editor-1", authn.RoleEditor)))
	var a struct {
		ID        string `json:"id"`
		BookCount int    `json:"book_count"`
	}
	if code := doJSON(t, req, &a); code != http.StatusCreated {
		t.Fatalf("POST /authors: got %d, want 201", code)
	}
	polltest.Until(t, "the relay publishes author.created", func() error {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/readyz", nil)
		var ready struct {
			Detail struct {
				Outbox struct {
					Pending *int `json:"pending"`
				} `json:"outbox"`
			} `json:"detail"`
		}
		pending := &ready.Detail.Outbox.Pending
		if code := doJSON(t, req, &ready); code != http.StatusOK || *pending == nil || **pending != 0 {
			return fmt.Errorf("/readyz: %d, outbox pending %v", code, *pending)
		}
		return nil
	})

	pub, err := broker.Open(context.Background(), bcfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	eventID := id.New()
	body := []byte(`{"id":"` + eventID + `","type":"book.created","occurred_at":"2030-01-01T00:00:00Z",` +
		`"data":{"id":"` + id.New() + `","author_id":"` + a.ID + `","version":1}}`)
	polltest.Until(t, "the broker accepts the event", func() error {
		return pub.Publish(context.Background(), broker.Message{Subject: tag + ".book.created", ID: eventID, Body: body})
	})
	polltest.Until(t, "the book is counted", func() error {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/authors/"+a.ID, nil)
		if code := doJSON(t, req, &a); code != http.StatusOK || a.BookCount != 1 {
			return fmt.Errorf("GET /authors/{id}: %d, book_count %d", code, a.BookCount)
		}
		return nil
	})
}

// doJSON sends req and decodes the answer into v, returning its status.
func doJSON(t *testing.T, req *http.Request, v any) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

func TestRunPrintsItsVersion(t *testing.T) { chassistest.WantVersion(t, run, "author") }

// TestRunHealthcheck: --healthcheck asks the program at FOLIO_HTTP_ADDR whether it
// is ready (chassis.Healthcheck) instead of starting one; here there is no port to ask.
func TestRunHealthcheck(t *testing.T) {
	err := run(context.Background(), []string{"author", "--healthcheck"}, chassistest.Env(map[string]string{"FOLIO_HTTP_ADDR": "127.0.0.1:0"}), &chassistest.LogBuffer{})
	if err == nil || !strings.Contains(err.Error(), "healthcheck: FOLIO_HTTP_ADDR") {
		t.Errorf("author --healthcheck with no port to ask: got %v, want the health check's error", err)
	}
}
