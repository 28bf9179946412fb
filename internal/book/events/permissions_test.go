package events_test

import (
	"slices"
	"testing"

	"folio/internal/book/events"
	"folio/internal/platform/broker/natsconn"
)

// TestTheBrokerPermitsTheConsumer: the durable consumer the book service creates is
// the one its NATS user may create (natsconn's permission table), so that a rename
// here cannot silently lock the service out of its events in production.
func TestTheBrokerPermitsTheConsumer(t *testing.T) {
	perms, err := natsconn.For("book", natsconn.DefaultNames)
	if err != nil {
		t.Fatal(err)
	}
	sub := events.Authors(nil).Subscription(natsconn.DefaultNames.Prefix)
	want := "$JS.API.CONSUMER.DURABLE.CREATE." + natsconn.DefaultNames.Stream + "." + sub.Name
	if !slices.Contains(perms.Publish, want) {
		t.Errorf("the book user may not create its consumer %q: %s is not among its permissions %q", sub.Name, want, perms.Publish)
	}
}
