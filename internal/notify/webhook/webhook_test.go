package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"folio/internal/notify"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
)

func TestWebhookIsSigned(t *testing.T) {
	rc := notifytest.NewReceiver(t, func(int, *http.Request) int { return http.StatusNoContent })
	s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Fast())
	sub := s.Subscribe(t, rc.URL+"/hook", secret, "book.updated")
	m := notifytest.Event(t, id.New(), "book.updated")
	s.Receive(t, m)
	stop := s.RunWorker(t)
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.Delivery(t, sub.ID).Status == notify.StatusDelivered }))
	stop()

	reqs := rc.Got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if string(r.Body) != string(m.Body) {
		t.Errorf("body %s, want exactly the event received %s", r.Body, m.Body)
	}
	ts := r.Header.Get("webhook-timestamp")
	sent, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sent, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q, want the Unix seconds of the attempt", ts)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(m.ID + "." + ts + "."))
	mac.Write(r.Body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	got := r.Header.Get("webhook-signature")
	if !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("webhook-signature %q, want %q", got, want)
	}
	if r.Header.Get("webhook-id") != m.ID || r.Header.Get("Folio-Event-Type") != "book.updated" ||
		r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	if r.Header.Get("Folio-Signature") != "" || r.Header.Get("Folio-Event-Id") != "" {
		t.Errorf("the v1.0 headers are still sent: %v", r.Header)
	}
	d := s.Delivery(t, sub.ID)
	if d.Attempts != 1 || d.LastError != nil {
		t.Errorf("delivery %+v, want delivered at the first attempt", d)
	}
}

func TestWebhookTransportFailuresAreRetriedWithTheirKind(t *testing.T) {
	// One receiver that never answers in time, one address where nothing listens.
	hang := make(chan struct{})
	slow := notifytest.NewReceiver(t, func(_ int, r *http.Request) int {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(hang) })
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	cfg := notifytest.Fast()
	cfg.AttemptTimeout = 50 * time.Millisecond
	cfg.GiveUpAfter = time.Hour
	s := notifytest.New(t, notifytest.OpenSQLite(t), cfg)
	slowSub := s.Subscribe(t, slow.URL, secret, "book.created")
	deadSub := s.Subscribe(t, closedURL, secret, "book.created")
	s.Receive(t, notifytest.Event(t, id.New(), "book.created"))
	stop := s.RunWorker(t)
	polltest.Until(t, "failed attempts", polltest.Holds(func() bool {
		return s.Delivery(t, slowSub.ID).Attempts >= 2 && s.Delivery(t, deadSub.ID).Attempts >= 2
	}))
	stop()
	for _, tc := range []struct {
		id, want string
	}{{slowSub.ID, "timeout: no answer within 50ms"}, {deadSub.ID, "connection refused"}} {
		d := s.Delivery(t, tc.id)
		if d.Status != notify.StatusPending || d.LastError == nil || *d.LastError != tc.want {
			t.Errorf("delivery %+v, want pending with last_error about %q", d, tc.want)
		}
	}
}

func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	target := notifytest.NewReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	defer redirect.Close()
	cfg := notifytest.Fast()
	s := notifytest.New(t, notifytest.OpenSQLite(t), cfg)
	sub := s.Subscribe(t, redirect.URL, secret, "book.created")
	s.Receive(t, notifytest.Event(t, id.New(), "book.created"))
	stop := s.RunWorker(t)
	polltest.Until(t, "a failed attempt", polltest.Holds(func() bool { return s.Delivery(t, sub.ID).Attempts >= 1 }))
	stop()
	d := s.Delivery(t, sub.ID)
	if d.Status != notify.StatusPending || d.LastError == nil || *d.LastError != "http 302 (redirects are not followed)" {
		t.Errorf("delivery %+v, want pending after a 302", d)
	}
	if n := len(target.Got()); n != 0 {
		t.Errorf("the redirect was followed: the target got %d requests", n)
	}
}
