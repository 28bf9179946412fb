package bookclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/author/bookclient"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
	"folio/internal/platform/resilient"
	"folio/internal/platform/rest/openapicheck"
	"folio/internal/platform/rest/resttest"
)

// bookOpenAPIFile is the book service's OpenAPI document, read as a file: the tests
// of one service import no other service's packages, yet the client must keep to
// what the book service publishes.
const bookOpenAPIFile = "../../book/httpapi/openapi.json"

// contractCheck is a transport that validates every response it carries against the
// book service's OpenAPI document.
type contractCheck struct {
	t    *testing.T
	doc  *openapicheck.Document
	next http.RoundTripper

	mu      sync.Mutex
	checked int
}

func newContractCheck(t *testing.T, serverURL string) *contractCheck {
	t.Helper()
	spec, err := os.ReadFile(bookOpenAPIFile)
	if err != nil {
		t.Fatalf("the book service's OpenAPI document: %v", err)
	}
	return &contractCheck{t: t, doc: openapicheck.Load(t, spec, serverURL), next: http.DefaultTransport}
}

func (c *contractCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	c.doc.Check(c.t, req, resp.StatusCode, resp.Header, body)
	c.mu.Lock()
	c.checked++
	c.mu.Unlock()
	return resp, nil
}

// contract is a book service that keeps to its API's rules (filters, paging, 400
// naming the parameter) and a client of it whose every answer is checked against
// the book service's OpenAPI document, with seven books of two authors and two
// genres in it.
type contract struct {
	client     *bookclient.Client
	all        []author.Book // by id
	alice, bob string
}

func newContract(t *testing.T) *contract {
	t.Helper()
	books, url := authortest.StartBookService(t)
	check := newContractCheck(t, url)
	t.Cleanup(func() {
		check.mu.Lock()
		defer check.mu.Unlock()
		if check.checked == 0 {
			t.Error("no response was checked against the OpenAPI document")
		}
		t.Logf("%d responses matched the book OpenAPI document", check.checked)
	})
	// The client reads with no token: reads are public.
	c := &contract{client: bookclient.New(url, &http.Client{Transport: check, Timeout: 10 * time.Second}),
		alice: "0190c5a6-0000-7000-8000-000000000001", bob: "0190c5a6-0000-7000-8000-000000000002"}
	for i := range 7 {
		authorID, genre := c.alice, "fantasy"
		if i%2 == 1 {
			authorID = c.bob
		}
		if i%3 == 2 {
			genre = "science-fiction"
		}
		b := books.Add(authorID, genre)
		if i == 0 {
			b.ISBN, b.PublishedYear = new("9780306406157"), new(1999)
			books.Put(b)
		}
		c.all = append(c.all, b)
	}
	return c
}

// where returns the ids of the books that keep keeps, in id order.
func (c *contract) where(keep func(author.Book) bool) []string {
	var out []string
	for _, b := range c.all {
		if keep(b) {
			out = append(out, b.ID)
		}
	}
	return out
}

var ids = authortest.BookIDs

func TestListBooksFiltersByGenreAndAuthor(t *testing.T) {
	c := newContract(t)
	ctx := context.Background()
	all, alice, bob, where := c.all, c.alice, c.bob, c.where
	client := c.client
	tests := []struct {
		name   string
		params author.BookSearch
		want   []string
	}{
		{"all", author.BookSearch{}, ids(all)},
		{"genre", author.BookSearch{Genre: "fantasy"}, where(func(b author.Book) bool { return b.Genre == "fantasy" })},
		{"author", author.BookSearch{AuthorID: bob}, where(func(b author.Book) bool { return b.AuthorID == bob })},
		{"genre and author", author.BookSearch{Genre: "science-fiction", AuthorID: alice},
			where(func(b author.Book) bool { return b.Genre == "science-fiction" && b.AuthorID == alice })},
		{"no match", author.BookSearch{Genre: "poetry"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := client.ListBooks(ctx, tt.params)
			if err != nil {
				t.Fatalf("ListBooks: %v", err)
			}
			if got := ids(page.Items); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("got ids %v, want %v", got, tt.want)
			}
			if page.Items == nil {
				t.Errorf("got nil Items, want an empty slice")
			}
			if page.NextCursor != nil {
				t.Errorf("got next cursor %q on the only page, want none", *page.NextCursor)
			}
		})
	}
}

func TestListBooksReadsEveryField(t *testing.T) {
	c := newContract(t)
	ctx := context.Background()
	all, alice, client := c.all, c.alice, c.client
	page, err := client.ListBooks(ctx, author.BookSearch{Limit: 1})
	if err != nil {
		t.Fatalf("ListBooks: %v", err)
	}
	got, want := page.Items[0], all[0]
	if got.ID != want.ID || got.Title != want.Title || got.AuthorID != alice || got.Genre != "fantasy" ||
		got.ISBN == nil || *got.ISBN != "9780306406157" || got.PublishedYear == nil || *got.PublishedYear != 1999 || got.Version != 1 || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.UpdatedAt.Equal(want.UpdatedAt) || got.CreatedAt.IsZero() {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestListBooksWalksEveryPage(t *testing.T) {
	c := newContract(t)
	ctx := context.Background()
	all, client, where := c.all, c.client, c.where
	for _, limit := range []int{1, 2, 3, 100} {
		t.Run(fmt.Sprintf("paging limit %d", limit), func(t *testing.T) {
			var got []string
			p := author.BookSearch{Limit: limit}
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("more pages than books: the walk does not end")
				}
				page, err := client.ListBooks(ctx, p)
				if err != nil {
					t.Fatalf("ListBooks: %v", err)
				}
				if len(page.Items) > limit {
					t.Fatalf("got %d items, want at most %d", len(page.Items), limit)
				}
				got = append(got, ids(page.Items)...)
				if page.NextCursor == nil {
					break
				}
				p.Cursor = *page.NextCursor
			}
			if !slices.Equal(got, ids(all)) {
				t.Errorf("walk got %v, want %v", got, ids(all))
			}
		})
	}

	t.Run("paging with a filter", func(t *testing.T) {
		want := where(func(b author.Book) bool { return b.Genre == "fantasy" })
		var got []string
		p := author.BookSearch{Genre: "fantasy", Limit: 2}
		for range len(all) {
			page, err := client.ListBooks(ctx, p)
			if err != nil {
				t.Fatalf("ListBooks: %v", err)
			}
			got = append(got, ids(page.Items)...)
			if page.NextCursor == nil {
				break
			}
			p.Cursor = *page.NextCursor
		}
		if !slices.Equal(got, want) {
			t.Errorf("walk got %v, want %v", got, want)
		}
	})
}

// TestListBooksRejectionIsMalformed: a 400 of the book service is a Malformed error
// with its detail and the field it names.
func TestListBooksRejectionIsMalformed(t *testing.T) {
	c := newContract(t)
	ctx := context.Background()
	client := c.client
	malformed := []struct {
		name   string
		params author.BookSearch
		field  string
	}{
		{"bad cursor", author.BookSearch{Cursor: "not-a-cursor"}, "cursor"},
		{"limit too large", author.BookSearch{Limit: 101}, "limit"},
		{"negative limit", author.BookSearch{Limit: -1}, "limit"},
		{"bad genre", author.BookSearch{Genre: "Not A Slug"}, "genre"},
		{"bad author id", author.BookSearch{AuthorID: "42"}, "author_id"},
	}
	for _, tt := range malformed {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.ListBooks(ctx, tt.params)
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Malformed {
				t.Fatalf("got error %v, want a Malformed fault", err)
			}
			if fe.Message == "" || len(fe.Fields) == 0 || fe.Fields[0].Field != tt.field {
				t.Errorf("got message %q fields %+v, want the book service's detail naming %q", fe.Message, fe.Fields, tt.field)
			}
		})
	}
}

// TestListBooksSendsRequestID: through the resilient client a deployed service gives
// it, a call carries the id of the request being served.
func TestListBooksSendsRequestID(t *testing.T) {
	got := make(chan string, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(httpserver.RequestIDHeader)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[],"next_cursor":null}`)
	}))
	defer ts.Close()
	ctx := logging.WithRequestID(context.Background(), "req-123")
	hc := resilient.NewClient(resilient.DefaultConfig("book"), prometheus.NewRegistry())
	if _, err := bookclient.New(ts.URL, hc).ListBooks(ctx, author.BookSearch{}); err != nil {
		t.Fatalf("ListBooks: %v", err)
	}
	if id := <-got; id != "req-123" {
		t.Errorf("got X-Request-ID %q, want %q", id, "req-123")
	}
}

func TestListBooksUnavailable(t *testing.T) {
	closedURL := resttest.ClosedURL(t, "http")

	answer := func(status int, contentType, body string) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	tests := []struct {
		name string
		url  string
	}{
		{"connection refused", closedURL},
		{"500", answer(http.StatusInternalServerError, "application/problem+json", `{"type":"/problems/internal","title":"x","status":500}`)},
		{"503", answer(http.StatusServiceUnavailable, "text/plain", "down")},
		{"404 from a wrong base URL", answer(http.StatusNotFound, "text/plain", "404 page not found")},
		{"400 without a problem", answer(http.StatusBadRequest, "text/html", "<html>bad</html>")},
		{"not JSON", answer(http.StatusOK, "application/json", "{")},
		{"not JSON content type", answer(http.StatusOK, "text/html", "<html></html>")},
		{"too large", answer(http.StatusOK, "application/json", `{"items":[],"next_cursor":null,"x":"`+strings.Repeat("x", 5<<20)+`"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := resilient.NewClient(resilient.DefaultConfig("book"), prometheus.NewRegistry())
			_, err := bookclient.New(tt.url, hc).ListBooks(context.Background(), author.BookSearch{Genre: "fantasy"})
			if k := fault.KindOf(err); k != fault.Unavailable {
				t.Errorf("got error %v (kind %d), want kind Unavailable", err, k)
			}
		})
	}

	t.Run("deadline", func(t *testing.T) {
		release := make(chan struct{})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(ts.Close)
		t.Cleanup(func() { close(release) })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		hc := resilient.NewClient(resilient.DefaultConfig("book"), prometheus.NewRegistry())
		_, err := bookclient.New(ts.URL, hc).ListBooks(ctx, author.BookSearch{})
		if k := fault.KindOf(err); k != fault.Unavailable {
			t.Errorf("got error %v (kind %d), want kind Unavailable", err, k)
		}
	})
}

// TestListBooksRevalidates: an IfNoneMatch is sent as If-None-Match, and the 304 it
// earns is a listing NotModified with the tag; the tag of a 200 is kept; a 304 to a
// request that named no tag is a book service that cannot be used.
func TestListBooksRevalidates(t *testing.T) {
	const tag = `W/"g1-abc"`
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", tag)
		if r.Header.Get("If-None-Match") == tag || r.URL.Query().Get("genre") == "broken" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[],"next_cursor":null}`)
	}))
	defer ts.Close()
	client := bookclient.New(ts.URL, ts.Client())
	ctx := context.Background()

	page, err := client.ListBooks(ctx, author.BookSearch{Genre: "fantasy"})
	if err != nil || page.NotModified || page.ETag != tag {
		t.Fatalf("first listing: %+v, %v; want a listing with ETag %s", page, err, tag)
	}
	page, err = client.ListBooks(ctx, author.BookSearch{Genre: "fantasy", IfNoneMatch: tag})
	if err != nil || !page.NotModified || page.ETag != tag || len(page.Items) != 0 {
		t.Fatalf("revalidation: %+v, %v; want NotModified with ETag %s", page, err, tag)
	}
	if _, err := client.ListBooks(ctx, author.BookSearch{Genre: "broken"}); fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("a 304 to a request without If-None-Match: got %v, want Unavailable", err)
	}
}
