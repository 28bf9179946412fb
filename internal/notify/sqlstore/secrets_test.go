package sqlstore_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"folio/internal/notify"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
	"folio/internal/platform/secrets"
)

const secret = notifytest.Secret

// TestSecretsAreSealedAtRest reads the database as a thief would: no secret is in
// it, a secret stored in clear by an older version is sealed at start, and the
// deliveries still verify.
func TestSecretsAreSealedAtRest(t *testing.T) {
	db := notifytest.OpenSQLite(t)
	rc := notifytest.NewReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	s := notifytest.New(t, db, notifytest.Fast())
	sealed := s.Subscribe(t, rc.URL+"/new", secret, "book.created")
	// A row as the previous version wrote it, secret in clear.
	const oldSecret = "an-old-clear-secret-0123"
	oldID := id.New()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO subscriptions (id, url, secret, created_at) VALUES ($1, $2, $3, $4)`,
		oldID, rc.URL+"/old", oldSecret, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO subscription_events (subscription_id, event_type, position) VALUES ($1, 'book.created', 0)`, oldID); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Svc.SealSecrets(ctx); err != nil || n != 1 {
		t.Fatalf("SealSecrets: %d, %v; want 1 sealed", n, err)
	}
	if n, err := s.Svc.SealSecrets(ctx); err != nil || n != 0 {
		t.Errorf("SealSecrets again: %d, %v; want 0", n, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT id, secret FROM subscriptions`)
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]string{}
	for rows.Next() {
		var id, sec string
		if err := rows.Scan(&id, &sec); err != nil {
			t.Fatal(err)
		}
		raw[id] = sec
	}
	rows.Close()
	for id, sec := range raw {
		if !secrets.IsSealed(sec) || strings.Contains(sec, secret) || strings.Contains(sec, oldSecret) {
			t.Errorf("subscription %s: the database holds %q, want it sealed", id, sec)
		}
	}
	// A sealed secret moved onto another subscription does not open there.
	if _, err := db.ExecContext(ctx, `UPDATE subscriptions SET secret = $1 WHERE id = $2`, raw[sealed.ID], oldID); err != nil {
		t.Fatal(err)
	}
	m := notifytest.Event(t, id.New(), "book.created")
	s.Receive(t, m)
	stop := s.RunWorker(t)
	polltest.Until(t, "both attempts", polltest.Holds(func() bool {
		return s.Delivery(t, sealed.ID).Status == notify.StatusDelivered && s.Delivery(t, oldID).Attempts >= 1
	}))
	stop()
	if d := s.Delivery(t, oldID); d.Status == notify.StatusDelivered || d.LastError == nil || *d.LastError != "the secret cannot be unsealed" {
		t.Errorf("a secret sealed for another subscription: delivery %+v, want it not sent", d)
	}
	sent := rc.Got()
	if len(sent) != 1 {
		t.Fatalf("the receiver got %d requests, want 1", len(sent))
	}
	wh, _ := standardwebhooks.NewWebhookRaw([]byte(secret))
	if err := wh.Verify(sent[0].Body, sent[0].Header); err != nil {
		t.Errorf("the delivery of a sealed secret does not verify: %v", err)
	}
}
