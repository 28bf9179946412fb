package book

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// Service applies the rules of the book service to its store.
type Service struct {
	store   Store
	authors Authors
	now     func() time.Time
}

// NewService returns a Service over store that checks authors with authors.
func NewService(store Store, authors Authors) *Service {
	return &Service{store: store, authors: authors, now: time.Now}
}

func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Create validates in and stores a new book. Errors: Invalid, Conflict (ISBN taken),
// Unavailable (the author service cannot confirm the author).
func (s *Service) Create(ctx context.Context, in Input) (Book, error) {
	now := s.timestamp()
	b, err := in.validate(now)
	if err != nil {
		return Book{}, err
	}
	if err := s.checkAuthor(ctx, b.AuthorID); err != nil {
		return Book{}, err
	}
	b.ID, b.Version, b.CreatedAt, b.UpdatedAt = id.New(), 1, now, now
	if err := s.store.Create(ctx, b); err != nil {
		return Book{}, err
	}
	return b, nil
}

// Get returns the book with the id, or a NotFound error.
func (s *Service) Get(ctx context.Context, bookID string) (Book, error) {
	if !id.Valid(bookID) {
		return Book{}, ErrNotFound
	}
	return s.store.Get(ctx, bookID)
}

// List returns the page of books matching f that page asks for. Errors: Malformed
// when a filter is not valid.
func (s *Service) List(ctx context.Context, f Filter, page paging.Request) (paging.Page[Book], error) {
	if err := f.check(); err != nil {
		return paging.Page[Book]{}, err
	}
	books, err := s.store.List(ctx, f, page)
	if err != nil {
		return paging.Page[Book]{}, err
	}
	return paging.Of(page, books, func(b Book) string { return b.ID }), nil
}

// GenreVersion returns the version of the genre's books: as long as it stays the
// same, so does every listing narrowed to the genre, all its pages. Read it before
// the listing it vouches for, so that the listing is at least as new. Errors:
// Malformed when a genre is given and is not a genre slug.
func (s *Service) GenreVersion(ctx context.Context, genre string) (int64, error) {
	if err := (Filter{Genre: genre}).check(); err != nil {
		return 0, err
	}
	return s.store.GenreVersion(ctx, genre)
}

// ListingKey is the query of a listing, in full: what the listing shows depends on
// nothing else. It names the listings kept by version, and is digested into their tag.
func ListingKey(f Filter, page paging.Request) string {
	return f.Genre + "\x00" + f.AuthorID + "\x00" + strconv.Itoa(page.Limit) + "\x00" + page.After
}

// GenreListingTag is the entity tag of the listing narrowed to a genre with key
// (ListingKey) at the genre's version v (GenreVersion): it changes whenever the
// genre's version does, on every page, and differs between queries. Weak, as the
// same books may be encoded differently by another release or transport.
func GenreListingTag(v int64, key string) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	return `W/"g` + strconv.FormatInt(v, 36) + "-" + strconv.FormatUint(h.Sum64(), 36) + `"`
}

// check returns a Malformed error naming each filter that is not valid.
func (f Filter) check() error {
	var errs fault.Fields
	if f.Genre != "" && !genreSlug.MatchString(f.Genre) {
		errs.Add("genre", "must be a genre slug")
	}
	if f.AuthorID != "" && !id.Valid(f.AuthorID) {
		errs.Add("author_id", "must be an author id")
	}
	if len(errs) > 0 {
		return &fault.Error{Kind: fault.Malformed, Message: "a filter is not valid", Fields: errs}
	}
	return nil
}

// Replace sets every writable field of the book from in. check vets the current
// version (If-Match). Errors: NotFound, PreconditionFailed, Invalid, Conflict, Unavailable.
func (s *Service) Replace(ctx context.Context, bookID string, in Input, check func(version int) error) (Book, error) {
	return s.Update(ctx, bookID, check, func(Book) (Input, error) { return in, nil })
}

// Update changes the book to what next makes of its current value (a merge patch, a
// replacement), checked by the same rules as a new book. check vets the current
// version (If-Match). The read-check-write cycle runs again, next included, when the
// book changed in between, so that no concurrent change is lost. Errors as for
// Replace, and those of next.
func (s *Service) Update(ctx context.Context, bookID string, check func(version int) error, next func(current Book) (Input, error)) (Book, error) {
	if !id.Valid(bookID) {
		return Book{}, ErrNotFound
	}
	for {
		cur, err := s.store.Get(ctx, bookID)
		if err != nil {
			return Book{}, err
		}
		if err := check(cur.Version); err != nil {
			return Book{}, err
		}
		in, err := next(cur)
		if err != nil {
			return Book{}, err
		}
		now := s.timestamp()
		b, err := in.validate(now)
		if err != nil {
			return Book{}, err
		}
		if b.AuthorID != cur.AuthorID {
			if err := s.checkAuthor(ctx, b.AuthorID); err != nil {
				return Book{}, err
			}
		}
		b.ID, b.Version, b.CreatedAt, b.UpdatedAt = cur.ID, cur.Version+1, cur.CreatedAt, now
		err = s.store.Update(ctx, b)
		if errors.Is(err, ErrStale) {
			continue
		}
		if err != nil {
			return Book{}, err
		}
		return b, nil
	}
}

// Delete removes the book. Errors: NotFound, PreconditionFailed.
func (s *Service) Delete(ctx context.Context, bookID string, check func(version int) error) error {
	if !id.Valid(bookID) {
		return ErrNotFound
	}
	for {
		cur, err := s.store.Get(ctx, bookID)
		if err != nil {
			return err
		}
		if err := check(cur.Version); err != nil {
			return err
		}
		if err := s.store.Delete(ctx, bookID, cur.Version); !errors.Is(err, ErrStale) {
			return err
		}
	}
}

func (s *Service) checkAuthor(ctx context.Context, authorID string) error {
	ok, err := s.authors.Exists(ctx, authorID)
	if err != nil {
		return err
	}
	if !ok {
		return &fault.Error{Kind: fault.Invalid, Message: "the request breaks one or more rules",
			Fields: []fault.FieldError{{Field: "author_id", Message: "does not name an existing author"}}}
	}
	return nil
}
