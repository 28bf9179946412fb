package events_test

import (
	"slices"
	"strings"
	"testing"

	"folio/internal/payment"
	"folio/internal/payment/events"
	"folio/internal/platform/broker/natsconn"
)

// TestTheBrokerPermitsTheConsumer: the durable consumer the payment service creates
// is the one its NATS user may create (natsconn's permission table), so that a
// rename here cannot silently lock the service out of its commands in production.
func TestTheBrokerPermitsTheConsumer(t *testing.T) {
	perms, err := natsconn.For("payment", natsconn.DefaultNames)
	if err != nil {
		t.Fatal(err)
	}
	sub := events.Orders(nil, nil, nil).Subscription(natsconn.DefaultNames.Prefix)
	want := "$JS.API.CONSUMER.DURABLE.CREATE." + natsconn.DefaultNames.Stream + "." + sub.Name
	if !slices.Contains(perms.Publish, want) {
		t.Errorf("the payment user may not create its consumer %q: %s is not among its permissions %q", sub.Name, want, perms.Publish)
	}
	// Its replies go out under its own subjects, which it may publish to.
	if !slices.Contains(perms.Publish, natsconn.DefaultNames.Prefix+".payment.>") {
		t.Errorf("the payment user may not publish its replies (%s.payment.>): %q", natsconn.DefaultNames.Prefix, perms.Publish)
	}
	for _, typ := range []string{payment.ReplyAuthorised, payment.ReplyDeclined, payment.ReplyCaptured, payment.ReplyCaptureFailed, payment.ReplyVoided, payment.ReplyRefunded} {
		if !strings.HasPrefix(typ, "payment.") {
			t.Errorf("reply %s is not under payment.>", typ)
		}
	}
}
