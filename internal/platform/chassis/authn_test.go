package chassis_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis"
	"folio/internal/platform/chassis/chassistest"
)

// migrations are those of a service with one table.
var migrations = fstest.MapFS{
	"migrations/sqlite/00001_things.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")},
	"migrations/postgres/00001_things.sql": {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")},
}

// runThings is a service with one write route that needs an editor's token.
func runThings(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	var cfg struct{ chassis.ServiceConfig }
	p, err := chassis.Start(ctx, "things", "127.0.0.1:0", &cfg, &cfg.ServiceConfig, getenv, stdout, migrations)
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
	iss := authntest.New(t)
	feed := authntest.NewFeed(t)
	prog := chassistest.Start(t, runThings, nil, map[string]string{
		"FOLIO_DATA_DIR":      t.TempDir(),
		"FOLIO_DATABASE_URL":  "sqlite:" + filepath.Join(t.TempDir(), "things.db"),
		"FOLIO_AUTH_URL":      strings.TrimSuffix(iss.JWKSURL(), authntest.JWKSPath),
		"FOLIO_NATS_URL":      feed.URL,
		"FOLIO_EVENTS_STREAM": feed.Stream,
		"FOLIO_EVENTS_PREFIX": feed.Prefix,
		"FOLIO_ACCESS_LOG":    "false",
	})

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

	// The service's follower may not be live yet; it replays from a token
	// lifetime ago, so the event is seen whenever it starts.
	feed.Revoke("ed-1", time.Now().Add(time.Second))
	for deadline := time.Now().Add(15 * time.Second); post(tok) != http.StatusUnauthorized; {
		if time.Now().After(deadline) {
			t.Fatal("the revoked editor's token still writes 15 s after the revocation was published")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
