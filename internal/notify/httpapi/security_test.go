package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"folio/internal/notify"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/egress"
)

// TestSubscriptionCreateRefusesNonPublicURLs replays the SSRF subscriptions of the review:
// loopback, the wildcard address, the NATS port, cloud metadata, private networks,
// by address and by name, get 422 naming url unless private addresses are allowed.
func TestSubscriptionCreateRefusesNonPublicURLs(t *testing.T) {
	strict := newServer(t, openSQLite(t))
	lax := newServerWith(t, openSQLite(t), notifytest.Options{Egress: egress.Policy{AllowPrivate: true}})
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

func TestSubscriptionCreatePastTheCapAnswers409(t *testing.T) {
	s := newServerWith(t, openSQLite(t), notifytest.Options{Config: notify.Config{MaxSubscriptions: 2}})
	first := s.Subscribe(t, "https://hooks.example.com/1", secret, "book.created")
	s.Subscribe(t, "https://hooks.example.com/2", secret, "book.created")
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

// TestRoutesNeedAnAdmin replays the direct calls of the review against the
// service's handler: no token 401, a reader or editor 403, on every route.
func TestRoutesNeedAnAdmin(t *testing.T) {
	s := newServer(t, openSQLite(t))
	sub := s.Subscribe(t, "https://hooks.example.com/", secret, "book.created")
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
