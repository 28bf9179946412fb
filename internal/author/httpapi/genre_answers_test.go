package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"folio/internal/author/authortest"
	"folio/internal/author/events"
	"folio/internal/platform/problem"
)

// TestGenreAnswerIsKeptWhileNothingChanged: the author service keeps the answer of
// a genre and serves it again after a 304 from the book service, but every change
// shows in the very next answer (a book of the genre, an author's name, a book
// count from an event), and with the book service gone the call is 503 as the
// contract says, kept answer or not.
func TestGenreAnswerIsKeptWhileNothingChanged(t *testing.T) {
	books := &authortest.BookService{}
	ts := httptest.NewServer(books)
	defer ts.Close()
	s := newServer(t, openSQLite(t), booksAt(ts.URL))
	a := s.create(`{"name":"Ursula"}`)
	first := books.Add(a.ID, "fantasy")

	get := func() string {
		t.Helper()
		rec := s.do("GET", "/authors/books?genre=fantasy", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	body := get()
	if !strings.Contains(body, first.ID) || books.NotModifieds() != 0 {
		t.Fatalf("first answer %s (304s: %d), want the book and no 304", body, books.NotModifieds())
	}
	if again := get(); again != body || books.NotModifieds() != 1 {
		t.Fatalf("second answer: 304s %d, same answer %v; want one 304 and the kept answer", books.NotModifieds(), again == body)
	}

	changes := []struct {
		name   string
		change func()
		shows  func(body string) bool
	}{
		{"a new book of the genre", func() { first = books.Add(a.ID, "fantasy") },
			func(body string) bool { return strings.Contains(body, first.ID) }},
		{"the author renamed", func() {
			if rec := s.do("PATCH", "/authors/"+a.ID, `{"name":"Ursula K."}`, "Content-Type", "application/merge-patch+json"); rec.Code != http.StatusOK {
				t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
			}
		}, func(body string) bool { return strings.Contains(body, `"name":"Ursula K."`) }},
		{"a book event applied", func() {
			s.deliver(authortest.BookEvent(events.EventBookCreated, first.ID, a.ID, 1))
		}, func(body string) bool { return strings.Contains(body, `"book_count":1`) }},
	}
	for _, c := range changes {
		c.change()
		if body := get(); !c.shows(body) {
			t.Fatalf("%s: the next answer does not show it: %s", c.name, body)
		}
	}

	ts.Close()
	wantProblem(t, s.do("GET", "/authors/books?genre=fantasy", ""), http.StatusServiceUnavailable, problem.TypeUpstreamUnavailable)
}
