package httpapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
)

// concurrent is how many requests the concurrency tests send at once.
const concurrent = 8

// parallel sends n requests at once and returns the answers, or the first error a
// request met: the goroutines report to the test's, which alone may fail the test.
func parallel(n int, req func(i int) (response, error)) ([]response, error) {
	out := make([]response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = req(i) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func TestBookConcurrentPatchesLoseNoChange(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		b := s.create(t, fields("concurrent"))
		resps, err := parallel(concurrent, func(i int) (response, error) {
			return s.try(http.MethodPatch, "/books/"+b.ID, fmt.Sprintf(`{"title":"T%d"}`, i))
		})
		if err != nil {
			t.Fatal(err)
		}
		versions := map[int]bool{}
		for _, r := range resps {
			if r.Status != http.StatusOK {
				t.Fatalf("got %d %s, want 200", r.Status, r.Body)
			}
			versions[r.book(t).Version] = true
		}
		if len(versions) != concurrent {
			t.Errorf("got versions %v, want %d distinct ones", versions, concurrent)
		}
		if got := s.get(t, b.ID).Version; got != concurrent+1 {
			t.Errorf("final version: got %d, want %d", got, concurrent+1)
		}
	})
}

func TestBookConcurrentCreatesOfOneISBNMakeOneBook(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		body := mustJSON(t, fields("concurrent-isbn", "isbn", testISBN(4)))
		resps, err := parallel(concurrent, func(int) (response, error) {
			return s.try(http.MethodPost, "/books", body)
		})
		if err != nil {
			t.Fatal(err)
		}
		created := 0
		for _, r := range resps {
			switch r.Status {
			case http.StatusCreated:
				created++
			case http.StatusConflict:
				r.problem(t, http.StatusConflict)
			default:
				t.Errorf("got %d %s, want 201 or 409", r.Status, r.Body)
			}
		}
		if created != 1 {
			t.Errorf("got %d books created, want 1", created)
		}
	})
}

func TestBookConcurrentCreatesWithOneKeyMakeOneBook(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		key := "concurrent-" + id.New()
		body := mustJSON(t, fields("concurrent-key"))
		resps, err := parallel(concurrent, func(int) (response, error) {
			return s.try(http.MethodPost, "/books", body, idempotency.Header, key)
		})
		if err != nil {
			t.Fatal(err)
		}
		created := map[string]bool{}
		for _, r := range resps {
			switch r.Status {
			case http.StatusCreated:
				created[r.book(t).ID] = true
			case http.StatusConflict:
				r.problem(t, http.StatusConflict)
			default:
				t.Errorf("got %d %s, want 201 or 409", r.Status, r.Body)
			}
		}
		if len(created) != 1 {
			t.Errorf("got ids %v in the answers, want exactly one", created)
		}
		if got := s.do(t, http.MethodGet, "/books?genre=concurrent-key", "").page(t); len(got.Items) != 1 {
			t.Errorf("got %d books, want 1", len(got.Items))
		}
	})
}
