package author_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// memStore keeps authors in memory, with the Store's version rules. stale makes the
// next that many Updates fail with ErrStale, as if another writer had won.
type memStore struct {
	mu         sync.Mutex
	authors    map[string]author.Author
	stale      int
	generation int64 // raised by every write that succeeds
}

func (m *memStore) Generation(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.generation, nil
}

func newMemStore() *memStore { return &memStore{authors: map[string]author.Author{}} }

func (m *memStore) Create(_ context.Context, a author.Author) (author.Author, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.authors[a.ID] = a
	m.generation++
	return a, nil
}

func (m *memStore) Get(_ context.Context, authorID string) (author.Author, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.authors[authorID]
	if !ok {
		return author.Author{}, author.ErrNotFound
	}
	return a, nil
}

func (m *memStore) GetMany(_ context.Context, ids []string) (map[string]author.Author, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]author.Author{}
	for _, x := range ids {
		if a, ok := m.authors[x]; ok {
			out[x] = a
		}
	}
	return out, nil
}

func (m *memStore) List(_ context.Context, page paging.Request) ([]author.Author, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []author.Author
	for _, k := range slices.Sorted(maps.Keys(m.authors)) {
		if k > page.After && len(out) < page.Fetch() {
			out = append(out, m.authors[k])
		}
	}
	return out, nil
}

func (m *memStore) Update(_ context.Context, a author.Author) (author.Author, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.authors[a.ID]
	switch {
	case !ok:
		return author.Author{}, author.ErrNotFound
	case m.stale > 0:
		m.stale--
		cur.Version++
		m.authors[a.ID] = cur
		return author.Author{}, author.ErrStale
	case cur.Version != a.Version-1:
		return author.Author{}, author.ErrStale
	}
	m.authors[a.ID] = a
	m.generation++
	return a, nil
}

func (m *memStore) Delete(_ context.Context, authorID string, version int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.authors[authorID]
	switch {
	case !ok:
		return author.ErrNotFound
	case cur.Version != version:
		return author.ErrStale
	}
	delete(m.authors, authorID)
	m.generation++
	return nil
}

// books answers ListBooks with pages in turn, or with err.
type books struct {
	pages []author.BookListing
	err   error
	asked []author.BookSearch
	// deadline is how long the context of the last call had left.
	deadline time.Duration
}

func (b *books) ListBooks(ctx context.Context, s author.BookSearch) (author.BookListing, error) {
	b.asked = append(b.asked, s)
	if d, ok := ctx.Deadline(); ok {
		b.deadline = time.Until(d)
	}
	if b.err != nil {
		return author.BookListing{}, b.err
	}
	if len(b.asked) > len(b.pages) {
		return author.BookListing{}, errors.New("asked for more pages than there are")
	}
	return b.pages[len(b.asked)-1], nil
}

func ptr[T any](v T) *T { return &v }

func TestCreateChecksEveryRule(t *testing.T) {
	svc := author.NewService(newMemStore(), &books{}, 0)
	for _, tc := range []struct {
		name   string
		in     author.Input
		fields []string // the fields named by the Invalid error; nil when created
	}{
		{"name only", author.Input{Name: ptr("Ada")}, nil},
		{"no name", author.Input{}, []string{"name"}},
		{"blank name", author.Input{Name: ptr(" \t ")}, []string{"name"}},
		{"invisible name", author.Input{Name: ptr("\u200b\u202e")}, []string{"name"}},
		{"name too long", author.Input{Name: ptr(strings.Repeat("é", author.MaxName+1))}, []string{"name"}},
		{"NUL in the bio", author.Input{Name: ptr("A"), Bio: ptr("a\x00")}, []string{"bio"}},
		{"born in the future", author.Input{Name: ptr("A"), BirthYear: ptr(time.Now().Year() + 1)}, []string{"birth_year"}},
		{"every field broken", author.Input{Name: ptr(""), Bio: ptr(strings.Repeat("b", author.MaxBio+1)), BirthYear: ptr(author.MinYear - 1)},
			[]string{"name", "bio", "birth_year"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := svc.Create(context.Background(), tc.in)
			if tc.fields == nil {
				if err != nil || !id.Valid(a.ID) || a.Version != 1 || !a.CreatedAt.Equal(a.UpdatedAt) {
					t.Errorf("got %+v, %v, want a new author at version 1", a, err)
				}
				return
			}
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid {
				t.Fatalf("got %v, want Invalid", err)
			}
			var got []string
			for _, f := range fe.Fields {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, tc.fields) {
				t.Errorf("got fields %v, want %v", got, tc.fields)
			}
		})
	}
}

func TestCreateTrimsAndDropsABlankBio(t *testing.T) {
	svc := author.NewService(newMemStore(), &books{}, 0)
	a, err := svc.Create(context.Background(), author.Input{Name: ptr("  Ada \n"), Bio: ptr("   ")})
	if err != nil || a.Name != "Ada" || a.Bio != nil {
		t.Errorf("got %+v, %v, want name Ada and no bio", a, err)
	}
}

// TestUpdateRetriesWhenTheAuthorChanged: when another writer wins between the read
// and the write, the update reads again and applies next to the new current author.
func TestUpdateRetriesWhenTheAuthorChanged(t *testing.T) {
	store := newMemStore()
	svc := author.NewService(store, &books{}, 0)
	ctx := context.Background()
	a, err := svc.Create(ctx, author.Input{Name: ptr("A")})
	if err != nil {
		t.Fatal(err)
	}
	store.stale = 2
	var seen []int
	got, err := svc.Update(ctx, a.ID, func(int) error { return nil }, func(cur author.Author) (author.Input, error) {
		seen = append(seen, cur.Version)
		return author.Input{Name: ptr("B")}, nil
	})
	if err != nil || got.Name != "B" || got.Version != 4 {
		t.Errorf("got %+v, %v, want B at version 4", got, err)
	}
	if !slices.Equal(seen, []int{1, 2, 3}) {
		t.Errorf("next saw versions %v, want 1, 2, 3", seen)
	}
}

func TestUpdateStopsAtTheFirstRefusal(t *testing.T) {
	svc := author.NewService(newMemStore(), &books{}, 0)
	ctx := context.Background()
	a, err := svc.Create(ctx, author.Input{Name: ptr("A")})
	if err != nil {
		t.Fatal(err)
	}
	keep := func(author.Author) (author.Input, error) { return author.Input{Name: ptr("B")}, nil }
	precondition := fault.New(fault.PreconditionFailed, "no")
	if _, err := svc.Update(ctx, a.ID, func(int) error { return precondition }, keep); !errors.Is(err, precondition) {
		t.Errorf("a failed check: got %v, want it", err)
	}
	bad := errors.New("not a document")
	if _, err := svc.Update(ctx, a.ID, func(int) error { return nil }, func(author.Author) (author.Input, error) { return author.Input{}, bad }); !errors.Is(err, bad) {
		t.Errorf("a failing next: got %v, want its error", err)
	}
	if _, err := svc.Update(ctx, "nope", func(int) error { return nil }, keep); fault.KindOf(err) != fault.NotFound {
		t.Errorf("an id that is no id: got %v, want NotFound", err)
	}
	if got, _ := svc.Get(ctx, a.ID); got.Version != 1 {
		t.Errorf("refused updates moved the version to %d", got.Version)
	}
}

func TestListReturnsAPageAndWhereTheNextStarts(t *testing.T) {
	svc := author.NewService(newMemStore(), &books{}, 0)
	ctx := context.Background()
	for range 3 {
		if _, err := svc.Create(ctx, author.Input{Name: ptr("A")}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := svc.List(ctx, paging.Request{Limit: 2})
	if err != nil || len(first.Items) != 2 || first.Next != first.Items[1].ID {
		t.Fatalf("first page: got %+v, %v, want two authors and the next after the second", first, err)
	}
	last, err := svc.List(ctx, paging.Request{Limit: 2, After: first.Next})
	if err != nil || len(last.Items) != 1 || last.Next != "" {
		t.Errorf("last page: got %+v, %v, want one author and no next", last, err)
	}
}

// TestGenreBooksGroupsByAuthor: books by author, authors by name then id, each one's
// books by id, the books of unknown authors left out.
func TestGenreBooksGroupsByAuthor(t *testing.T) {
	store := newMemStore()
	ctx := context.Background()
	now := time.Now().UTC()
	annA := author.Author{ID: id.New(), Name: "Ann", Version: 1, CreatedAt: now, UpdatedAt: now}
	annB := author.Author{ID: id.New(), Name: "Ann", Version: 1, CreatedAt: now, UpdatedAt: now}
	bea := author.Author{ID: id.New(), Name: "Bea", Version: 1, CreatedAt: now, UpdatedAt: now}
	for _, a := range []author.Author{bea, annB, annA} {
		_, _ = store.Create(ctx, a)
	}
	b := func(authorID string) author.Book { return author.Book{ID: id.New(), AuthorID: authorID, Genre: "epic"} }
	b1, b2, b3, b4, b5 := b(bea.ID), b(annB.ID), b(id.New()), b(annA.ID), b(bea.ID)
	// Two pages, the books out of id order within them.
	fake := &books{pages: []author.BookListing{{Items: []author.Book{b2, b1}, NextCursor: ptr("c")}, {Items: []author.Book{b5, b3, b4}}}}
	got, err := author.NewService(store, fake, 0).GenreBooks(ctx, "epic")
	if err != nil {
		t.Fatal(err)
	}
	type group struct {
		author string
		books  []string
	}
	var groups []group
	for _, a := range got.Authors {
		g := group{author: a.ID}
		for _, x := range a.Books {
			g.books = append(g.books, x.ID)
		}
		groups = append(groups, g)
	}
	want := []group{{annA.ID, []string{b4.ID}}, {annB.ID, []string{b2.ID}}, {bea.ID, []string{b1.ID, b5.ID}}}
	if !slices.EqualFunc(groups, want, func(x, y group) bool { return x.author == y.author && slices.Equal(x.books, y.books) }) ||
		got.Genre != "epic" || got.Truncated {
		t.Errorf("got %+v, want %+v, not truncated", groups, want)
	}
	if fake.asked[1].Cursor != "c" || fake.asked[0].Limit != 100 {
		t.Errorf("asked %+v, want pages of 100 following the cursor", fake.asked)
	}
}

// TestGenreBooksNeverAnswersInPart: whatever goes wrong upstream is Unavailable,
// with no partial answer; a page that is empty yet promises more included, which
// would otherwise loop forever.
func TestGenreBooksNeverAnswersInPart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		books *books
	}{
		{"unavailable", &books{err: fault.New(fault.Unavailable, "down")}},
		{"rejected", &books{err: fault.New(fault.Malformed, "bad cursor")}},
		{"an empty page with a next cursor", &books{pages: []author.BookListing{{Items: []author.Book{}, NextCursor: ptr("c")}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := author.NewService(newMemStore(), tc.books, 0).GenreBooks(context.Background(), "epic")
			if fault.KindOf(err) != fault.Unavailable || got.Authors != nil {
				t.Errorf("got %+v, %v, want Unavailable and nothing", got, err)
			}
		})
	}
}

// TestBookCallsHaveTheUpstreamBudget: the calls of one request to the book service
// share a deadline of the budget, so that the request is answered in time.
func TestBookCallsHaveTheUpstreamBudget(t *testing.T) {
	store := newMemStore()
	ctx := context.Background()
	const budget = time.Hour
	fake := &books{pages: []author.BookListing{{}, {}}}
	svc := author.NewService(store, fake, budget)
	a, err := svc.Create(ctx, author.Input{Name: ptr("A")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Books(ctx, a.ID, author.BooksQuery{}); err != nil {
		t.Fatal(err)
	}
	if fake.deadline <= 0 || fake.deadline > budget {
		t.Errorf("books of an author: the call had %v left, want at most %v", fake.deadline, budget)
	}
	if _, err := svc.GenreBooks(ctx, "epic"); err != nil {
		t.Fatal(err)
	}
	if fake.deadline <= 0 || fake.deadline > budget {
		t.Errorf("books of a genre: the call had %v left, want at most %v", fake.deadline, budget)
	}
	if fake.asked[0].AuthorID != a.ID {
		t.Errorf("asked %+v, want the author's books", fake.asked[0])
	}
}
