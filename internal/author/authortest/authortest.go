// Package authortest holds what the tests of the author service's packages share: a
// fake book service, authors to store and a comparison of them, and book events as
// the book service publishes them. The tests of one service import no other service,
// so the book service they talk to is this fake, which keeps its API's rules.
package authortest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/events"
	"folio/internal/platform/broker"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// NewAuthor returns an author at version 1, as the Service would create it.
func NewAuthor(name string, now time.Time) author.Author {
	return author.Author{ID: id.New(), Name: name, Version: 1, CreatedAt: now, UpdatedAt: now}
}

// SameAuthor reports whether a and b hold the same fields, book_count aside, with
// both timestamps in UTC.
func SameAuthor(a, b author.Author) bool {
	return a.ID == b.ID && a.Name == b.Name && equalPtr(a.Bio, b.Bio) && equalPtr(a.BirthYear, b.BirthYear) &&
		a.Version == b.Version && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.CreatedAt.Location() == time.UTC && a.UpdatedAt.Location() == time.UTC
}

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// Ptr returns a pointer to v.
func Ptr[T any](v T) *T { return &v }

// IDs returns the ids of authors, in their order.
func IDs(authors []author.Author) []string {
	out := make([]string, len(authors))
	for i, a := range authors {
		out[i] = a.ID
	}
	return out
}

// BookIDs returns the ids of books, in their order.
func BookIDs(books []author.Book) []string {
	out := make([]string, len(books))
	for i, b := range books {
		out[i] = b.ID
	}
	return out
}

// BookEvent returns the message of a book event with a new event id, with data as
// the book service publishes it.
func BookEvent(typ, bookID, authorID string, version int) broker.Message {
	data := map[string]any{"id": bookID}
	if typ != events.EventBookDeleted {
		data = map[string]any{"id": bookID, "title": "T", "author_id": authorID, "genre": "g", "isbn": nil,
			"published_year": nil, "version": version, "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}
	}
	raw, _ := json.Marshal(data)
	return EnvelopeMessage(broker.Envelope{ID: id.New(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
}

// EnvelopeMessage is the message the broker delivers for env.
func EnvelopeMessage(env broker.Envelope) broker.Message {
	body, _ := json.Marshal(env)
	return broker.Message{Subject: "folio." + env.Type, ID: env.ID, Body: body}
}

// BookService stands in for the book service's GET /books with its rules: filters
// by genre and author, in id order, a page at a time with its cursors, 400 naming
// the parameter it rejects, and on a listing narrowed to a genre an ETag that
// changes with every book stored in or moved out of the genre, and a 304 to an
// If-None-Match naming it. It records the request id and limit of every request,
// and counts its 304s.
type BookService struct {
	mu           sync.Mutex
	books        []author.Book // by id
	genres       map[string]int
	requestIDs   []string
	limits       []string
	notModifieds int
}

// StartBookService serves a new, empty book service until the test ends and returns
// it with its URL.
func StartBookService(tb testing.TB) (*BookService, string) {
	tb.Helper()
	s := &BookService{}
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	return s, ts.URL
}

// Add stores a new book of the author in genre and returns it. Books added later
// have greater ids.
func (s *BookService) Add(authorID, genre string) author.Book {
	now := time.Now().UTC().Truncate(time.Microsecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := author.Book{ID: id.New(), Title: fmt.Sprintf("Book %d", len(s.books)), AuthorID: authorID, Genre: genre,
		Version: 1, CreatedAt: now, UpdatedAt: now}
	s.insert(b)
	return b
}

// Put stores b as it is, in place of the book with its id if there is one.
func (s *BookService) Put(b author.Book) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insert(b)
}

func (s *BookService) insert(b author.Book) {
	if s.genres == nil {
		s.genres = map[string]int{}
	}
	s.genres[b.Genre]++
	i, found := slices.BinarySearchFunc(s.books, b.ID, func(x author.Book, id string) int { return strings.Compare(x.ID, id) })
	if found {
		s.genres[s.books[i].Genre]++
		s.books[i] = b
		return
	}
	s.books = slices.Insert(s.books, i, b)
}

// NotModifieds returns how many requests it answered 304.
func (s *BookService) NotModifieds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notModifieds
}

// Requests returns the request id and the limit parameter of every request so far.
func (s *BookService) Requests() (requestIDs, limits []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requestIDs), slices.Clone(s.limits)
}

var genreSlug = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

func (s *BookService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	problem.Handler(s.list).ServeHTTP(w, r)
}

func (s *BookService) list(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet || r.URL.Path != "/books" {
		return fault.New(fault.NotFound, "no such route in this fake book service")
	}
	s.mu.Lock()
	s.requestIDs = append(s.requestIDs, r.Header.Get(httpserver.RequestIDHeader))
	s.limits = append(s.limits, r.URL.Query().Get("limit"))
	s.mu.Unlock()

	page, err := rest.ParsePage(r)
	if err != nil {
		return err
	}
	genre, authorID := r.URL.Query().Get("genre"), r.URL.Query().Get("author_id")
	var errs fault.Fields
	if genre != "" && !genreSlug.MatchString(genre) {
		errs.Add("genre", "must be a genre slug")
	}
	if authorID != "" && !id.Valid(authorID) {
		errs.Add("author_id", "must be an author id")
	}
	if len(errs) > 0 {
		return &fault.Error{Kind: fault.Malformed, Message: "a filter is not valid", Fields: errs}
	}
	s.mu.Lock()
	if genre != "" {
		q := r.URL.Query()
		tag := fmt.Sprintf(`W/"%d-%s-%s-%s-%s"`, s.genres[genre], genre, q.Get("author_id"), q.Get("limit"), q.Get("cursor"))
		w.Header().Set("ETag", tag)
		if r.Header.Get("If-None-Match") == tag {
			s.notModifieds++
			s.mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
	}
	var out []author.Book
	for _, b := range s.books {
		if b.ID > page.After && (genre == "" || b.Genre == genre) && (authorID == "" || b.AuthorID == authorID) && len(out) < page.Fetch() {
			out = append(out, b)
		}
	}
	s.mu.Unlock()
	return rest.WriteJSON(w, http.StatusOK, rest.PageOf(paging.Of(page, out, func(b author.Book) string { return b.ID })))
}
