package events_test

import (
	"slices"
	"testing"

	"folio/internal/order/events"
	"folio/internal/platform/broker/natsconn"
)

// TestTheBrokerPermitsTheConsumer: the durable consumer the order service creates,
// and its subjects, are those its NATS user may create (natsconn's permission
// table), so that a rename here cannot silently lock the service out of its
// replies in production.
func TestTheBrokerPermitsTheConsumer(t *testing.T) {
	perms, err := natsconn.For("order", natsconn.DefaultNames)
	if err != nil {
		t.Fatal(err)
	}
	sub := events.Replies(nil, nil, nil, nil).Subscription(natsconn.DefaultNames.Prefix)
	want := "$JS.API.CONSUMER.DURABLE.CREATE." + natsconn.DefaultNames.Stream + "." + sub.Name
	if !slices.Contains(perms.Publish, want) {
		t.Errorf("the order user may not create its consumer %q: %s is not among its permissions %q", sub.Name, want, perms.Publish)
	}
	wantSubjects := []string{natsconn.DefaultNames.Prefix + ".inventory.>", natsconn.DefaultNames.Prefix + ".payment.>"}
	if !slices.Equal(sub.Subjects, wantSubjects) {
		t.Errorf("subjects %q, want %q", sub.Subjects, wantSubjects)
	}
}
