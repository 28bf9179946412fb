package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// eventTags holds each test's broker environment, so that all the programs of one
// test share it.
var eventTags sync.Map // test name → []string

// testEvents returns the environment that gives the programs of t an event stream
// of their own on FOLIO_TEST_NATS_URL (the server is shared with other tests and
// runs), deleted when t ends. Without that URL, the programs get a broker address
// nothing listens on: they serve all the same, keeping their events in the outbox.
func testEvents(t *testing.T) []string {
	t.Helper()
	if env, ok := eventTags.Load(t.Name()); ok {
		return env.([]string)
	}
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		env := []string{"FOLIO_NATS_URL=nats://127.0.0.1:1"}
		eventTags.Store(t.Name(), env)
		return env
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	tag := "e2e" + hex.EncodeToString(b)
	stream := "FOLIO_" + tag
	env := []string{"FOLIO_BROKER=nats", "FOLIO_NATS_URL=" + url, "FOLIO_EVENTS_STREAM=" + stream, "FOLIO_EVENTS_PREFIX=" + tag}
	eventTags.Store(t.Name(), env)
	t.Cleanup(func() {
		eventTags.Delete(t.Name())
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("delete stream %s: %v", stream, err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})
	return env
}
