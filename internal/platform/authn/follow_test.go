package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
)

// revoked is an account.revoked event as the auth service's outbox publishes it.
func revoked(prefix, id string, before time.Time) broker.Message {
	eventID := fmt.Sprintf("evt-%s-%d", id, time.Now().UnixNano())
	body := fmt.Sprintf(`{"id":%q,"type":"account.revoked","occurred_at":%q,"data":{"id":%q,"revoked_before":%d}}`,
		eventID, time.Now().UTC().Format(time.RFC3339Nano), id, before.Unix())
	return broker.Message{Subject: prefix + ".account.revoked", ID: eventID, Body: []byte(body)}
}

// TestFollowRevocationsOnNATS replays finding 8 of issue 8 through the broker: a
// revocation published before the verifier started (a restart) and one published
// while it runs both refuse the subject's earlier tokens.
func TestFollowRevocationsOnNATS(t *testing.T) {
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("FOLIO_TEST_NATS_URL is not set; skipping the revocation feed test")
	}
	unique := fmt.Sprint(time.Now().UnixNano())
	cfg := broker.Config{Kind: "nats", NATSURL: url, Stream: "AUTHN_TEST_" + unique, Prefix: "authntest" + unique}
	t.Cleanup(func() { deleteStream(t, url, cfg.Stream) })
	b, err := broker.Open(t.Context(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	f := newFixture(t, nil)
	early, late := f.token("early", []string{RoleEditor}), f.token("late", []string{RoleEditor})
	for _, tok := range []string{early, late} {
		if a := f.write(tok); a.status != http.StatusOK {
			t.Fatalf("before any revocation: status = %d, want 200", a.status)
		}
	}
	publish(t, b, revoked(cfg.Prefix, "early", time.Now().Add(time.Second)))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.v.FollowRevocations(ctx, b, cfg.Prefix) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("FollowRevocations returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("FollowRevocations did not return after its context ended")
		}
	}()

	waitRefused(t, f, early, "a revocation published before the verifier followed")
	// Until the follower is known to be live, keep publishing: an event it has
	// already applied changes nothing.
	deadline := time.Now().Add(15 * time.Second)
	for {
		publish(t, b, revoked(cfg.Prefix, "late", time.Now().Add(time.Second)))
		if a := f.write(late); a.status == http.StatusUnauthorized {
			wantRefused(t, a, "revoked")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a revocation published while following was not applied within 15 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	fresh := f.token("late", []string{RoleEditor}, func(c *authntest.Claims) {
		c.IssuedAt = jwt.NewNumericDate(time.Now().Add(2 * time.Second))
	})
	if a := f.write(fresh); a.status != http.StatusOK {
		t.Errorf("a token issued after the revocation: status = %d, want 200 (%s)", a.status, a.body)
	}
}

func publish(t *testing.T, b *broker.Broker, m broker.Message) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := b.Publish(ctx, m)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: %v", m.Subject, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitRefused(t *testing.T, f *fixture, tok, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if a := f.write(tok); a.status == http.StatusUnauthorized {
			wantRefused(t, a, "revoked")
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not applied within 15 s", what)
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
