package events_test

import (
	"slices"
	"testing"

	"folio/internal/inventory/events"
	"folio/internal/platform/broker/natsconn"
)

// TestTheBrokerPermitsTheConsumers: the durable consumers the inventory service
// creates are those its NATS user may create (natsconn's permission table), so that
// a rename here cannot silently lock the service out of its commands in production.
func TestTheBrokerPermitsTheConsumers(t *testing.T) {
	perms, err := natsconn.For("inventory", natsconn.DefaultNames)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{events.Orders(nil, nil, nil).Subscription(natsconn.DefaultNames.Prefix).Name,
		events.Books(nil).Subscription(natsconn.DefaultNames.Prefix).Name} {
		want := "$JS.API.CONSUMER.DURABLE.CREATE." + natsconn.DefaultNames.Stream + "." + c
		if !slices.Contains(perms.Publish, want) {
			t.Errorf("the inventory user may not create its consumer %q: %s is not among its permissions %q", c, want, perms.Publish)
		}
	}
	// The replies (inventory.reserved, …) go out under the service's own subjects.
	if want := natsconn.DefaultNames.Prefix + ".inventory.>"; !slices.Contains(perms.Publish, want) {
		t.Errorf("the inventory user may not publish its replies: %s is not among its permissions %q", want, perms.Publish)
	}
}
