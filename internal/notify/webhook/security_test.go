package webhook_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"folio/internal/notify"
	"folio/internal/notify/notifytest"
	"folio/internal/notify/webhook"
	"folio/internal/platform/egress"
	"folio/internal/platform/egress/egresstest"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
)

// TestSignMatchesTheSpecification checks Sign against the test vectors published
// with the Standard Webhooks reference libraries (the Python and JavaScript
// libraries' sign tests, and the Rust library's), and the plain-secret rule.
func TestSignMatchesTheSpecification(t *testing.T) {
	for _, tc := range []struct {
		secret, id string
		ts         int64
		body, want string
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
			`{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553,
			`{"email":"test@example.com","username":"test_user"}`, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="},
	} {
		if got := webhook.Sign(tc.secret, tc.id, time.Unix(tc.ts, 0), []byte(tc.body)); got != tc.want {
			t.Errorf("Sign(%s, %s): got %s, want %s", tc.secret, tc.id, got, tc.want)
		}
	}
	// A plain secret is used as its bytes: the same signature as whsec_ and its base64.
	plain := webhook.Sign("0123456789abcdef", "e1", time.Unix(1, 0), []byte("{}"))
	if want := webhook.Sign("whsec_MDEyMzQ1Njc4OWFiY2RlZg==", "e1", time.Unix(1, 0), []byte("{}")); plain != want {
		t.Errorf("plain secret: got %s, want %s", plain, want)
	}
}

// TestWebhookVerifiesWithTheReferenceLibrary has the Standard Webhooks reference
// Go library, an independent verifier, check real deliveries, with a whsec_ secret
// and a plain one; a delivery replayed later or changed in any part fails it.
func TestWebhookVerifiesWithTheReferenceLibrary(t *testing.T) {
	for _, tc := range []struct {
		name, secret string
		verifier     func() (*standardwebhooks.Webhook, error)
	}{
		{"whsec", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", func() (*standardwebhooks.Webhook, error) {
			return standardwebhooks.NewWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		}},
		{"plain", secret, func() (*standardwebhooks.Webhook, error) { return standardwebhooks.NewWebhookRaw([]byte(secret)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := notifytest.NewReceiver(t, func(int, *http.Request) int { return http.StatusOK })
			s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Fast())
			sub := s.Subscribe(t, rc.URL, tc.secret, "book.created")
			m := notifytest.Event(t, id.New(), "book.created")
			s.Receive(t, m)
			stop := s.RunWorker(t)
			polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.Delivery(t, sub.ID).Status == notify.StatusDelivered }))
			stop()
			r := rc.Got()[0]
			wh, err := tc.verifier()
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(r.Body, r.Header); err != nil {
				t.Errorf("the reference library refuses the delivery: %v (headers %v)", err, r.Header)
			}
			old := r.Header.Clone()
			old.Set("webhook-timestamp", "1614265330")
			otherID := r.Header.Clone()
			otherID.Set("webhook-id", id.New())
			for name, c := range map[string]struct {
				body   []byte
				header http.Header
			}{
				"replayed later": {r.Body, old},
				"another id":     {r.Body, otherID},
				"another body":   {[]byte(strings.Replace(string(r.Body), m.ID, id.New(), 1)), r.Header},
			} {
				if err := wh.Verify(c.body, c.header); err == nil {
					t.Errorf("%s: the reference library accepts it", name)
				}
			}
		})
	}
}

// rebinding answers every name with a public address, as a rebinding DNS server
// answers the first lookup; the dial's own lookup then finds the loopback.
type rebinding struct{}

func (rebinding) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
}

// TestWebhookToAPrivateAddressIsRefused replays DNS rebinding: a name that was
// public when the subscription was made and is the loopback when the event goes out.
// The dialer refuses it, so the receiver gets nothing; with private addresses
// allowed the same delivery goes through.
func TestWebhookToAPrivateAddressIsRefused(t *testing.T) {
	for _, allow := range []bool{false, true} {
		rc := notifytest.NewReceiver(t, func(int, *http.Request) int { return http.StatusOK })
		_, port, _ := net.SplitHostPort(rc.Server.Listener.Addr().String())
		cfg := notifytest.Fast()
		cfg.Egress = egress.Policy{AllowPrivate: allow, Resolver: rebinding{}}
		s := notifytest.New(t, notifytest.OpenSQLite(t), cfg)
		_, d := attemptOnce(t, s, "http://localhost:"+port+"/hook")
		if !allow {
			if len(rc.Got()) != 0 || d.Status != notify.StatusPending || d.LastError == nil || *d.LastError != "forbidden address" {
				t.Errorf("check on: the receiver got %d requests, delivery %+v; want none, forbidden address", len(rc.Got()), d)
			}
			continue
		}
		if len(rc.Got()) != 1 || d.Status != notify.StatusDelivered {
			t.Errorf("check off: the receiver got %d requests, delivery %+v; want it delivered", len(rc.Got()), d)
		}
	}
}

// attemptOnce subscribes url to book.created, has one such event delivered until
// the worker has tried it once, and returns the subscription's id and the delivery
// as it then stands.
func attemptOnce(t *testing.T, s *notifytest.Service, url string) (string, notify.Delivery) {
	t.Helper()
	sub := s.Subscribe(t, url, secret, "book.created")
	s.Receive(t, notifytest.Event(t, id.New(), "book.created"))
	stop := s.RunWorker(t)
	polltest.Until(t, "an attempt", polltest.Holds(func() bool { return s.Delivery(t, sub.ID).Attempts >= 1 }))
	stop()
	return sub.ID, s.Delivery(t, sub.ID)
}

// TestLastErrorHidesThePeersBytes replays the banner oracle: a subscription to a
// port where something that is not HTTP answers (NATS greets with INFO {...}) shows
// a category in last_error, not the banner.
func TestLastErrorHidesThePeersBytes(t *testing.T) {
	addr := egresstest.NotHTTP(t, `INFO {"server_id":"NBANNER","version":"2.12.0","auth_required":false,"max_payload":1048576}`)
	s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Fast())
	subID, d := attemptOnce(t, s, "http://"+addr+"/")
	// The deliveries as the API lists them.
	listed, err := json.Marshal(s.Deliveries(t, subID))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"INFO", "NBANNER", "server_id", "max_payload"} {
		if strings.Contains(string(listed), leak) {
			t.Errorf("the deliveries show the peer's bytes (%s): %s", leak, listed)
		}
	}
	if d.LastError == nil || *d.LastError != "malformed response" {
		t.Errorf("last_error %v, want malformed response", d.LastError)
	}
}
