// Package author is the domain of the author service: the Author resource, its rules,
// the Service that applies them, and the interfaces of what it needs (Store, Books).
// It knows nothing of HTTP, SQL or the broker: sqlstore, httpapi, events and
// bookclient beside it do, and depend on it, never the reverse.
package author

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
	"folio/internal/platform/visible"
)

// Author is the resource the service owns.
type Author struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	Bio       *string `json:"bio"`
	BirthYear *int    `json:"birth_year"`
	// BookCount is the number of books of the author, kept from book events: it
	// lags the book service by the time an event takes to arrive.
	BookCount int       `json:"book_count"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Input is an author as a client writes it (POST, PUT, and the result of a PATCH).
// The read-only fields are accepted so that a client can send back what it read,
// and ignored.
type Input struct {
	Name      *string `json:"name"`
	Bio       *string `json:"bio"`
	BirthYear *int    `json:"birth_year"`

	ID        json.RawMessage `json:"id,omitempty"`
	BookCount json.RawMessage `json:"book_count,omitempty"`
	Version   json.RawMessage `json:"version,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
	UpdatedAt json.RawMessage `json:"updated_at,omitempty"`
}

// Store keeps authors. Implementations return fault errors: NotFound for a missing
// author, Conflict for the delete of an author with books, and ErrStale when the
// version moved on. Reads and writes return authors with their BookCount.
type Store interface {
	Create(ctx context.Context, a Author) (Author, error)
	Get(ctx context.Context, id string) (Author, error)
	// GetMany returns the authors among ids that exist, by id; missing ones are left out.
	GetMany(ctx context.Context, ids []string) (map[string]Author, error)
	// List returns up to page.Fetch() authors with ids after page.After, by id.
	List(ctx context.Context, page paging.Request) ([]Author, error)
	// Update writes a if the stored author is still at version a.Version-1.
	Update(ctx context.Context, a Author) (Author, error)
	// Delete removes the author if it is still at version and has no books.
	Delete(ctx context.Context, id string, version int) error
	// Generation returns a number that every committed change to an author, or to
	// the books applied from book events, raises: while it stays, so do the authors
	// and their book counts, across every replica that shares the store.
	Generation(ctx context.Context) (int64, error)
}

// Books lists books of the book service. It returns a fault Unavailable error when
// the book service cannot answer, and Malformed when it rejects the request.
type Books interface {
	ListBooks(ctx context.Context, s BookSearch) (BookListing, error)
}

// Book is a book as the book service tells of it.
type Book struct {
	ID            string    `json:"id"`
	Title         string    `json:"title"`
	AuthorID      string    `json:"author_id"`
	Genre         string    `json:"genre"`
	ISBN          *string   `json:"isbn"`
	PublishedYear *int      `json:"published_year"`
	Version       int       `json:"version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// BookSearch narrows and pages a list of the book service's books. Empty fields ask
// for the book service's defaults.
type BookSearch struct {
	Genre    string
	AuthorID string
	Limit    int
	Cursor   string // the NextCursor of the previous listing
	// IfNoneMatch, when set, is the ETag of an earlier listing of the same search:
	// the book service then answers NotModified while it still holds.
	IfNoneMatch string
}

// BookListing is one page of the book service's books. NextCursor is nil on the last.
type BookListing struct {
	Items      []Book  `json:"items"`
	NextCursor *string `json:"next_cursor"`
	// ETag is the book service's tag of the listing ("" when it sent none); a
	// listing narrowed to a genre has one that vouches for every page of it.
	ETag string `json:"-"`
	// NotModified is true when the search's IfNoneMatch still holds: no Items then.
	NotModified bool `json:"-"`
}

// BookChange is what an event of the book service tells the author service: a book,
// at a version, now belongs to an author, or is deleted. The Store keeps the latest
// of each book, whatever the order changes arrive in, to count each author's books.
type BookChange struct {
	BookID   string
	AuthorID string // empty on delete
	Version  int    // 0 on delete
	Deleted  bool
}

// Types of the events the author service publishes, each with the author after the
// change as its data, or only its id after a delete.
const (
	EventAuthorCreated = "author.created"
	EventAuthorUpdated = "author.updated"
	EventAuthorDeleted = "author.deleted"
)

// ErrStale is returned by Store writes when the author changed since it was read.
var ErrStale = errors.New("author changed concurrently")

// ErrNotFound is the error of every read or write of an author that does not exist.
var ErrNotFound = fault.New(fault.NotFound, "no author has this id")

// ErrNotFound is the error of every read or write of an author that does not exist.

var genreSlug = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// Limits of the writable fields and of the genre grouping.
const (
	MaxName  = 200
	MaxBio   = 5000
	MinYear  = -3000
	MaxBooks = 1000 // books of one genre that GenreBooks groups at most

	genrePageSize = 100
)

// DefaultUpstreamBudget is how long the calls to the book service made for one request
// may take together, retries included, so that the request is answered within 2 s.
const DefaultUpstreamBudget = 1500 * time.Millisecond

// validate checks in against every rule and returns the author's writable fields,
// trimmed and normalised, or an Invalid error naming each broken field.
func (in Input) validate(now time.Time) (Author, error) {
	var a Author
	var errs fault.Fields
	a.Name = trimmed(in.Name)
	switch n := utf8.RuneCountInString(a.Name); {
	case n == 0:
		errs.Add("name", "is required")
	case n > MaxName:
		errs.Add("name", fmt.Sprintf("must be at most %d characters", MaxName))
	case strings.ContainsRune(a.Name, 0):
		errs.Add("name", "must not contain NUL characters")
	case !visible.Has(a.Name):
		// Zero-width and bidi control characters pass "required" yet show nothing.
		errs.Add("name", visible.Rule)
	}
	if s := trimmed(in.Bio); s != "" {
		switch {
		case utf8.RuneCountInString(s) > MaxBio:
			errs.Add("bio", fmt.Sprintf("must be at most %d characters", MaxBio))
		case strings.ContainsRune(s, 0):
			errs.Add("bio", "must not contain NUL characters")
		}
		a.Bio = &s
	}
	if in.BirthYear != nil {
		y, maxYear := *in.BirthYear, now.Year()
		if y < MinYear || y > maxYear {
			errs.Add("birth_year", fmt.Sprintf("must be between %d and %d", MinYear, maxYear))
		}
		a.BirthYear = &y
	}
	return a, errs.Err()
}

func trimmed(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// Input returns the writable fields of a as a client would send them, the document a
// merge patch applies to.
func (a Author) Input() Input {
	return Input{Name: &a.Name, Bio: a.Bio, BirthYear: a.BirthYear}
}

// Service applies the rules of the author service to its store, and asks the book
// service for the books of authors.
type Service struct {
	store  Store
	books  Books
	budget time.Duration
	now    func() time.Time
}

// NewService returns a Service over store that lists books with books. upstreamBudget
// bounds the book service calls of one request together (DefaultUpstreamBudget when
// not positive).
func NewService(store Store, books Books, upstreamBudget time.Duration) *Service {
	if upstreamBudget <= 0 {
		upstreamBudget = DefaultUpstreamBudget
	}
	return &Service{store: store, books: books, budget: upstreamBudget, now: time.Now}
}

func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Create validates in and stores a new author. Errors: Invalid.
func (s *Service) Create(ctx context.Context, in Input) (Author, error) {
	now := s.timestamp()
	a, err := in.validate(now)
	if err != nil {
		return Author{}, err
	}
	a.ID, a.Version, a.CreatedAt, a.UpdatedAt = id.New(), 1, now, now
	return s.store.Create(ctx, a)
}

// Get returns the author with the id, or a NotFound error.
func (s *Service) Get(ctx context.Context, authorID string) (Author, error) {
	if !id.Valid(authorID) {
		return Author{}, ErrNotFound
	}
	return s.store.Get(ctx, authorID)
}

// List returns one page of the authors, in id order. Errors: only unclassified ones
// (the store failed).
func (s *Service) List(ctx context.Context, page paging.Request) (paging.Page[Author], error) {
	authors, err := s.store.List(ctx, page)
	if err != nil {
		return paging.Page[Author]{}, err
	}
	return paging.Of(page, authors, func(a Author) string { return a.ID }), nil
}

// Update sets the writable fields of the author to what next makes of the current
// author (a replacement ignores it, a merge patch applies to it), then checks them
// against the rules. check vets the current version (If-Match). When the author
// changes in between, it reads, checks and calls next again, so that no concurrent
// update is lost. Errors: NotFound, PreconditionFailed, Invalid, and next's.
func (s *Service) Update(ctx context.Context, authorID string, check func(version int) error, next func(Author) (Input, error)) (Author, error) {
	if !id.Valid(authorID) {
		return Author{}, ErrNotFound
	}
	for {
		cur, err := s.store.Get(ctx, authorID)
		if err != nil {
			return Author{}, err
		}
		if err := check(cur.Version); err != nil {
			return Author{}, err
		}
		in, err := next(cur)
		if err != nil {
			return Author{}, err
		}
		now := s.timestamp()
		a, err := in.validate(now)
		if err != nil {
			return Author{}, err
		}
		a.ID, a.Version, a.CreatedAt, a.UpdatedAt = cur.ID, cur.Version+1, cur.CreatedAt, now
		a, err = s.store.Update(ctx, a)
		if errors.Is(err, ErrStale) {
			continue
		}
		if err != nil {
			return Author{}, err
		}
		return a, nil
	}
}

// Delete removes the author. Errors: NotFound, PreconditionFailed, Conflict (the
// author still has books).
func (s *Service) Delete(ctx context.Context, authorID string, check func(version int) error) error {
	if !id.Valid(authorID) {
		return ErrNotFound
	}
	for {
		cur, err := s.store.Get(ctx, authorID)
		if err != nil {
			return err
		}
		if err := check(cur.Version); err != nil {
			return err
		}
		if err := s.store.Delete(ctx, authorID, cur.Version); !errors.Is(err, ErrStale) {
			return err
		}
	}
}

// BooksQuery asks for one page of an author's books. Cursor is the book service's
// next_cursor, passed through unread.
type BooksQuery struct {
	Genre  string
	Limit  int
	Cursor string
}

// BooksPage is one page of an author's books, with the author.
type BooksPage struct {
	Author     Author  `json:"author"`
	Items      []Book  `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// Books returns a page of the books of the author with id, from the book service.
// Errors: NotFound (no such author), Malformed (a bad genre, or a limit or cursor the
// book service rejects), Unavailable (the book service cannot answer in time).
func (s *Service) Books(ctx context.Context, authorID string, q BooksQuery) (BooksPage, error) {
	if !id.Valid(authorID) {
		return BooksPage{}, ErrNotFound
	}
	if err := checkGenre(q.Genre, false); err != nil {
		return BooksPage{}, err
	}
	a, err := s.store.Get(ctx, authorID)
	if err != nil {
		return BooksPage{}, err
	}
	uctx, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	page, err := s.books.ListBooks(uctx, BookSearch{AuthorID: authorID, Genre: q.Genre, Limit: q.Limit, Cursor: q.Cursor})
	if err != nil {
		return BooksPage{}, fmt.Errorf("books of author %s: %w", authorID, err)
	}
	if page.Items == nil {
		page.Items = []Book{}
	}
	return BooksPage{Author: a, Items: page.Items, NextCursor: page.NextCursor}, nil
}

// WithBooks is an author and their books of one genre.
type WithBooks struct {
	Author
	Books []Book `json:"books"`
}

// GenreBooks is the books of one genre grouped by author.
type GenreBooks struct {
	Genre   string      `json:"genre"`
	Authors []WithBooks `json:"authors"`
	// Truncated is true when the genre has more than MaxBooks books and only the
	// first MaxBooks (by id) were grouped.
	Truncated bool `json:"truncated"`
}

// GenreStamp says what an answer of GenreBooksSince was built from: the store's
// generation and the book service's ETag of the genre's first page. The zero
// GenreStamp matches no answer.
type GenreStamp struct {
	generation int64
	bookTag    string
}

// GenreBooks fetches up to MaxBooks books of the genre from the book service and
// groups them by author; books whose author this service does not know are left out.
// Authors come ordered by name then id, each one's books by id. Errors: Malformed (no
// genre, or not a genre slug), Unavailable (the book service cannot answer in time;
// never a partial answer).
func (s *Service) GenreBooks(ctx context.Context, genre string) (GenreBooks, error) {
	res, _, _, err := s.GenreBooksSince(ctx, genre, GenreStamp{})
	return res, err
}

// GenreBooksSince is GenreBooks for a caller that keeps the answer it built at
// stamp: it reports unchanged, with no answer, when that answer is still the one
// GenreBooks would give, and otherwise the new answer and its stamp. Either way it
// asks the book service, so that the answer is as current as the book service's
// books and this store's authors when it is called, and an unreachable book service
// is Unavailable as it is for GenreBooks: one request for the first page, which
// answers 304 while neither the genre's books nor (the generation) any author
// changed. The generation is read before anything it vouches for.
func (s *Service) GenreBooksSince(ctx context.Context, genre string, stamp GenreStamp) (res GenreBooks, next GenreStamp, unchanged bool, err error) {
	if err := checkGenre(genre, true); err != nil {
		return GenreBooks{}, GenreStamp{}, false, err
	}
	gen, err := s.store.Generation(ctx)
	if err != nil {
		return GenreBooks{}, GenreStamp{}, false, err
	}
	ifNoneMatch := ""
	if stamp.bookTag != "" && stamp.generation == gen {
		ifNoneMatch = stamp.bookTag
	}
	books, truncated, tag, err := s.genreBooks(ctx, genre, ifNoneMatch)
	if errors.Is(err, errNotModified) {
		return GenreBooks{}, stamp, true, nil
	}
	if err != nil {
		return GenreBooks{}, GenreStamp{}, false, err
	}

	byAuthor := map[string][]Book{}
	var ids []string
	for _, b := range books {
		if !id.Valid(b.AuthorID) {
			continue
		}
		if _, seen := byAuthor[b.AuthorID]; !seen {
			ids = append(ids, b.AuthorID)
		}
		byAuthor[b.AuthorID] = append(byAuthor[b.AuthorID], b)
	}
	authors, err := s.store.GetMany(ctx, ids)
	if err != nil {
		return GenreBooks{}, GenreStamp{}, false, err
	}
	out := GenreBooks{Genre: genre, Authors: make([]WithBooks, 0, len(authors)), Truncated: truncated}
	for _, aid := range ids {
		a, ok := authors[aid]
		if !ok {
			continue
		}
		bs := byAuthor[aid]
		slices.SortStableFunc(bs, func(x, y Book) int { return strings.Compare(x.ID, y.ID) })
		out.Authors = append(out.Authors, WithBooks{Author: a, Books: bs})
	}
	slices.SortFunc(out.Authors, func(x, y WithBooks) int {
		return cmp.Or(strings.Compare(x.Name, y.Name), strings.Compare(x.ID, y.ID))
	})
	return out, GenreStamp{generation: gen, bookTag: tag}, false, nil
}

// errNotModified is genreBooks' answer when the first page still has the ETag asked about.
var errNotModified = errors.New("the genre's books did not change")

// genreBooks reads the genre's books page by page, within the upstream budget, and
// reports whether more than MaxBooks existed, with the ETag of the first page. With
// ifNoneMatch, a first page the book service answers NotModified ends it with
// errNotModified.
func (s *Service) genreBooks(ctx context.Context, genre, ifNoneMatch string) (books []Book, truncated bool, tag string, err error) {
	uctx, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	cursor := ""
	for {
		search := BookSearch{Genre: genre, Limit: genrePageSize, Cursor: cursor}
		if cursor == "" {
			search.IfNoneMatch = ifNoneMatch
		}
		page, err := s.books.ListBooks(uctx, search)
		if fault.KindOf(err) == fault.Malformed {
			// Every parameter was checked here or is the book service's own cursor, so
			// the client can do nothing about a rejection: the book service is failing.
			err = fault.Wrap(fault.Unavailable, err, "the book service cannot answer right now")
		}
		if err != nil {
			return nil, false, "", fmt.Errorf("books of genre %s: %w", genre, err)
		}
		switch {
		case page.NotModified && (cursor != "" || ifNoneMatch == ""):
			return nil, false, "", fault.Wrap(fault.Unavailable, errors.New("book service answered 304 to a request without If-None-Match"),
				"the book service gave an unusable answer")
		case page.NotModified:
			return nil, false, "", errNotModified
		case cursor == "":
			tag = page.ETag
		}
		books = append(books, page.Items...)
		switch {
		case len(books) > MaxBooks:
			return books[:MaxBooks], true, tag, nil
		case page.NextCursor == nil:
			return books, false, tag, nil
		case len(books) == MaxBooks:
			return books, true, tag, nil
		case len(page.Items) == 0:
			// A page that is empty yet promises more would make this loop forever.
			return nil, false, "", fault.Wrap(fault.Unavailable, errors.New("book service sent an empty page with a next cursor"),
				"the book service gave an unusable answer")
		}
		cursor = *page.NextCursor
	}
}

// checkGenre returns a Malformed error naming the genre parameter when it is not a
// genre slug, or when it is required and missing.
func checkGenre(genre string, required bool) error {
	switch {
	case genre == "" && required:
		return &fault.Error{Kind: fault.Malformed, Message: "the genre query parameter is required",
			Fields: []fault.FieldError{{Field: "genre", Message: "is required"}}}
	case genre != "" && !genreSlug.MatchString(genre):
		return &fault.Error{Kind: fault.Malformed, Message: "genre must be a genre slug",
			Fields: []fault.FieldError{{Field: "genre", Message: "must be a lower-case slug of letters, digits and hyphens, starting with a letter, at most 40 characters"}}}
	}
	return nil
}
