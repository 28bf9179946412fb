package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var (
	newBook  = booktest.NewBook
	sameBook = booktest.SameBook
	ids      = booktest.IDs
)

func ptr[T any](v T) *T { return &v }

// forEachStore runs suite on a new store over each SQL engine.
func forEachStore(t *testing.T, suite func(t *testing.T, s *sqlstore.Store)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		suite(t, sqlstore.New(outbox.NewWriter(db, nil)))
	})
}

func TestStoreCreateAndGetRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
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
				want := newBook("Le Petit Prince — édition ", id.New(), "fable")
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
}

func TestStoreGetMissingIsNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		_, err := s.Get(context.Background(), id.New())
		if got := fault.KindOf(err); got != fault.NotFound {
			t.Errorf("got kind %v (%v), want NotFound", got, err)
		}
	})
}

func TestStoreDuplicateISBNConflicts(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
		authorA := id.New()
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
}

// catalogue is twelve books over two genres and two authors, with the ids of each
// part, in id order.
type catalogue struct {
	authorA, authorB                string
	all, fantasyA, fantasyB, poetry []string
}

func storeCatalogue(t *testing.T, s *sqlstore.Store) catalogue {
	t.Helper()
	c := catalogue{authorA: id.New(), authorB: id.New()}
	for i := range 12 {
		author, genre := c.authorA, "list-fantasy"
		if i%2 == 1 {
			author = c.authorB
		}
		if i%3 == 2 {
			genre = "list-poetry"
		}
		b := newBook(fmt.Sprintf("Book %d", i), author, genre)
		if err := s.Create(context.Background(), b); err != nil {
			t.Fatalf("create: %v", err)
		}
		c.all = append(c.all, b.ID)
		switch {
		case genre == "list-fantasy" && author == c.authorA:
			c.fantasyA = append(c.fantasyA, b.ID)
		case genre == "list-fantasy":
			c.fantasyB = append(c.fantasyB, b.ID)
		case author == c.authorA:
			c.poetry = append(c.poetry, b.ID)
		}
	}
	return c
}

// list reads up to limit books matching f after the id given.
func list(t *testing.T, s *sqlstore.Store, f book.Filter, after string, limit int) []book.Book {
	t.Helper()
	got, err := s.List(context.Background(), f, paging.Request{After: after, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestStoreListFilters(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		c := storeCatalogue(t, s)
		tests := []struct {
			name   string
			filter book.Filter
			want   []string
		}{
			{"genre", book.Filter{Genre: "list-fantasy"}, merge(c.fantasyA, c.fantasyB)},
			{"genre and author", book.Filter{Genre: "list-fantasy", AuthorID: c.authorA}, c.fantasyA},
			{"genre and other author", book.Filter{Genre: "list-fantasy", AuthorID: c.authorB}, c.fantasyB},
			{"other genre and author", book.Filter{Genre: "list-poetry", AuthorID: c.authorA}, c.poetry},
			{"unknown genre", book.Filter{Genre: "list-none"}, nil},
			{"unknown author", book.Filter{AuthorID: id.New()}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := list(t, s, tt.filter, "", 100); !slices.Equal(ids(got), tt.want) {
					t.Errorf("got %v, want %v", ids(got), tt.want)
				}
			})
		}

		t.Run("author only", func(t *testing.T) {
			got := list(t, s, book.Filter{AuthorID: c.authorB}, "", 100)
			if !isSorted(ids(got)) {
				t.Errorf("got ids %v, want them in order", ids(got))
			}
			for _, b := range got {
				if b.AuthorID != c.authorB {
					t.Errorf("got a book of author %s, want only %s", b.AuthorID, c.authorB)
				}
			}
		})
	})
}

func TestStoreListPagesInIDOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		c := storeCatalogue(t, s)
		t.Run("paging", func(t *testing.T) {
			var seen []string
			after := ""
			for page := 0; ; page++ {
				if page > len(c.all) {
					t.Fatal("paging does not end")
				}
				// A page of 2 reads 3 rows: the third only tells that another follows.
				got := list(t, s, book.Filter{Genre: "list-fantasy"}, after, 2)
				if len(got) > 3 || page == 0 && len(got) != 3 {
					t.Fatalf("page %d: got %d books, want 3 (limit + 1) at most, and 3 on the first of 8", page, len(got))
				}
				if len(got) == 0 {
					break
				}
				seen = append(seen, ids(got)...)
				after = got[len(got)-1].ID
			}
			if want := merge(c.fantasyA, c.fantasyB); !slices.Equal(seen, want) {
				t.Errorf("got %v, want %v", seen, want)
			}
		})

		t.Run("ordered by id", func(t *testing.T) {
			got := list(t, s, book.Filter{}, "", 999)
			if !isSorted(ids(got)) {
				t.Errorf("got ids %v, want them in order", ids(got))
			}
			if len(got) < len(c.all) {
				t.Errorf("got %d books, want at least %d", len(got), len(c.all))
			}
		})
	})
}

func TestStoreUpdateAtTheReadVersion(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
		b := newBook("Draft", id.New(), "update-test")
		b.ISBN, b.PublishedYear = ptr("9789992158104"), ptr(2001)
		if err := s.Create(ctx, b); err != nil {
			t.Fatalf("create: %v", err)
		}

		next := b
		next.Title, next.AuthorID, next.Genre = "Final", id.New(), "update-done"
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
		missing := newBook("Missing", b.AuthorID, "update-test")
		missing.Version = 2
		if got := fault.KindOf(s.Update(ctx, missing)); got != fault.NotFound {
			t.Errorf("update of a missing book: got kind %v, want NotFound", got)
		}
	})
}

func TestStoreDeleteAtTheReadVersion(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
		b := newBook("Doomed", id.New(), "delete-test")
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
}

func TestStoreRemembersAuthors(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
		author := id.New()
		known, err := s.KnownAuthor(ctx, author)
		if err != nil || known {
			t.Fatalf("before: got %v, %v, want false, nil", known, err)
		}
		for i := range 2 { // remembering twice is harmless
			if err := s.RememberAuthor(ctx, author); err != nil {
				t.Fatalf("remember #%d: %v", i+1, err)
			}
		}
		known, err = s.KnownAuthor(ctx, author)
		if err != nil || !known {
			t.Errorf("after: got %v, %v, want true, nil", known, err)
		}
		if known, _ := s.KnownAuthor(ctx, id.New()); known {
			t.Error("another author: got known, want unknown")
		}
	})
}

// TestAuthorDirectoryAsksOnlyAboutUnconfirmedAuthors checks the directory over the
// store: an author the author service confirmed is not asked about again, even while
// that service is down; an absent one is asked about each time.
func TestAuthorDirectoryAsksOnlyAboutUnconfirmedAuthors(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *sqlstore.Store) {
		ctx := context.Background()
		known, absent := id.New(), id.New()
		remote := booktest.NewAuthors(known)
		dir := book.NewAuthorDirectory(s, remote, quiet)

		for i := range 3 {
			ok, err := dir.Exists(ctx, known)
			if err != nil || !ok {
				t.Fatalf("known author, call %d: got %v, %v, want true, nil", i+1, ok, err)
			}
		}
		if got := remote.Asked(known); got != 1 {
			t.Errorf("remote asked %d times about an author it confirmed, want 1", got)
		}
		for range 2 {
			if ok, err := dir.Exists(ctx, absent); err != nil || ok {
				t.Fatalf("absent author: got %v, %v, want false, nil", ok, err)
			}
		}
		if got := remote.Asked(absent); got != 2 {
			t.Errorf("remote asked %d times about an absent author, want 2 (absence is not remembered)", got)
		}

		remote.SetDown(true)
		if ok, err := dir.Exists(ctx, known); err != nil || !ok {
			t.Errorf("known author while the remote is down: got %v, %v, want true, nil", ok, err)
		}
		if _, err := dir.Exists(ctx, id.New()); fault.KindOf(err) != fault.Unavailable {
			t.Errorf("new author while the remote is down: got %v, want Unavailable", err)
		}
	})
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
