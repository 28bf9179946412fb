package process_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/process"
	"folio/internal/platform/process/processtest"
)

// migrations are those of a service with one table.
var migrations = fstest.MapFS{
	"migrations/sqlite/00001_things.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")},
	"migrations/postgres/00001_things.sql": {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")},
}

// runThings is a service with one write route that needs an editor's token.
func runThings(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	var cfg struct{ process.Base }
	p, err := process.Start(ctx, "things", "127.0.0.1:0", &cfg, &cfg.Base, getenv, stdout, migrations)
	if err != nil {
		return err
	}
	defer p.Close()
	mux := http.NewServeMux()
	mux.Handle("POST /things", p.Verifier.Require(authn.Editor, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := authn.FromContext(r.Context())
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"by":%q}`, id.Subject)
	})))
	return p.Serve(ctx, mux, []byte(`{}`))
}

// TestServiceVerifiesTokensAndFollowsRevocations starts a service as folio up
// does, with only the auth service's URL: it fetches the JWKS from there, refuses
// a write without a token, and refuses an editor's token once the auth service
// publishes that account's revocation.
func TestServiceVerifiesTokensAndFollowsRevocations(t *testing.T) {
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("FOLIO_TEST_NATS_URL is not set; skipping the revocation feed test")
	}
	iss := authntest.New(t)
	unique := fmt.Sprint(time.Now().UnixNano())
	bcfg := broker.Config{Kind: "nats", NATSURL: url, Stream: "PROCESS_TEST_" + unique, Prefix: "processtest" + unique}
	prog := processtest.Start(t, runThings, nil, map[string]string{
		"FOLIO_DATA_DIR":      t.TempDir(),
		"FOLIO_DATABASE_URL":  "sqlite:" + filepath.Join(t.TempDir(), "things.db"),
		"FOLIO_AUTH_URL":      strings.TrimSuffix(iss.JWKSURL(), authntest.JWKSPath),
		"FOLIO_NATS_URL":      url,
		"FOLIO_EVENTS_STREAM": bcfg.Stream,
		"FOLIO_EVENTS_PREFIX": bcfg.Prefix,
		"FOLIO_ACCESS_LOG":    "false",
	})
	t.Cleanup(func() { deleteStream(t, url, bcfg.Stream) })

	post := func(auth string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, prog.URL+"/things", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(""); got != http.StatusUnauthorized {
		t.Fatalf("a write without a token: status %d, want 401", got)
	}
	tok := authntest.Bearer(iss.Token("ed-1", authn.RoleEditor))
	if got := post(tok); got != http.StatusCreated {
		t.Fatalf("an editor's write: status %d, want 201", got)
	}

	b, err := broker.Open(t.Context(), bcfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The service's follower may not be live yet; it replays from a token
	// lifetime ago, so the event is seen whenever it starts.
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
	for deadline := time.Now().Add(15 * time.Second); post(tok) != http.StatusUnauthorized; {
		if time.Now().After(deadline) {
			t.Fatal("the revoked editor's token still writes 15 s after the revocation was published")
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
