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

	"golang.org/x/sync/errgroup"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/config"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/polltest"
)

// migrations are those of a service with one table.
var migrations = fstest.MapFS{
	"migrations/sqlite/00001_things.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")},
	"migrations/postgres/00001_things.sql": {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY);\n")},
}

// runThings is a service with one write route that needs an editor's token, started
// the way every Folio program's run starts.
func runThings(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	var cfg struct{ chassis.ServiceConfig }
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.Check("things", "127.0.0.1:0"); err != nil {
		return err
	}
	log := cfg.Logger(stdout, "things")
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()
	reg := metrics.NewRegistry()
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	mux := http.NewServeMux()
	mux.Handle("POST /things", verifier.Require(authn.Editor, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := authn.FromContext(r.Context())
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"by":%q}`, id.Subject)
	})))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { return chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix) })
	g.Go(func() error {
		return chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, []byte(`{}`),
			chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)},
			chassis.Register(disc, "things", cfg.Discovery, log))
	})
	return g.Wait()
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
	polltest.Until(t, "the revoked editor's token is refused", func() error {
		if got := post(tok); got != http.StatusUnauthorized {
			return fmt.Errorf("status %d, want 401", got)
		}
		return nil
	})
}
