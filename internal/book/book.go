// Package book is the domain of the book service: the Book resource, its rules, the
// Service that applies them, and the interfaces of what it needs (Store, Authors,
// KnownAuthors). It knows nothing of HTTP, SQL or the broker: the packages beside it
// (sqlstore, httpapi, events, authorclient) depend on it, never the reverse.
package book

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
	"folio/internal/platform/visible"
)

// Book is the resource the service owns.
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

// Input is a book as a client writes it (POST, PUT, and the result of a PATCH).
// The read-only fields are accepted so that a client can send back what it read,
// and ignored.
type Input struct {
	Title         *string `json:"title"`
	AuthorID      *string `json:"author_id"`
	Genre         *string `json:"genre"`
	ISBN          *string `json:"isbn"`
	PublishedYear *int    `json:"published_year"`

	ID        json.RawMessage `json:"id,omitempty"`
	Version   json.RawMessage `json:"version,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
	UpdatedAt json.RawMessage `json:"updated_at,omitempty"`
}

// Filter narrows a list of books; empty fields match every book.
type Filter struct {
	Genre    string
	AuthorID string
}

// Store keeps books. Implementations return fault errors: NotFound for a missing
// book, Conflict for a duplicate ISBN, and ErrStale when the version moved on.
type Store interface {
	Create(ctx context.Context, b Book) error
	Get(ctx context.Context, id string) (Book, error)
	// List returns up to page.Fetch() books matching f with ids after page.After, by id.
	List(ctx context.Context, f Filter, page paging.Request) ([]Book, error)
	// Update writes b if the stored book is still at version b.Version-1.
	Update(ctx context.Context, b Book) error
	// Delete removes the book if it is still at version.
	Delete(ctx context.Context, id string, version int) error
	// GenreVersion returns a number that every committed write raises which creates,
	// changes or deletes a book of the genre, or moves one into or out of it; 0 for
	// a genre that never had a book.
	GenreVersion(ctx context.Context, genre string) (int64, error)
}

// Authors answers whether an author exists. It returns a fault Unavailable error when
// it cannot tell. The author service's client is one; AuthorDirectory, which asks it
// only about authors the book database does not know, is another.
type Authors interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// ErrStale is returned by Store writes when the book changed since it was read.
var ErrStale = errors.New("book changed concurrently")

// ErrNotFound is what the service and its store answer for a book that does not exist.
var ErrNotFound = fault.New(fault.NotFound, "no book has this id")

// Types of the events the book service publishes, one per committed write.
const (
	EventBookCreated = "book.created"
	EventBookUpdated = "book.updated"
	EventBookDeleted = "book.deleted"
)

var genreSlug = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// Limits of the writable fields.
const (
	MaxTitle = 300
	MinYear  = -3000
)

// validate checks in against every rule and returns the book's writable fields, trimmed
// and normalised, or an Invalid error naming each broken field.
func (in Input) validate(now time.Time) (Book, error) {
	var b Book
	var errs fault.Fields
	b.Title = trimmed(in.Title)
	switch n := utf8.RuneCountInString(b.Title); {
	case n == 0:
		errs.Add("title", "is required")
	case n > MaxTitle:
		errs.Add("title", fmt.Sprintf("must be at most %d characters", MaxTitle))
	case strings.ContainsRune(b.Title, 0):
		// PostgreSQL cannot store NUL in text; refuse it on every engine alike.
		errs.Add("title", "must not contain NUL characters")
	case !visible.Has(b.Title):
		// Zero-width and bidi control characters pass "required" yet show nothing.
		errs.Add("title", visible.Rule)
	}
	b.AuthorID = trimmed(in.AuthorID)
	if b.AuthorID == "" {
		errs.Add("author_id", "is required")
	} else if !id.Valid(b.AuthorID) {
		errs.Add("author_id", "does not name an existing author")
	}
	b.Genre = trimmed(in.Genre)
	if b.Genre == "" {
		errs.Add("genre", "is required")
	} else if !genreSlug.MatchString(b.Genre) {
		errs.Add("genre", "must be a lower-case slug of letters, digits and hyphens, starting with a letter, at most 40 characters")
	}
	if s := trimmed(in.ISBN); s != "" {
		isbn, err := NormalizeISBN(s)
		if err != nil {
			errs.Add("isbn", err.Error())
		}
		b.ISBN = &isbn
	}
	if in.PublishedYear != nil {
		y, maxYear := *in.PublishedYear, now.Year()+1
		if y < MinYear || y > maxYear {
			errs.Add("published_year", fmt.Sprintf("must be between %d and %d", MinYear, maxYear))
		}
		b.PublishedYear = &y
	}
	return b, errs.Err()
}

func trimmed(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

// Input returns the writable fields of b as a client would send them: what a merge
// patch applies to.
func (b Book) Input() Input {
	return Input{Title: &b.Title, AuthorID: &b.AuthorID, Genre: &b.Genre, ISBN: b.ISBN, PublishedYear: b.PublishedYear}
}

// NormalizeISBN checks an ISBN-10 or ISBN-13 (hyphens and spaces allowed) and returns
// it as ISBN-13 digits.
func NormalizeISBN(s string) (string, error) {
	d := strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s)
	switch len(d) {
	case 10:
		sum := 0
		for i := 0; i < 10; i++ {
			c := d[i]
			var v int
			switch {
			case c >= '0' && c <= '9':
				v = int(c - '0')
			case (c == 'X' || c == 'x') && i == 9:
				v = 10
			default:
				return "", errors.New("must be an ISBN-10 or ISBN-13")
			}
			sum += v * (10 - i)
		}
		if sum%11 != 0 {
			return "", errors.New("has a wrong check digit")
		}
		body := "978" + d[:9]
		return body + string(rune('0'+ean13Check(body))), nil
	case 13:
		for i := 0; i < 13; i++ {
			if d[i] < '0' || d[i] > '9' {
				return "", errors.New("must be an ISBN-10 or ISBN-13")
			}
		}
		if !strings.HasPrefix(d, "978") && !strings.HasPrefix(d, "979") {
			return "", errors.New("an ISBN-13 starts with 978 or 979")
		}
		if int(d[12]-'0') != ean13Check(d[:12]) {
			return "", errors.New("has a wrong check digit")
		}
		return d, nil
	default:
		return "", errors.New("must be an ISBN-10 or ISBN-13")
	}
}

// ean13Check returns the check digit of the 12 digits given.
func ean13Check(digits string) int {
	sum := 0
	for i := 0; i < 12; i++ {
		v := int(digits[i] - '0')
		if i%2 == 1 {
			v *= 3
		}
		sum += v
	}
	return (10 - sum%10) % 10
}
