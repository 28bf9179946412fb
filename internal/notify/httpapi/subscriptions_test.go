package httpapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/notify"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

func TestSubscriptionCreateAnswers201WithLocationAndNoSecret(t *testing.T) {
	s := newServer(t, openSQLite(t))
	rec := s.do(http.MethodPost, "/subscriptions",
		`{"url":"  https://hooks.example.com/folio?x=1 ","events":["book.created"," author.deleted","book.created"],"secret":"`+secret+`",
		  "id":"ignored","version":7,"created_at":"2000-01-01T00:00:00Z"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("got %d %s, want 201", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	subID, _ := got["id"].(string)
	if !id.Valid(subID) {
		t.Errorf("id %q is not a Folio id", subID)
	}
	if loc := rec.Header().Get("Location"); loc != "/subscriptions/"+subID {
		t.Errorf("Location %q, want /subscriptions/%s", loc, subID)
	}
	if etag := rec.Header().Get("ETag"); etag != `"1"` {
		t.Errorf("ETag %q, want \"1\"", etag)
	}
	if got["url"] != "https://hooks.example.com/folio?x=1" {
		t.Errorf("url %v, want it trimmed", got["url"])
	}
	if ev, _ := json.Marshal(got["events"]); string(ev) != `["book.created","author.deleted"]` {
		t.Errorf("events %s, want the types trimmed, in order, once each", ev)
	}
	if _, ok := got["secret"]; ok || strings.Contains(rec.Body.String(), secret) {
		t.Errorf("the secret was sent back: %s", rec.Body)
	}
	created, err := time.Parse(time.RFC3339Nano, got["created_at"].(string))
	if err != nil || time.Since(created) > time.Minute || created.Location() != time.UTC {
		t.Errorf("created_at %v: %v", got["created_at"], err)
	}
	if got["version"] != 1.0 {
		t.Errorf("version %v, want 1", got["version"])
	}

	// GET returns the same, never the secret.
	get := s.do(http.MethodGet, "/subscriptions/"+subID, "")
	if get.Code != http.StatusOK || get.Body.String() != rec.Body.String() {
		t.Errorf("get: %d %s, want 200 %s", get.Code, get.Body, rec.Body)
	}
}

func TestSubscriptionCreateRefusesBadBodies(t *testing.T) {
	s := newServer(t, openSQLite(t))
	valid := func(edits ...any) string {
		m := map[string]any{"url": "http://example.com/hook", "events": []string{"book.created"}, "secret": secret}
		for i := 0; i+1 < len(edits); i += 2 {
			if edits[i+1] == nil {
				delete(m, edits[i].(string))
			} else {
				m[edits[i].(string)] = edits[i+1]
			}
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int
		fields []string
	}{
		{"empty body", "", 400, nil},
		{"not JSON", "{", 400, nil},
		{"null", "null", 400, nil},
		{"array", "[]", 400, nil},
		{"unknown field", valid("target", "x"), 400, []string{"target"}},
		{"field in the wrong case", `{"URL":"http://example.com","events":["book.created"],"secret":"` + secret + `"}`, 400, []string{"URL"}},
		{"url not a string", valid("url", 5), 400, []string{"url"}},
		{"events not a list", valid("events", "book.created"), 400, []string{"events"}},
		{"event not a string", valid("events", []any{1}), 400, []string{"events"}},
		{"two values", valid() + valid(), 400, nil},
		{"too large", valid("secret", strings.Repeat("x", 1<<20)), 413, nil},
		{"everything missing", `{}`, 422, []string{"url", "events", "secret"}},
		{"url missing", valid("url", nil), 422, []string{"url"}},
		{"url blank", valid("url", "  "), 422, []string{"url"}},
		{"url relative", valid("url", "/hook"), 422, []string{"url"}},
		{"url without host", valid("url", "http://"), 422, []string{"url"}},
		{"url not http", valid("url", "ftp://example.com/hook"), 422, []string{"url"}},
		{"url with a fragment", valid("url", "http://example.com/hook#x"), 422, []string{"url"}},
		{"url unparsable", valid("url", "http://exa mple.com/%zz"), 422, []string{"url"}},
		{"url too long", valid("url", "http://example.com/"+strings.Repeat("a", 2000)), 422, []string{"url"}},
		{"url with NUL", valid("url", "http://example.com/\x00"), 422, []string{"url"}},
		{"events missing", valid("events", nil), 422, []string{"events"}},
		{"events null", `{"url":"http://example.com","events":null,"secret":"` + secret + `"}`, 422, []string{"events"}},
		{"events empty", valid("events", []string{}), 422, []string{"events"}},
		{"unknown event", valid("events", []string{"book.created", "book.read"}), 422, []string{"events"}},
		{"event by subject", valid("events", []string{"folio.book.created"}), 422, []string{"events"}},
		{"event wildcard", valid("events", []string{"book.*"}), 422, []string{"events"}},
		{"secret missing", valid("secret", nil), 422, []string{"secret"}},
		{"secret blank", valid("secret", "                    "), 422, []string{"secret"}},
		{"secret short", valid("secret", "fifteen-chars!!"), 422, []string{"secret"}},
		{"secret short once trimmed", valid("secret", "  fifteen-chars!!  "), 422, []string{"secret"}},
		{"secret too long", valid("secret", strings.Repeat("x", 1001)), 422, []string{"secret"}},
		{"secret with NUL", valid("secret", strings.Repeat("x", 16)+"\x00"), 422, []string{"secret"}},
		{"secret not a string", valid("secret", 1234567890123456), 400, []string{"secret"}},
		{"whsec secret not base64", valid("secret", "whsec_not!base64-at-all"), 422, []string{"secret"}},
		{"whsec secret short", valid("secret", "whsec_c2hvcnQta2V5"), 422, []string{"secret"}},
		{"url with user info", valid("url", "https://user:pw@example.com/hook"), 422, []string{"url"}},
		{"url to the loopback", valid("url", "http://127.0.0.1:8083/"), 422, []string{"url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.do(http.MethodPost, "/subscriptions", tc.body)
			if rec.Code != tc.status {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type %q, want %s", ct, problem.ContentType)
			}
			p := problemOf(t, rec.Body.Bytes())
			if p.Status != tc.status || p.Type == "" || p.Title == "" {
				t.Errorf("problem %+v", p)
			}
			var named []string
			for _, f := range p.Errors {
				if !slices.Contains(named, f.Field) {
					named = append(named, f.Field)
				}
			}
			if tc.status == 422 || tc.fields != nil {
				if !slices.Equal(named, tc.fields) {
					t.Errorf("errors name %v, want %v: %s", named, tc.fields, rec.Body)
				}
			}
			if strings.Contains(rec.Body.String(), "\"secret\":\"") {
				t.Errorf("the answer echoes a secret: %s", rec.Body)
			}
		})
	}
	if rec := s.do(http.MethodGet, "/subscriptions", ""); !strings.Contains(rec.Body.String(), `"items":[]`) {
		t.Errorf("a rejected request created something: %s", rec.Body)
	}
}

func TestSubscriptionCreateRepeatedWithItsKeyGetsTheFirstAnswer(t *testing.T) {
	s := newServer(t, openSQLite(t))
	body := `{"url":"http://example.com/hook","events":["book.created"],"secret":"` + secret + `"}`
	first := s.do(http.MethodPost, "/subscriptions", body, idempotency.Header, "k1")
	again := s.do(http.MethodPost, "/subscriptions", body, idempotency.Header, "k1")
	if first.Code != 201 || again.Code != 201 || first.Body.String() != again.Body.String() ||
		first.Header().Get("Location") != again.Header().Get("Location") {
		t.Errorf("repeat: got %d %s and %d %s, want the first answer twice", first.Code, first.Body, again.Code, again.Body)
	}
	other := s.do(http.MethodPost, "/subscriptions", strings.Replace(body, "hook", "other", 1), idempotency.Header, "k1")
	if other.Code != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body: got %d, want 422", other.Code)
	}
	var page rest.Page[notify.Subscription]
	_ = json.Unmarshal(s.do(http.MethodGet, "/subscriptions", "").Body.Bytes(), &page)
	if len(page.Items) != 1 {
		t.Errorf("%d subscriptions, want 1", len(page.Items))
	}
}

func TestSubscriptionListWalksEveryPageWithoutSecrets(t *testing.T) {
	s := newServer(t, openSQLite(t))
	var want []string
	for i := range 5 {
		events := []string{"book.created"}
		if i%2 == 0 {
			events = append(events, "author.updated")
		}
		want = append(want, s.subscribe(t, "http://example.com/hook", secret, events...).ID)
	}
	var got []string
	target := "/subscriptions?limit=2"
	for pages := 0; ; pages++ {
		rec := s.do(http.MethodGet, target, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: got %d %s", target, rec.Code, rec.Body)
		}
		var page rest.Page[notify.Subscription]
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		for _, sub := range page.Items {
			got = append(got, sub.ID)
			if len(sub.Events) == 0 || sub.URL == "" || sub.Version != 1 {
				t.Errorf("listed %+v", sub)
			}
		}
		if strings.Contains(rec.Body.String(), secret) {
			t.Errorf("the list shows a secret")
		}
		if page.NextCursor == nil {
			break
		}
		if pages > 5 {
			t.Fatal("too many pages")
		}
		target = "/subscriptions?limit=2&cursor=" + *page.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Errorf("walked %v, want %v", got, want)
	}
}

func TestListsRefuseBadPagingWith400(t *testing.T) {
	s := newServer(t, openSQLite(t))
	sub := s.subscribe(t, "http://example.com/hook", secret, "book.created")
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "cursor=nope", "cursor="} {
		rec := s.do(http.MethodGet, "/subscriptions?"+q, "")
		if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("?%s: got %d %s, want 400 problem", q, rec.Code, rec.Body)
		}
		rec = s.do(http.MethodGet, "/subscriptions/"+sub.ID+"/deliveries?"+q, "")
		if rec.Code != http.StatusBadRequest {
			t.Errorf("deliveries ?%s: got %d, want 400", q, rec.Code)
		}
	}
}

func TestSubscriptionGetAndDeleteAnswerAsTheContractSays(t *testing.T) {
	s := newServer(t, openSQLite(t))
	sub := s.subscribe(t, "http://example.com/hook", secret, "book.deleted")
	path := "/subscriptions/" + sub.ID
	for _, tc := range []struct {
		method, path string
		header       []string
		want         int
	}{
		{"GET", path, nil, 200},
		{"GET", path, []string{"If-None-Match", `"1"`}, 304},
		{"GET", path, []string{"If-None-Match", `"2"`}, 200},
		{"GET", "/subscriptions/nope", nil, 404},
		{"GET", "/subscriptions/" + strings.ToUpper(sub.ID), nil, 404},
		{"GET", "/subscriptions/" + id.New(), nil, 404},
		{"GET", "/subscriptions/nope/deliveries", nil, 404},
		{"GET", "/subscriptions/" + id.New() + "/deliveries", nil, 404},
		{"GET", path + "/deliveries", nil, 200},
		{"DELETE", "/subscriptions/nope", nil, 404},
		{"DELETE", "/subscriptions/" + id.New(), nil, 404},
		{"DELETE", path, []string{"If-Match", `"2"`}, 412},
		{"DELETE", path, []string{"If-Match", `"1"`}, 204},
		{"GET", path, nil, 404},
		{"GET", path + "/deliveries", nil, 404},
		{"DELETE", path, nil, 404},
	} {
		rec := s.do(tc.method, tc.path, "", tc.header...)
		if rec.Code != tc.want {
			t.Errorf("%s %s %v: got %d %s, want %d", tc.method, tc.path, tc.header, rec.Code, rec.Body, tc.want)
			continue
		}
		if tc.want >= 400 && rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("%s %s: error is not problem+json", tc.method, tc.path)
		}
		if tc.want == 200 && tc.method == "GET" && !strings.HasSuffix(tc.path, "/deliveries") && rec.Header().Get("ETag") != `"1"` {
			t.Errorf("%s %s: ETag %q", tc.method, tc.path, rec.Header().Get("ETag"))
		}
	}
}
