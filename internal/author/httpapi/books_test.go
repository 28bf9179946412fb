package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

// catalogue is an author service in front of a book service, with three authors and
// books of two genres.
type catalogue struct {
	s *server
	// Two authors share a name; anneA was created first, so its id is the smaller.
	zadie, anneA, anneB, bookless author.Author

	b                []author.Book // by creation, hence by id
	strangerBookIDs  []string      // books whose author the author service does not know
	fantasyOfZadie   []string
	allBooksOfZadie  []string
	fantasyOfAnneA   []string
	fantasyOfAnneB   []string
	scienceFictionID string
}

func newCatalogue(t *testing.T) *catalogue {
	t.Helper()
	books, url := authortest.StartBookService(t)
	c := &catalogue{s: newServer(t, openSQLite(t), booksAt(url))}
	c.zadie = c.s.create(`{"name":"Zadie"}`)
	c.anneA = c.s.create(`{"name":"Anne","birth_year":1900}`)
	c.anneB = c.s.create(`{"name":"Anne","bio":"The other Anne."}`)
	c.bookless = c.s.create(`{"name":"Bookless"}`)
	stranger := id.New()
	add := func(a, genre string) string {
		b := books.Add(a, genre)
		c.b = append(c.b, b)
		return b.ID
	}
	// The first fantasy book is the later Anne's, so that only the id tie-break puts
	// the earlier Anne first.
	c.fantasyOfAnneB = append(c.fantasyOfAnneB, add(c.anneB.ID, "fantasy"))
	c.fantasyOfZadie = append(c.fantasyOfZadie, add(c.zadie.ID, "fantasy"))
	c.fantasyOfAnneA = append(c.fantasyOfAnneA, add(c.anneA.ID, "fantasy"))
	c.strangerBookIDs = append(c.strangerBookIDs, add(stranger, "fantasy"))
	c.fantasyOfZadie = append(c.fantasyOfZadie, add(c.zadie.ID, "fantasy"))
	c.fantasyOfAnneB = append(c.fantasyOfAnneB, add(c.anneB.ID, "fantasy"))
	c.scienceFictionID = add(c.zadie.ID, "science-fiction")
	c.allBooksOfZadie = append(slices.Clone(c.fantasyOfZadie), c.scienceFictionID)
	return c
}

func TestGenreBooks(t *testing.T) {
	c := newCatalogue(t)

	rec := c.s.do("GET", "/authors/books?genre=fantasy", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("got status %d, want 200: %s", rec.Code, rec.Body)
	}
	got := decode[author.GenreBooks](t, rec)
	if got.Genre != "fantasy" || got.Truncated {
		t.Errorf("got genre %q truncated %v, want fantasy, false", got.Genre, got.Truncated)
	}
	want := []struct {
		a     author.Author
		books []string
	}{
		{c.anneA, c.fantasyOfAnneA},
		{c.anneB, c.fantasyOfAnneB},
		{c.zadie, c.fantasyOfZadie},
	}
	if len(got.Authors) != len(want) {
		t.Fatalf("got %d authors, want %d (the author the service does not know is left out): %s", len(got.Authors), len(want), rec.Body)
	}
	for i, w := range want {
		g := got.Authors[i]
		if !sameAuthor(g.Author, w.a) {
			t.Errorf("author %d: got %+v, want %+v", i, g.Author, w.a)
		}
		if ids := bookIDs(g.Books); !slices.Equal(ids, w.books) {
			t.Errorf("books of %s: got %v, want %v", w.a.Name, ids, w.books)
		}
		for _, b := range g.Books {
			if b.Genre != "fantasy" || b.AuthorID != w.a.ID || b.Title == "" || b.Version != 1 || b.CreatedAt.IsZero() {
				t.Errorf("book %+v is not a fantasy book of %s as the book service has it", b, w.a.Name)
			}
		}
	}
	for _, a := range got.Authors {
		for _, b := range a.Books {
			if slices.Contains(c.strangerBookIDs, b.ID) {
				t.Errorf("book %s of an author the service does not know is listed", b.ID)
			}
		}
	}
	// The wire form is an author's fields plus "books".
	if body := rec.Body.String(); !strings.Contains(body, `"authors":[{"id":"`+c.anneA.ID+`","name":"Anne","bio":null,"birth_year":1900,`) ||
		!strings.Contains(body, `"books":[{"id":"`) || !strings.Contains(body, `"truncated":false`) {
		t.Errorf("unexpected wire form: %s", body)
	}

	t.Run("genre without books", func(t *testing.T) {
		rec := c.s.do("GET", "/authors/books?genre=poetry", "")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"authors":[]`) {
			t.Errorf("got %d %s, want 200 with authors []", rec.Code, rec.Body)
		}
	})
}

func TestGenreBooksQuery(t *testing.T) {
	// No book service is needed to reject these, and the route is not GET /authors/{id}.
	s := newOfflineServer(t)
	for _, q := range []string{"", "?genre=", "?genre=Fantasy", "?genre=9lives", "?genre=" + strings.Repeat("a", 41), "?genre=a%20b", "?other=fantasy"} {
		t.Run(q, func(t *testing.T) {
			wantProblem(t, s.do("GET", "/authors/books"+q, ""), http.StatusBadRequest, problem.TypeMalformed, "genre")
		})
	}
}

func TestAuthorBooks(t *testing.T) {
	c := newCatalogue(t)
	get := func(t *testing.T, path string) author.BooksPage {
		t.Helper()
		rec := c.s.do("GET", path, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: got status %d, want 200: %s", path, rec.Code, rec.Body)
		}
		return decode[author.BooksPage](t, rec)
	}

	t.Run("all", func(t *testing.T) {
		res := get(t, "/authors/"+c.zadie.ID+"/books")
		if !sameAuthor(res.Author, c.zadie) || !slices.Equal(bookIDs(res.Items), c.allBooksOfZadie) || res.NextCursor != nil {
			t.Errorf("got %+v, want Zadie with %v and no cursor", res, c.allBooksOfZadie)
		}
	})
	t.Run("genre", func(t *testing.T) {
		res := get(t, "/authors/"+c.zadie.ID+"/books?genre=fantasy")
		if !slices.Equal(bookIDs(res.Items), c.fantasyOfZadie) {
			t.Errorf("got %v, want %v", bookIDs(res.Items), c.fantasyOfZadie)
		}
	})
	t.Run("no books", func(t *testing.T) {
		rec := c.s.do("GET", "/authors/"+c.bookless.ID+"/books", "")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"items":[],"next_cursor":null`) {
			t.Errorf("got %d %s, want 200 with items [] and next_cursor null", rec.Code, rec.Body)
		}
	})
	t.Run("paging walk", func(t *testing.T) {
		var got []string
		path := "/authors/" + c.zadie.ID + "/books?limit=1"
		for range 10 {
			res := get(t, path)
			if len(res.Items) > 1 {
				t.Fatalf("got %d items, want at most 1", len(res.Items))
			}
			got = append(got, bookIDs(res.Items)...)
			if res.NextCursor == nil {
				break
			}
			path = "/authors/" + c.zadie.ID + "/books?limit=1&cursor=" + *res.NextCursor
		}
		if !slices.Equal(got, c.allBooksOfZadie) {
			t.Errorf("walk got %v, want every book once %v", got, c.allBooksOfZadie)
		}
	})
	t.Run("cursor the book service did not issue", func(t *testing.T) {
		for _, cursor := range []string{"nope", rest.Cursor("x")} {
			wantProblem(t, c.s.do("GET", "/authors/"+c.zadie.ID+"/books?cursor="+cursor, ""), http.StatusBadRequest, problem.TypeMalformed, "cursor")
		}
	})
	t.Run("unknown author", func(t *testing.T) {
		wantProblem(t, c.s.do("GET", "/authors/"+id.New()+"/books", ""), http.StatusNotFound, problem.TypeNotFound)
	})
}

func TestGenreBooksTruncation(t *testing.T) {
	for _, n := range []int{999, 1000, 1001, 1250} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			fake, url := authortest.StartBookService(t)
			s := newServer(t, openSQLite(t), booksAt(url))
			authors := []author.Author{s.create(`{"name":"B"}`), s.create(`{"name":"A"}`), s.create(`{"name":"C"}`)}
			now := time.Now().UTC()
			ids := make([]string, n)
			for i := range ids {
				ids[i] = id.New()
			}
			slices.Sort(ids)
			for i, bid := range ids {
				fake.Put(author.Book{ID: bid, Title: "T", AuthorID: authors[i%3].ID, Genre: "epic",
					Version: 1, CreatedAt: now, UpdatedAt: now})
			}

			rec := s.do("GET", "/authors/books?genre=epic", "", httpserver.RequestIDHeader, "rid-truncation")
			if rec.Code != http.StatusOK {
				t.Fatalf("got status %d, want 200: %s", rec.Code, rec.Body)
			}
			got := decode[author.GenreBooks](t, rec)
			wantCount, wantTruncated := min(n, author.MaxBooks), n > author.MaxBooks
			var grouped []string
			for _, a := range got.Authors {
				grouped = append(grouped, bookIDs(a.Books)...)
			}
			slices.Sort(grouped)
			if len(grouped) != wantCount || !slices.Equal(grouped, ids[:wantCount]) || got.Truncated != wantTruncated {
				t.Errorf("got %d books, truncated %v; want the first %d by id, truncated %v", len(grouped), got.Truncated, wantCount, wantTruncated)
			}
			if names := []string{got.Authors[0].Name, got.Authors[1].Name, got.Authors[2].Name}; !slices.Equal(names, []string{"A", "B", "C"}) {
				t.Errorf("got authors %v, want A, B, C", names)
			}
			requestIDs, limits := fake.Requests()
			if len(requestIDs) > author.MaxBooks/100 {
				t.Errorf("asked the book service %d times, want at most %d", len(requestIDs), author.MaxBooks/100)
			}
			for i := range requestIDs {
				if requestIDs[i] != "rid-truncation" || limits[i] != "100" {
					t.Errorf("request %d carried request id %q and limit %q, want rid-truncation and 100", i, requestIDs[i], limits[i])
				}
			}
		})
	}
}

// TestBookServiceFailures stops, stalls or breaks the book service and checks that
// both endpoints that need it answer 503 upstream-unavailable, promptly, while the
// rest of the author service keeps working.
func TestBookServiceFailures(t *testing.T) {
	const hangGuard = 10 * time.Second
	cases := []struct {
		name  string
		start func(t *testing.T) (url string, arrived <-chan struct{})
	}{
		{"down", func(t *testing.T) (string, <-chan struct{}) { return closedURL(t), nil }},
		{"stalling", func(t *testing.T) (string, <-chan struct{}) {
			arrived := make(chan struct{}, 100)
			release := make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case arrived <- struct{}{}:
				default:
				}
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(ts.Close)
			t.Cleanup(func() { close(release) }) // runs first: no handler outlives the test
			return ts.URL, arrived
		}},
		{"failing", func(t *testing.T) (string, <-chan struct{}) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				problem.Write(w, r, problem.Problem{Type: problem.TypeInternal, Status: http.StatusInternalServerError})
			}))
			t.Cleanup(ts.Close)
			return ts.URL, nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, arrived := tc.start(t)
			s := newServer(t, openSQLite(t), booksAt(url))
			a := s.create(`{"name":"Still Here"}`)
			endpoints := []struct{ name, path string }{
				{"books of an author", "/authors/" + a.ID + "/books"},
				{"books of a genre", "/authors/books?genre=fantasy"},
			}
			for _, ep := range endpoints {
				path := ep.path
				t.Run(ep.name, func(t *testing.T) {
					done := make(chan *httptest.ResponseRecorder, 1)
					start := time.Now()
					go func() { done <- s.do("GET", path, "") }()
					if arrived != nil {
						select {
						case <-arrived: // the request is waiting on the book service now
						case <-time.After(hangGuard):
							t.Fatal("the book service was never asked")
						}
					}
					// Everything that does not need the book service keeps working meanwhile.
					if rec := s.do("GET", "/authors/"+a.ID, ""); rec.Code != http.StatusOK {
						t.Errorf("GET /authors/{id} meanwhile: got %d, want 200", rec.Code)
					}
					if rec := s.do("GET", "/authors", ""); rec.Code != http.StatusOK {
						t.Errorf("GET /authors meanwhile: got %d, want 200", rec.Code)
					}
					if rec := s.do("PATCH", "/authors/"+a.ID, `{"bio":"still writing"}`); rec.Code != http.StatusOK {
						t.Errorf("PATCH /authors/{id} meanwhile: got %d, want 200", rec.Code)
					}
					select {
					case rec := <-done:
						elapsed := time.Since(start)
						t.Logf("answered %d in %v", rec.Code, elapsed)
						p := wantProblem(t, rec, http.StatusServiceUnavailable, problem.TypeUpstreamUnavailable)
						if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(rec.Body.String(), "dial") {
							t.Errorf("the problem leaks an internal detail: %s", rec.Body)
						}
						if rec.Header().Get("Retry-After") == "" {
							t.Error("got no Retry-After header on 503")
						}
					case <-time.After(hangGuard):
						t.Fatalf("no answer within %v", hangGuard)
					}
				})
			}
		})
	}
}

// TestBookServiceRejection checks how a 400 of the book service is passed on: for the
// books of an author it answers the client's own limit or cursor, so it is the
// client's 400; for a genre every parameter was the author service's own, so the book
// service is failing.
func TestBookServiceRejection(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Problem{Type: problem.TypeMalformed, Status: http.StatusBadRequest,
			Detail: "cursor was not issued by this service", Errors: []fault.FieldError{{Field: "cursor", Message: "was not issued by this service"}}})
	}))
	t.Cleanup(ts.Close)
	s := newServer(t, openSQLite(t), booksAt(ts.URL))
	a := s.create(`{"name":"A"}`)

	p := wantProblem(t, s.do("GET", "/authors/"+a.ID+"/books?cursor=abc", ""), http.StatusBadRequest, problem.TypeMalformed, "cursor")
	if p.Detail != "cursor was not issued by this service" {
		t.Errorf("got detail %q, want the book service's", p.Detail)
	}
	wantProblem(t, s.do("GET", "/authors/books?genre=fantasy", ""), http.StatusServiceUnavailable, problem.TypeUpstreamUnavailable)
}
