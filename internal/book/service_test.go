package book_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/platform/fault"
	"folio/internal/platform/paging"
)

// memStore keeps books in memory; before its next Update it may let another writer
// move the book on, as a concurrent request would.
type memStore struct {
	books map[string]book.Book
	// interfere, if set, changes the stored book just before the next Update.
	interfere func(b *book.Book)
	genres    map[string]int64 // genre versions
}

func (m *memStore) Create(_ context.Context, b book.Book) error {
	m.books[b.ID] = b
	m.raise(b.Genre)
	return nil
}

func (m *memStore) Get(_ context.Context, id string) (book.Book, error) {
	b, ok := m.books[id]
	if !ok {
		return book.Book{}, book.ErrNotFound
	}
	return b, nil
}

func (m *memStore) List(_ context.Context, f book.Filter, page paging.Request) ([]book.Book, error) {
	var out []book.Book
	for _, b := range m.books {
		if b.ID > page.After && (f.Genre == "" || b.Genre == f.Genre) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b book.Book) int { return strings.Compare(a.ID, b.ID) })
	return out[:min(len(out), page.Fetch())], nil
}

func (m *memStore) Update(_ context.Context, b book.Book) error {
	if m.interfere != nil {
		cur := m.books[b.ID]
		m.interfere(&cur)
		cur.Version++
		m.books[b.ID], m.interfere = cur, nil
	}
	if m.books[b.ID].Version != b.Version-1 {
		return book.ErrStale
	}
	m.raise(m.books[b.ID].Genre, b.Genre)
	m.books[b.ID] = b
	return nil
}

func (m *memStore) Delete(_ context.Context, id string, version int) error {
	if m.books[id].Version != version {
		return book.ErrStale
	}
	m.raise(m.books[id].Genre)
	delete(m.books, id)
	return nil
}

func (m *memStore) GenreVersion(_ context.Context, genre string) (int64, error) {
	return m.genres[genre], nil
}

// raise raises the version of each genre.
func (m *memStore) raise(genres ...string) {
	if m.genres == nil {
		m.genres = map[string]int64{}
	}
	for _, g := range genres {
		m.genres[g]++
	}
}

func newService(t *testing.T) (*book.Service, *memStore) {
	t.Helper()
	store := &memStore{books: map[string]book.Book{}}
	return book.NewService(store, booktest.NewAuthors(authorA)), store
}

func anyVersion(int) error { return nil }

// TestServiceUpdateAppliesNextToTheBookAsItIsNow: when another write moves the book
// on between the read and the write, the update is made again from the new value, so
// that neither change is lost.
func TestServiceUpdateAppliesNextToTheBookAsItIsNow(t *testing.T) {
	svc, store := newService(t)
	ctx := context.Background()
	b, err := svc.Create(ctx, input(nil))
	if err != nil {
		t.Fatal(err)
	}
	store.interfere = func(cur *book.Book) { cur.Genre = "changed-meanwhile" }
	var seen []string
	got, err := svc.Update(ctx, b.ID, anyVersion, func(cur book.Book) (book.Input, error) {
		seen = append(seen, cur.Genre)
		in := cur.Input()
		in.Title = ptr("Patched")
		return in, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"science-fiction", "changed-meanwhile"}; !slices.Equal(seen, want) {
		t.Errorf("next saw genres %v, want %v", seen, want)
	}
	if got.Title != "Patched" || got.Genre != "changed-meanwhile" || got.Version != 3 {
		t.Errorf("got %+v, want the title patched over the concurrent change, at version 3", got)
	}
}

func TestServiceUpdateRefusesWhatTheRulesRefuse(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	b, err := svc.Create(ctx, input(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Update(ctx, b.ID, anyVersion, func(cur book.Book) (book.Input, error) {
		in := cur.Input()
		in.Genre = ptr("Not A Slug")
		return in, nil
	})
	if got := fieldsOf(t, err); !slices.Equal(got, []string{"genre"}) {
		t.Errorf("got error fields %v (%v), want [genre]", got, err)
	}
	if _, err := svc.Update(ctx, "not-an-id", anyVersion, nil); fault.KindOf(err) != fault.NotFound {
		t.Errorf("update of an id that is none: got %v, want NotFound", err)
	}
}

// TestServiceListReturnsAPage: the service reads one book more than the page holds,
// and tells from it where the next page starts.
func TestServiceListReturnsAPage(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	var ids []string
	for range 5 {
		b, err := svc.Create(ctx, input(nil))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
	slices.Sort(ids)
	first, err := svc.List(ctx, book.Filter{}, paging.Request{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(booktest.IDs(first.Items), ids[:3]) || first.Next != ids[2] {
		t.Errorf("first page: got %v next %q, want %v next %q", booktest.IDs(first.Items), first.Next, ids[:3], ids[2])
	}
	last, err := svc.List(ctx, book.Filter{}, paging.Request{Limit: 3, After: first.Next})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(booktest.IDs(last.Items), ids[3:]) || last.Next != "" {
		t.Errorf("last page: got %v next %q, want %v and no next", booktest.IDs(last.Items), last.Next, ids[3:])
	}
	if _, err := svc.List(ctx, book.Filter{Genre: "Not A Slug"}, paging.Request{Limit: 3}); fault.KindOf(err) != fault.Malformed {
		t.Errorf("list with a bad filter: got %v, want Malformed", err)
	}
}
