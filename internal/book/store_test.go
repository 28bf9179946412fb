package book_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/platform/fault"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// newBook returns a valid book at version 1 with microsecond timestamps (the precision
// both engines keep).
func newBook(title, authorID, genre string) book.Book {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return book.Book{ID: rest.NewID(), Title: title, AuthorID: authorID, Genre: genre,
		Version: 1, CreatedAt: now, UpdatedAt: now}
}

func ptr[T any](v T) *T { return &v }

// sameBook reports the first difference between two books, or "".
func sameBook(got, want book.Book) string {
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
		return fmt.Sprintf("isbn: got %s, want %s", show(got.ISBN), show(want.ISBN))
	case (got.PublishedYear == nil) != (want.PublishedYear == nil) || got.PublishedYear != nil && *got.PublishedYear != *want.PublishedYear:
		return fmt.Sprintf("published_year: got %s, want %s", show(got.PublishedYear), show(want.PublishedYear))
	case got.Version != want.Version:
		return fmt.Sprintf("version: got %d, want %d", got.Version, want.Version)
	case !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC:
		return fmt.Sprintf("created_at: got %v, want %v (UTC)", got.CreatedAt, want.CreatedAt)
	case !got.UpdatedAt.Equal(want.UpdatedAt) || got.UpdatedAt.Location() != time.UTC:
		return fmt.Sprintf("updated_at: got %v, want %v (UTC)", got.UpdatedAt, want.UpdatedAt)
	}
	return ""
}

func show[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func ids(books []book.Book) []string {
	out := make([]string, len(books))
	for i, b := range books {
		out[i] = b.ID
	}
	return out
}

func TestSQLStore(t *testing.T) {
	sqldbtest.ForEach(t, book.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		s := book.NewSQLStore(db)
		authorA, authorB := rest.NewID(), rest.NewID()

		t.Run("create and get round trip", func(t *testing.T) {
			tests := []struct {
				name    string
				isbn    *string
				year    *int
				created time.Time
			}{
				{"every field", ptr("9780306406157"), ptr(1999), time.Now().UTC().Truncate(time.Microsecond)},
				{"no isbn nor year", nil, nil, time.Now().UTC().Truncate(time.Microsecond)},
				{"negative year", nil, ptr(-3000), time.Now().UTC().Truncate(time.Microsecond)},
				{"whole second", nil, nil, time.Date(2024, 2, 29, 23, 59, 59, 0, time.UTC)},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					want := newBook("Le Petit Prince — édition ", authorA, "fable")
					want.ISBN, want.PublishedYear = tt.isbn, tt.year
					want.CreatedAt, want.UpdatedAt = tt.created, tt.created.Add(1500*time.Microsecond)
					if err := s.Create(ctx, want); err != nil {
						t.Fatalf("create: %v", err)
					}
					got, err := s.Get(ctx, want.ID)
					if err != nil {
						t.Fatalf("get: %v", err)
					}
					if diff := sameBook(got, want); diff != "" {
						t.Error(diff)
					}
					if err := s.Delete(ctx, want.ID, 1); err != nil {
						t.Fatalf("clean up: %v", err)
					}
				})
			}
		})

		t.Run("get missing", func(t *testing.T) {
			_, err := s.Get(ctx, rest.NewID())
			if got := fault.KindOf(err); got != fault.NotFound {
				t.Errorf("got kind %v (%v), want NotFound", got, err)
			}
		})

		t.Run("duplicate isbn", func(t *testing.T) {
			a := newBook("A", authorA, "isbn-test")
			a.ISBN = ptr("9783161484100")
			if err := s.Create(ctx, a); err != nil {
				t.Fatalf("create first: %v", err)
			}
			b := newBook("B", authorA, "isbn-test")
			b.ISBN = ptr("9783161484100")
			err := s.Create(ctx, b)
			if got := fault.KindOf(err); got != fault.Conflict {
				t.Fatalf("create second: got kind %v (%v), want Conflict", got, err)
			}
			var fe *fault.Error
			if errors.As(err, &fe); len(fe.Fields) != 1 || fe.Fields[0].Field != "isbn" {
				t.Errorf("got fields %v, want one naming isbn", fe.Fields)
			}

			// Updating another book to the taken ISBN conflicts too.
			b.ISBN = nil
			if err := s.Create(ctx, b); err != nil {
				t.Fatalf("create second without isbn: %v", err)
			}
			b.ISBN, b.Version = ptr("9783161484100"), 2
			if got := fault.KindOf(s.Update(ctx, b)); got != fault.Conflict {
				t.Errorf("update to a taken isbn: got kind %v, want Conflict", got)
			}
			// Books without an ISBN never clash with each other.
			c := newBook("C", authorA, "isbn-test")
			if err := s.Create(ctx, c); err != nil {
				t.Errorf("second book without isbn: %v", err)
			}
		})

		t.Run("list", func(t *testing.T) {
			// The books of this subtest are the only ones in their genres.
			var all, fantasyA, fantasyB, poetryA []string
			for i := range 12 {
				author, genre := authorA, "list-fantasy"
				if i%2 == 1 {
					author = authorB
				}
				if i%3 == 2 {
					genre = "list-poetry"
				}
				b := newBook(fmt.Sprintf("Book %d", i), author, genre)
				if err := s.Create(ctx, b); err != nil {
					t.Fatalf("create: %v", err)
				}
				all = append(all, b.ID)
				switch {
				case genre == "list-fantasy" && author == authorA:
					fantasyA = append(fantasyA, b.ID)
				case genre == "list-fantasy":
					fantasyB = append(fantasyB, b.ID)
				case author == authorA:
					poetryA = append(poetryA, b.ID)
				}
			}
			tests := []struct {
				name   string
				filter book.Filter
				want   []string
			}{
				{"genre", book.Filter{Genre: "list-fantasy"}, merge(fantasyA, fantasyB)},
				{"genre and author", book.Filter{Genre: "list-fantasy", AuthorID: authorA}, fantasyA},
				{"genre and other author", book.Filter{Genre: "list-fantasy", AuthorID: authorB}, fantasyB},
				{"other genre and author", book.Filter{Genre: "list-poetry", AuthorID: authorA}, poetryA},
				{"unknown genre", book.Filter{Genre: "list-none"}, nil},
				{"unknown author", book.Filter{AuthorID: rest.NewID()}, nil},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := s.List(ctx, tt.filter, "", 100)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(ids(got), tt.want) {
						t.Errorf("got %v, want %v", ids(got), tt.want)
					}
				})
			}

			t.Run("author only", func(t *testing.T) {
				got, err := s.List(ctx, book.Filter{AuthorID: authorB}, "", 100)
				if err != nil {
					t.Fatal(err)
				}
				if !isSorted(ids(got)) {
					t.Errorf("got ids %v, want them in order", ids(got))
				}
				for _, b := range got {
					if b.AuthorID != authorB {
						t.Errorf("got a book of author %s, want only %s", b.AuthorID, authorB)
					}
				}
			})

			t.Run("paging", func(t *testing.T) {
				var seen []string
				after := ""
				for page := 0; ; page++ {
					if page > len(all) {
						t.Fatal("paging does not end")
					}
					got, err := s.List(ctx, book.Filter{Genre: "list-fantasy"}, after, 3)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) > 3 {
						t.Fatalf("got %d books, want at most 3", len(got))
					}
					if len(got) == 0 {
						break
					}
					seen = append(seen, ids(got)...)
					after = got[len(got)-1].ID
				}
				if want := merge(fantasyA, fantasyB); !slices.Equal(seen, want) {
					t.Errorf("got %v, want %v", seen, want)
				}
			})

			t.Run("ordered by id", func(t *testing.T) {
				got, err := s.List(ctx, book.Filter{}, "", 1000)
				if err != nil {
					t.Fatal(err)
				}
				if !isSorted(ids(got)) {
					t.Errorf("got ids %v, want them in order", ids(got))
				}
				if len(got) < len(all) {
					t.Errorf("got %d books, want at least %d", len(got), len(all))
				}
			})
		})

		t.Run("update", func(t *testing.T) {
			b := newBook("Draft", authorA, "update-test")
			b.ISBN, b.PublishedYear = ptr("9789992158104"), ptr(2001)
			if err := s.Create(ctx, b); err != nil {
				t.Fatalf("create: %v", err)
			}

			next := b
			next.Title, next.AuthorID, next.Genre = "Final", authorB, "update-done"
			next.ISBN, next.PublishedYear = nil, nil
			next.Version, next.UpdatedAt = 2, b.UpdatedAt.Add(time.Second)
			if err := s.Update(ctx, next); err != nil {
				t.Fatalf("update at the right version: %v", err)
			}
			got, err := s.Get(ctx, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := sameBook(got, next); diff != "" {
				t.Errorf("after update: %s", diff)
			}

			stale := next // written for version 1, which the book is no longer at
			stale.Title = "Lost update"
			if err := s.Update(ctx, stale); !errors.Is(err, book.ErrStale) {
				t.Errorf("update at a stale version: got %v, want ErrStale", err)
			}
			missing := newBook("Missing", authorA, "update-test")
			missing.Version = 2
			if got := fault.KindOf(s.Update(ctx, missing)); got != fault.NotFound {
				t.Errorf("update of a missing book: got kind %v, want NotFound", got)
			}
		})

		t.Run("delete", func(t *testing.T) {
			b := newBook("Doomed", authorA, "delete-test")
			if err := s.Create(ctx, b); err != nil {
				t.Fatalf("create: %v", err)
			}
			if err := s.Delete(ctx, b.ID, 2); !errors.Is(err, book.ErrStale) {
				t.Errorf("delete at a wrong version: got %v, want ErrStale", err)
			}
			if err := s.Delete(ctx, b.ID, 1); err != nil {
				t.Fatalf("delete at the right version: %v", err)
			}
			if got := fault.KindOf(s.Delete(ctx, b.ID, 1)); got != fault.NotFound {
				t.Errorf("delete again: got kind %v, want NotFound", got)
			}
			if _, err := s.Get(ctx, b.ID); fault.KindOf(err) != fault.NotFound {
				t.Errorf("get after delete: got %v, want NotFound", err)
			}
		})

		t.Run("known authors", func(t *testing.T) {
			id := rest.NewID()
			known, err := s.KnownAuthor(ctx, id)
			if err != nil || known {
				t.Fatalf("before: got %v, %v, want false, nil", known, err)
			}
			for i := range 2 { // remembering twice is harmless
				if err := s.RememberAuthor(ctx, id); err != nil {
					t.Fatalf("remember #%d: %v", i+1, err)
				}
			}
			known, err = s.KnownAuthor(ctx, id)
			if err != nil || !known {
				t.Errorf("after: got %v, %v, want true, nil", known, err)
			}
			if known, _ := s.KnownAuthor(ctx, rest.NewID()); known {
				t.Error("another author: got known, want unknown")
			}
		})

		t.Run("author directory", func(t *testing.T) {
			remote := &countingChecker{exists: map[string]bool{}}
			dir := book.NewAuthorDirectory(s, remote, slog.New(slog.NewTextHandler(io.Discard, nil)))
			known, absent := rest.NewID(), rest.NewID()
			remote.exists[known] = true

			for i := range 3 {
				ok, err := dir.Exists(ctx, known)
				if err != nil || !ok {
					t.Fatalf("known author, call %d: got %v, %v, want true, nil", i+1, ok, err)
				}
			}
			if got := remote.count(known); got != 1 {
				t.Errorf("remote asked %d times about an author it confirmed, want 1", got)
			}
			for range 2 {
				if ok, err := dir.Exists(ctx, absent); err != nil || ok {
					t.Fatalf("absent author: got %v, %v, want false, nil", ok, err)
				}
			}
			if got := remote.count(absent); got != 2 {
				t.Errorf("remote asked %d times about an absent author, want 2 (absence is not remembered)", got)
			}

			remote.fail = fault.New(fault.Unavailable, "author service down")
			if ok, err := dir.Exists(ctx, known); err != nil || !ok {
				t.Errorf("known author while the remote is down: got %v, %v, want true, nil", ok, err)
			}
			if _, err := dir.Exists(ctx, rest.NewID()); fault.KindOf(err) != fault.Unavailable {
				t.Errorf("new author while the remote is down: got %v, want Unavailable", err)
			}
		})
	})
}

// countingChecker is a fake author service that counts the questions it is asked.
type countingChecker struct {
	mu     sync.Mutex
	exists map[string]bool
	asked  map[string]int
	fail   error
}

func (c *countingChecker) Exists(_ context.Context, id string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked == nil {
		c.asked = map[string]int{}
	}
	c.asked[id]++
	if c.fail != nil {
		return false, c.fail
	}
	return c.exists[id], nil
}

func (c *countingChecker) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked[id]
}

// isSorted reports whether s is strictly increasing: in order, without repeats.
func isSorted(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

// merge returns the ids of a and b in id order.
func merge(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return out
}
