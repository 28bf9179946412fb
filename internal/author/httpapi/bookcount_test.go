package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/author/events"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/problem"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestDeleteAuthorWithBooksAnswers409 runs, through the API on every engine, the
// refusal to delete an author who still has books, and the delete once they are gone.
func TestDeleteAuthorWithBooksAnswers409(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newServer(t, db, booksAt(closedURL(t)))
		a := s.create(`{"name":"Prolific"}`)
		path := "/authors/" + a.ID
		b1, b2 := id.New(), id.New()
		s.deliver(
			authortest.BookEvent(events.EventBookCreated, b1, a.ID, 1),
			authortest.BookEvent(events.EventBookCreated, b2, a.ID, 1),
		)
		if got := decode[author.Author](t, s.do("GET", path, "")); got.BookCount != 2 {
			t.Fatalf("got book_count %d, want 2", got.BookCount)
		}
		wantProblem(t, s.do("DELETE", path, ""), http.StatusConflict, problem.TypeConflict)
		wantProblem(t, s.do("DELETE", path, "", "If-Match", `"1"`), http.StatusConflict, problem.TypeConflict)

		// One book moves to another author, the other is deleted.
		s.deliver(
			authortest.BookEvent(events.EventBookUpdated, b1, id.New(), 2),
			authortest.BookEvent(events.EventBookDeleted, b2, "", 0),
		)
		if got := decode[author.Author](t, s.do("GET", path, "")); got.BookCount != 0 || got.Version != 1 {
			t.Fatalf("got book_count %d version %d, want 0 and 1", got.BookCount, got.Version)
		}
		if rec := s.do("DELETE", path, ""); rec.Code != http.StatusNoContent {
			t.Fatalf("got %d %s, want 204", rec.Code, rec.Body)
		}
		if rec := s.do("GET", path, ""); rec.Code != http.StatusNotFound {
			t.Errorf("after delete: got %d, want 404", rec.Code)
		}
	})
}

// TestEveryAnswerCarriesBookCount checks that every representation of an author
// carries book_count, 0 included.
func TestEveryAnswerCarriesBookCount(t *testing.T) {
	s := newOfflineServer(t)
	created := s.do("POST", "/authors", `{"name":"Counted"}`)
	a := decode[author.Author](t, created)
	path := "/authors/" + a.ID
	answers := map[string][]byte{
		"POST":  created.Body.Bytes(),
		"GET":   s.do("GET", path, "").Body.Bytes(),
		"PUT":   s.do("PUT", path, `{"name":"Counted","book_count":12}`).Body.Bytes(),
		"PATCH": s.do("PATCH", path, `{"bio":"b","book_count":12}`).Body.Bytes(),
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(s.do("GET", "/authors", "").Body.Bytes(), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v %d items", err, len(list.Items))
	}
	answers["list"] = list.Items[0]
	for name, body := range answers {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %s: %v", name, body, err)
		}
		if n, ok := m["book_count"]; !ok || n != float64(0) {
			t.Errorf("%s: got book_count %v (present %v), want 0: %s", name, n, ok, body)
		}
	}
}
