package authntest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/platform/broker"
)

// Feed is a JetStream stream of its own on the test NATS server
// (FOLIO_TEST_NATS_URL), on which a test publishes account revocations as the auth
// service's outbox does, for a verifier or a program that follows them.
type Feed struct {
	// URL, Stream and Prefix are what FOLIO_NATS_URL, FOLIO_EVENTS_STREAM and
	// FOLIO_EVENTS_PREFIX tell a program that follows the feed.
	URL, Stream, Prefix string
	// Broker publishes on the feed; a verifier under test may follow it too.
	Broker *broker.Broker

	t testing.TB
}

// NewFeed opens a feed with a new stream, deleted when the test ends. Without
// FOLIO_TEST_NATS_URL it skips the test, or fails it under
// FOLIO_REQUIRE_INTEGRATION=1.
func NewFeed(t testing.TB) *Feed {
	t.Helper()
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("FOLIO_TEST_NATS_URL is not set; skipping the revocation feed test")
	}
	unique := fmt.Sprint(time.Now().UnixNano())
	f := &Feed{URL: url, Stream: "AUTHNTEST_" + unique, Prefix: "authntest" + unique, t: t}
	t.Cleanup(func() { deleteStream(t, url, f.Stream) })
	b, err := broker.Open(context.Background(), broker.Config{Kind: "nats", NATSURL: url, Stream: f.Stream, Prefix: f.Prefix}, nil, nil)
	if err != nil {
		t.Fatalf("open the revocation feed: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	f.Broker = b
	return f
}

// Revoke publishes an account.revoked event for subject, refusing its tokens
// issued before before, in the envelope the auth service writes. A broker that
// is not connected yet fails a publish at once, so it tries again for up to 15 s.
func (f *Feed) Revoke(subject string, before time.Time) {
	f.t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		f.t.Fatal(err)
	}
	data, err := json.Marshal(struct {
		ID            string `json:"id"`
		RevokedBefore int64  `json:"revoked_before"`
	}{subject, before.Unix()})
	if err != nil {
		f.t.Fatal(err)
	}
	body, err := json.Marshal(broker.Envelope{ID: id.String(), Type: "account.revoked", OccurredAt: time.Now().UTC(), Data: data})
	if err != nil {
		f.t.Fatal(err)
	}
	m := broker.Message{Subject: f.Prefix + ".account.revoked", ID: id.String(), Body: body}
	for deadline := time.Now().Add(15 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f.Broker.Publish(ctx, m)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("publish the revocation of %s: %v", subject, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func deleteStream(t testing.TB, url, stream string) {
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
