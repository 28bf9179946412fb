package e2e

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"folio/internal/platform/polltest"
)

// TestBookAndAuthorLearnOfEachOtherFromEvents: each service keeps what it knows of
// the other from the other's events, through the broker, and acts on it: the author
// service counts an author's books and refuses to delete an author who has some; the
// book service knows the live authors and the deleted ones, so that while the
// author service is down it still takes a book by a known author and refuses one by
// a deleted author, where an author it never heard of gets 503.
func TestBookAndAuthorLearnOfEachOtherFromEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	if os.Getenv("FOLIO_TEST_NATS_URL") == "" {
		t.Skip("needs FOLIO_TEST_NATS_URL: the services learn of each other through the broker")
	}
	author, book := startPair(t, testEvents(t), testEvents(t))
	sys := &system{book: book, author: author}
	editor := editorAuth(t)

	gone := createAuthor(t, sys, "Gone Author")
	live := createAuthor(t, sys, "Live Author")
	bookID := createBook(t, sys, "The Only Book", gone, "relay")
	bookCount := func(id string, want int) func() error {
		return func() error {
			r := call(t, "GET", author.URL()+"/authors/"+id, nil)
			if got, _ := r.json(t)["book_count"].(float64); int(got) != want {
				return fmt.Errorf("book_count %v, want %d", r.json(t)["book_count"], want)
			}
			return nil
		}
	}
	polltest.Until(t, "the author service counts the book of its author", bookCount(gone, 1))
	r := call(t, "DELETE", author.URL()+"/authors/"+gone, nil, "Authorization", editor)
	expect(t, r, http.StatusConflict)
	if typ := problemType(t, r); typ != "/problems/conflict" {
		t.Errorf("deleting an author with a book: type %q, want /problems/conflict", typ)
	}

	expect(t, call(t, "DELETE", book.URL()+"/books/"+bookID, nil, "Authorization", editor), http.StatusNoContent)
	polltest.Until(t, "the author service counts the deleted book out", bookCount(gone, 0))
	expect(t, call(t, "DELETE", author.URL()+"/authors/"+gone, nil, "Authorization", editor), http.StatusNoContent)

	// From here on the book service can only answer from what the events told it:
	// once the author service has handed them all to the broker, it is killed.
	polltest.Until(t, "the author service's outbox is drained", func() error {
		if n, err := outboxPending(author); err != nil || n != 0 {
			return fmt.Errorf("%d pending (%v)", n, err)
		}
		return nil
	})
	author.kill()
	postBook := func(authorID string, want int) func() error {
		return func() error {
			r := call(t, "POST", book.URL()+"/books", map[string]any{"title": "After", "author_id": authorID, "genre": "relay"},
				"Authorization", editor)
			if r.status != want {
				return fmt.Errorf("status %d, want %d: %s", r.status, want, r.body)
			}
			return nil
		}
	}
	polltest.Until(t, "the book service takes a book by a live author it learnt of, with the author service down",
		postBook(live, http.StatusCreated))
	polltest.Until(t, "the book service refuses a book by the deleted author, with the author service down",
		postBook(gone, http.StatusUnprocessableEntity))
	if err := postBook("0190a8a2-7b3c-7def-8123-456789abcdef", http.StatusServiceUnavailable)(); err != nil {
		t.Errorf("an author the book service never heard of, with the author service down: %v", err)
	}
}
