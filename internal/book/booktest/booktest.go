// Package booktest holds what the tests of the book service's packages share: a fake
// author service, books to store, and a comparison of books that says what differs.
package booktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"folio/internal/book"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
)

// Authors the tests' author services know (AuthorA, AuthorB), and one they do not.
const (
	AuthorA      = "01890a5d-ac96-774b-bcce-b302099a8057"
	AuthorB      = "01890a5d-ac96-774b-bcce-b302099a8058"
	AbsentAuthor = "01890a5d-ac96-774b-bcce-b302099a8050"
)

// Authors stands in for the author service: it knows a set of ids, counts the
// questions it is asked, and can be switched to answering Unavailable as a resilient
// client does when the peer is down.
type Authors struct {
	mu    sync.Mutex
	ids   map[string]bool
	asked map[string]int
	down  bool
}

var _ book.Authors = (*Authors)(nil)

// NewAuthors returns an author service that knows the ids.
func NewAuthors(ids ...string) *Authors {
	a := &Authors{ids: map[string]bool{}, asked: map[string]int{}}
	for _, id := range ids {
		a.ids[id] = true
	}
	return a
}

// Exists answers as the author service would.
func (a *Authors) Exists(_ context.Context, id string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked[id]++
	if a.down {
		// The address is one a problem must never show a client.
		return false, fault.Wrap(fault.Unavailable, errors.New("dial tcp 10.0.0.7:8082: connection refused"),
			"the author service cannot confirm the author right now")
	}
	return a.ids[id], nil
}

// Add makes the author id known.
func (a *Authors) Add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids[id] = true
}

// SetDown has the service answer Unavailable (down) or answer again.
func (a *Authors) SetDown(down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down = down
}

// Asked returns how often the service was asked about id.
func (a *Authors) Asked(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked[id]
}

// NewBook returns a valid book at version 1 with microsecond timestamps (the precision
// both SQL engines keep).
func NewBook(title, authorID, genre string) book.Book {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return book.Book{ID: id.New(), Title: title, AuthorID: authorID, Genre: genre,
		Version: 1, CreatedAt: now, UpdatedAt: now}
}

// Ptr returns a pointer to v.
func Ptr[T any](v T) *T { return &v }

// Show prints what p points to, or nil.
func Show[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// IDs returns the ids of books, in order.
func IDs(books []book.Book) []string {
	out := make([]string, len(books))
	for i, b := range books {
		out[i] = b.ID
	}
	return out
}

// SameBook reports the first difference between two books, or "".
func SameBook(got, want book.Book) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("id: got %q, want %q", got.ID, want.ID)
	case got.Title != want.Title:
		return fmt.Sprintf("title: got %q, want %q", got.Title, want.Title)
	case got.AuthorID != want.AuthorID:
		return fmt.Sprintf("author_id: got %q, want %q", got.AuthorID, want.AuthorID)
	case got.Genre != want.Genre:
		return fmt.Sprintf("genre: got %q, want %q", got.Genre, want.Genre)
	case (got.ISBN == nil) != (want.ISBN == nil) || got.ISBN != nil && *got.ISBN != *want.ISBN:
		return fmt.Sprintf("isbn: got %s, want %s", Show(got.ISBN), Show(want.ISBN))
	case (got.PublishedYear == nil) != (want.PublishedYear == nil) || got.PublishedYear != nil && *got.PublishedYear != *want.PublishedYear:
		return fmt.Sprintf("published_year: got %s, want %s", Show(got.PublishedYear), Show(want.PublishedYear))
	case got.Version != want.Version:
		return fmt.Sprintf("version: got %d, want %d", got.Version, want.Version)
	case !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC:
		return fmt.Sprintf("created_at: got %v, want %v (UTC)", got.CreatedAt, want.CreatedAt)
	case !got.UpdatedAt.Equal(want.UpdatedAt) || got.UpdatedAt.Location() != time.UTC:
		return fmt.Sprintf("updated_at: got %v, want %v (UTC)", got.UpdatedAt, want.UpdatedAt)
	}
	return ""
}
