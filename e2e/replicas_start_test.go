package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"folio/internal/platform/sqldb/sqldbtest"
)

// Three book instances start at once on one new PostgreSQL database, as an
// orchestrator starts the replicas of a deployment: they migrate it together, each
// becomes ready, and a book written through one is read through each of the others.
func TestReplicasStartAtOnceOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	bookDB := "FOLIO_DATABASE_URL=" + sqldbtest.PostgresDatabase(t)
	// The author service's calls to the book service play no part here.
	author := startService(t, "author", anyAddr, "FOLIO_BOOK_URL=http://127.0.0.1:1")
	authorID := createAuthor(t, &system{author: author}, "Ursula K. Le Guin")

	// What the starts share is made here, on the test's goroutine: the program,
	// and the broker environment and token issuer each start would otherwise make.
	program(t, "book")
	testEvents(t)
	testIssuer(t)
	const n = 3
	books, errs := make([]*service, n), make([]error, n)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-release
			// A start that exits before it is ready (a failed migration) returns
			// its error; one that hangs fails the test from here after polltest's
			// deadline, which ends this goroutine only, and the check below stops.
			b, err := tryStartService(t, "book", anyAddr, bookDB, "FOLIO_AUTHOR_URL="+author.URL())
			books[i], errs[i] = b, err
			if err != nil {
				errs[i] = fmt.Errorf("book %d: %w", i, err)
			}
		})
	}
	close(release)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	for i, b := range books {
		id := createBook(t, &system{book: b}, fmt.Sprintf("Replica %d", i), authorID, "fantasy")
		for j, other := range books {
			if j == i {
				continue
			}
			r := call(t, "GET", other.URL()+"/books/"+id, nil)
			expect(t, r, http.StatusOK)
			if got := r.json(t)["title"]; got != fmt.Sprintf("Replica %d", i) {
				t.Errorf("book %s written through instance %d, read through %d: title %v", id, i, j, got)
			}
		}
	}
}
