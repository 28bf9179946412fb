package notify_test

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
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/egress"
	"folio/internal/platform/egress/egresstest"
	"folio/internal/platform/polltest"
	"folio/internal/platform/rest"
	"folio/internal/platform/secrets"
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
		if got := notify.Sign(tc.secret, tc.id, time.Unix(tc.ts, 0), []byte(tc.body)); got != tc.want {
			t.Errorf("Sign(%s, %s): got %s, want %s", tc.secret, tc.id, got, tc.want)
		}
	}
	// A plain secret is used as its bytes: the same signature as whsec_ and its base64.
	plain := notify.Sign("0123456789abcdef", "e1", time.Unix(1, 0), []byte("{}"))
	if want := notify.Sign("whsec_MDEyMzQ1Njc4OWFiY2RlZg==", "e1", time.Unix(1, 0), []byte("{}")); plain != want {
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
			rc := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
			s := newServerConfig(t, openSQLite(t), fast())
			sub := s.subscribe(t, rc.srv.URL, tc.secret, "book.created")
			m := event(t, rest.NewID(), "book.created")
			if err := s.svc.HandleEvent(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			stop := runWorker(t, s.svc)
			polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.deliveries(t, sub.ID)[0].Status == notify.StatusDelivered }))
			stop()
			r := rc.got()[0]
			wh, err := tc.verifier()
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(r.body, r.header); err != nil {
				t.Errorf("the reference library refuses the delivery: %v (headers %v)", err, r.header)
			}
			old := r.header.Clone()
			old.Set("webhook-timestamp", "1614265330")
			otherID := r.header.Clone()
			otherID.Set("webhook-id", rest.NewID())
			for name, c := range map[string]struct {
				body   []byte
				header http.Header
			}{
				"replayed later": {r.body, old},
				"another id":     {r.body, otherID},
				"another body":   {[]byte(strings.Replace(string(r.body), m.ID, rest.NewID(), 1)), r.header},
			} {
				if err := wh.Verify(c.body, c.header); err == nil {
					t.Errorf("%s: the reference library accepts it", name)
				}
			}
		})
	}
}

// TestCreateRefusesNonPublicURLs replays the SSRF subscriptions of the review:
// loopback, the wildcard address, the NATS port, cloud metadata, private networks,
// by address and by name, get 422 naming url unless private addresses are allowed.
func TestCreateRefusesNonPublicURLs(t *testing.T) {
	strict := newServer(t, openSQLite(t))
	lax := newServerConfig(t, openSQLite(t), notify.Config{Egress: egress.Policy{AllowPrivate: true}})
	body := func(url string) string {
		b, _ := json.Marshal(map[string]any{"url": url, "events": []string{"book.created"}, "secret": secret})
		return string(b)
	}
	for _, url := range []string{
		"http://127.0.0.1:8083/auth/token", "http://localhost:8083/", "http://0.0.0.0:8084/", "http://127.0.0.1:4222/",
		"http://[::1]:8080/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/", "http://192.168.1.10/", "http://172.16.5.4/", "http://100.64.1.1/", "http://[fd00::1]/",
	} {
		rec := strict.do(http.MethodPost, "/subscriptions", body(url))
		if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), `"field":"url"`) {
			t.Errorf("%s: got %d %s, want 422 naming url", url, rec.Code, rec.Body)
		}
		if rec := lax.do(http.MethodPost, "/subscriptions", body(url)); rec.Code != http.StatusCreated {
			t.Errorf("%s with private addresses allowed: got %d %s, want 201", url, rec.Code, rec.Body)
		}
	}
	for _, url := range []string{"https://user:pw@hooks.example.com/", "https://token@hooks.example.com/", "gopher://hooks.example.com/"} {
		for _, s := range []*server{strict, lax} {
			if rec := s.do(http.MethodPost, "/subscriptions", body(url)); rec.Code != http.StatusUnprocessableEntity {
				t.Errorf("%s: got %d, want 422", url, rec.Code)
			}
		}
	}
	if rec := strict.do(http.MethodGet, "/subscriptions", ""); !strings.Contains(rec.Body.String(), `"items":[]`) {
		t.Errorf("a refused URL was stored: %s", rec.Body)
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
		rc := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
		_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
		cfg := fast()
		cfg.Egress = egress.Policy{AllowPrivate: allow, Resolver: rebinding{}}
		s := newServerConfig(t, openSQLite(t), cfg)
		_, d := attemptOnce(t, s, "http://localhost:"+port+"/hook")
		if !allow {
			if len(rc.got()) != 0 || d.Status != notify.StatusPending || d.LastError == nil || *d.LastError != "forbidden address" {
				t.Errorf("check on: the receiver got %d requests, delivery %+v; want none, forbidden address", len(rc.got()), d)
			}
			continue
		}
		if len(rc.got()) != 1 || d.Status != notify.StatusDelivered {
			t.Errorf("check off: the receiver got %d requests, delivery %+v; want it delivered", len(rc.got()), d)
		}
	}
}

// attemptOnce subscribes url to book.created, has one such event delivered until
// the worker has tried it once, and returns the subscription's id and the delivery
// as it then stands.
func attemptOnce(t *testing.T, s *server, url string) (string, notify.Delivery) {
	t.Helper()
	sub := s.subscribe(t, url, secret, "book.created")
	if err := s.svc.HandleEvent(context.Background(), event(t, rest.NewID(), "book.created")); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	polltest.Until(t, "an attempt", polltest.Holds(func() bool { return s.deliveries(t, sub.ID)[0].Attempts >= 1 }))
	stop()
	return sub.ID, s.deliveries(t, sub.ID)[0]
}

// TestLastErrorHidesThePeersBytes replays the banner oracle: a subscription to a
// port where something that is not HTTP answers (NATS greets with INFO {...}) shows
// a category in last_error, not the banner.
func TestLastErrorHidesThePeersBytes(t *testing.T) {
	addr := egresstest.NotHTTP(t, `INFO {"server_id":"NBANNER","version":"2.12.0","auth_required":false,"max_payload":1048576}`)
	s := newServerConfig(t, openSQLite(t), fast())
	id, d := attemptOnce(t, s, "http://"+addr+"/")
	rec := s.do(http.MethodGet, "/subscriptions/"+id+"/deliveries", "")
	for _, leak := range []string{"INFO", "NBANNER", "server_id", "max_payload"} {
		if strings.Contains(rec.Body.String(), leak) {
			t.Errorf("the deliveries show the peer's bytes (%s): %s", leak, rec.Body)
		}
	}
	if d.LastError == nil || *d.LastError != "malformed response" {
		t.Errorf("last_error %v, want malformed response", d.LastError)
	}
}

func TestCreateStopsAtTheCap(t *testing.T) {
	s := newServerConfig(t, openSQLite(t), notify.Config{MaxSubscriptions: 2})
	first := s.subscribe(t, "https://hooks.example.com/1", secret, "book.created")
	s.subscribe(t, "https://hooks.example.com/2", secret, "book.created")
	body := `{"url":"https://hooks.example.com/3","events":["book.created"],"secret":"` + secret + `"}`
	rec := s.do(http.MethodPost, "/subscriptions", body)
	if rec.Code != http.StatusConflict {
		t.Fatalf("past the cap: got %d %s, want 409", rec.Code, rec.Body)
	}
	if p := problemOf(t, rec.Body.Bytes()); !strings.Contains(p.Detail, "maximum of 2") {
		t.Errorf("problem %+v, want it to say the maximum", p)
	}
	if rec := s.do(http.MethodDelete, "/subscriptions/"+first.ID, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: got %d", rec.Code)
	}
	if rec := s.do(http.MethodPost, "/subscriptions", body); rec.Code != http.StatusCreated {
		t.Errorf("after a delete: got %d %s, want 201", rec.Code, rec.Body)
	}
}

// TestSecretsAreSealedAtRest reads the database as a thief would: no secret is in
// it, a secret stored in clear by an older version is sealed at start, and the
// deliveries still verify.
func TestSecretsAreSealedAtRest(t *testing.T) {
	db := openSQLite(t)
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	s := newServerConfig(t, db, fast())
	sealed := s.subscribe(t, rc.srv.URL+"/new", secret, "book.created")
	// A row as the previous version wrote it, secret in clear.
	const oldSecret = "an-old-clear-secret-0123"
	oldID := rest.NewID()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO subscriptions (id, url, secret, created_at) VALUES ($1, $2, $3, $4)`,
		oldID, rc.srv.URL+"/old", oldSecret, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO subscription_events (subscription_id, event_type, position) VALUES ($1, 'book.created', 0)`, oldID); err != nil {
		t.Fatal(err)
	}
	if n, err := s.svc.SealSecrets(ctx); err != nil || n != 1 {
		t.Fatalf("SealSecrets: %d, %v; want 1 sealed", n, err)
	}
	if n, err := s.svc.SealSecrets(ctx); err != nil || n != 0 {
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
	m := event(t, rest.NewID(), "book.created")
	if err := s.svc.HandleEvent(ctx, m); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	polltest.Until(t, "both attempts", polltest.Holds(func() bool {
		return s.deliveries(t, sealed.ID)[0].Status == notify.StatusDelivered && s.deliveries(t, oldID)[0].Attempts >= 1
	}))
	stop()
	if d := s.deliveries(t, oldID)[0]; d.Status == notify.StatusDelivered || d.LastError == nil || *d.LastError != "the secret cannot be unsealed" {
		t.Errorf("a secret sealed for another subscription: delivery %+v, want it not sent", d)
	}
	sent := rc.got()
	if len(sent) != 1 {
		t.Fatalf("the receiver got %d requests, want 1", len(sent))
	}
	wh, _ := standardwebhooks.NewWebhookRaw([]byte(secret))
	if err := wh.Verify(sent[0].body, sent[0].header); err != nil {
		t.Errorf("the delivery of a sealed secret does not verify: %v", err)
	}
}

// TestRoutesNeedAnAdmin replays the direct calls of the review against the
// service's handler: no token 401, a reader or editor 403, on every route.
func TestRoutesNeedAnAdmin(t *testing.T) {
	s := newServer(t, openSQLite(t))
	sub := s.subscribe(t, "https://hooks.example.com/", secret, "book.created")
	body := `{"url":"https://hooks.example.com/x","events":["book.created"],"secret":"` + secret + `"}`
	for _, route := range []struct{ method, path, body string }{
		{"GET", "/subscriptions", ""},
		{"POST", "/subscriptions", body},
		{"GET", "/subscriptions/" + sub.ID, ""},
		{"GET", "/subscriptions/" + sub.ID + "/deliveries", ""},
		{"DELETE", "/subscriptions/" + sub.ID, ""},
	} {
		for _, who := range []struct {
			auth string
			want int
		}{
			{"", 401},
			{"Bearer not-a-token", 401},
			{authntest.Bearer(authntest.New(t).Token("x", "admin")), 401},
			{authntest.Bearer(s.iss.Token("r", "reader")), 403},
			{authntest.Bearer(s.iss.Token("e", "editor")), 403},
		} {
			rec := s.do(route.method, route.path, route.body, "Authorization", who.auth)
			if rec.Code != who.want {
				t.Errorf("%s %s with %q: got %d, want %d", route.method, route.path, who.auth, rec.Code, who.want)
			}
		}
	}
	var page struct{ Items []notify.Subscription }
	_ = json.Unmarshal(s.do(http.MethodGet, "/subscriptions", "").Body.Bytes(), &page)
	if len(page.Items) != 1 {
		t.Errorf("%d subscriptions after the refused calls, want 1", len(page.Items))
	}
}

func TestEventIDsThatCannotBeSigned(t *testing.T) {
	s := newServer(t, openSQLite(t))
	s.subscribe(t, "https://hooks.example.com/", secret, "book.created")
	for _, id := range []string{"a.b", "evt 1", "evt\n1"} {
		if err := s.svc.HandleEvent(context.Background(), event(t, id, "book.created")); err == nil {
			t.Errorf("event id %q: accepted, want an error", id)
		}
	}
}
