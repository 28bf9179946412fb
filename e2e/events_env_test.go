package e2e

import (
	"os"
	"sync"
	"testing"
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
	tag := randomTag()
	stream := "FOLIO_" + tag
	env := []string{"FOLIO_BROKER=nats", "FOLIO_NATS_URL=" + url, "FOLIO_EVENTS_STREAM=" + stream, "FOLIO_EVENTS_PREFIX=" + tag}
	eventTags.Store(t.Name(), env)
	t.Cleanup(func() {
		eventTags.Delete(t.Name())
		deleteNATSStream(t, url, stream)
	})
	return env
}
