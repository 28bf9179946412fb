package bookclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/book"
	"folio/internal/bookclient"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/logging"
	"folio/internal/platform/outbox"
	"folio/internal/platform/resilient"
	"folio/internal/platform/rest/openapicheck"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/sqldb/sqldbtest"
)

// everyAuthor is the book service's view of authors in these tests: every id exists.
type everyAuthor struct{}

func (everyAuthor) Exists(context.Context, string) (bool, error) { return true, nil }

// startBookService serves the real book service handler, chassis included, over a
// new SQLite database, and returns it with an editor's token it accepts.
func startBookService(t *testing.T) (ts *httptest.Server, editor string) {
	t.Helper()
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "book.db"), book.Migrations)
	if err := outbox.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if err := idempotency.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	iss := authntest.New(t)
	reg := prometheus.NewRegistry()
	verifier := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, http.DefaultClient, log, reg)
	mux := http.NewServeMux()
	book.Routes(mux, book.NewService(book.NewSQLStore(db), everyAuthor{}), idempotency.New(db, log), verifier, log)
	srv := httpserver.New(httpserver.Config{}, log, reg, mux, book.OpenAPI, db.PingContext)
	ts = httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, iss.Token("editor-1", authn.RoleEditor)
}

// createBook creates a book through the book service's API, as the editor of token,
// and returns it.
func createBook(t *testing.T, baseURL, token string, fields map[string]any) bookclient.Book {
	t.Helper()
	body, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+"/books", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", authntest.Bearer(token))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bookclient.Book
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /books: got %s, want 201: %s", resp.Status, msg)
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("POST /books: %v", err)
	}
	return b
}

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
	return &contractCheck{t: t, doc: openapicheck.Load(t, book.OpenAPI, serverURL), next: http.DefaultTransport}
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

func TestListBooksMatchesBookServiceContract(t *testing.T) {
	// The client reads with no token: reads are public.
	ts, editor := startBookService(t)
	check := newContractCheck(t, ts.URL)
	client := bookclient.New(ts.URL, &http.Client{Transport: check, Timeout: 10 * time.Second})
	ctx := context.Background()

	alice, bob := "0190c5a6-0000-7000-8000-000000000001", "0190c5a6-0000-7000-8000-000000000002"
	var all []bookclient.Book
	for i := range 7 {
		author, genre := alice, "fantasy"
		if i%2 == 1 {
			author = bob
		}
		if i%3 == 2 {
			genre = "science-fiction"
		}
		fields := map[string]any{"title": fmt.Sprintf("Book %d", i), "author_id": author, "genre": genre}
		if i == 0 {
			fields["isbn"], fields["published_year"] = "0-306-40615-2", 1999
		}
		all = append(all, createBook(t, ts.URL, editor, fields))
	}
	ids := func(books []bookclient.Book) []string {
		out := make([]string, len(books))
		for i, b := range books {
			out[i] = b.ID
		}
		return out
	}
	where := func(keep func(bookclient.Book) bool) []string {
		var out []string
		for _, b := range all {
			if keep(b) {
				out = append(out, b.ID)
			}
		}
		return out
	}

	tests := []struct {
		name   string
		params bookclient.ListParams
		want   []string
	}{
		{"all", bookclient.ListParams{}, ids(all)},
		{"genre", bookclient.ListParams{Genre: "fantasy"}, where(func(b bookclient.Book) bool { return b.Genre == "fantasy" })},
		{"author", bookclient.ListParams{AuthorID: bob}, where(func(b bookclient.Book) bool { return b.AuthorID == bob })},
		{"genre and author", bookclient.ListParams{Genre: "science-fiction", AuthorID: alice},
			where(func(b bookclient.Book) bool { return b.Genre == "science-fiction" && b.AuthorID == alice })},
		{"no match", bookclient.ListParams{Genre: "poetry"}, nil},
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

	t.Run("fields", func(t *testing.T) {
		page, err := client.ListBooks(ctx, bookclient.ListParams{Limit: 1})
		if err != nil {
			t.Fatalf("ListBooks: %v", err)
		}
		got, want := page.Items[0], all[0]
		if got.ID != want.ID || got.Title != "Book 0" || got.AuthorID != alice || got.Genre != "fantasy" ||
			got.ISBN == nil || *got.ISBN != "9780306406157" || got.PublishedYear == nil || *got.PublishedYear != 1999 || got.Version != 1 || !got.CreatedAt.Equal(want.CreatedAt) ||
			!got.UpdatedAt.Equal(want.UpdatedAt) || got.CreatedAt.IsZero() {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})

	for _, limit := range []int{1, 2, 3, 100} {
		t.Run(fmt.Sprintf("paging limit %d", limit), func(t *testing.T) {
			var got []string
			p := bookclient.ListParams{Limit: limit}
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
		want := where(func(b bookclient.Book) bool { return b.Genre == "fantasy" })
		var got []string
		p := bookclient.ListParams{Genre: "fantasy", Limit: 2}
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

	malformed := []struct {
		name   string
		params bookclient.ListParams
		field  string
	}{
		{"bad cursor", bookclient.ListParams{Cursor: "not-a-cursor"}, "cursor"},
		{"limit too large", bookclient.ListParams{Limit: 101}, "limit"},
		{"negative limit", bookclient.ListParams{Limit: -1}, "limit"},
		{"bad genre", bookclient.ListParams{Genre: "Not A Slug"}, "genre"},
		{"bad author id", bookclient.ListParams{AuthorID: "42"}, "author_id"},
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

	if check.checked == 0 {
		t.Fatal("no response was checked against the OpenAPI document")
	}
	t.Logf("%d responses matched the book OpenAPI document", check.checked)
}

func TestListBooksSendsRequestID(t *testing.T) {
	got := make(chan string, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(httpserver.RequestIDHeader)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[],"next_cursor":null}`)
	}))
	defer ts.Close()
	ctx := logging.WithRequestID(context.Background(), "req-123")
	if _, err := bookclient.New(ts.URL, ts.Client()).ListBooks(ctx, bookclient.ListParams{}); err != nil {
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
			_, err := bookclient.New(tt.url, hc).ListBooks(context.Background(), bookclient.ListParams{Genre: "fantasy"})
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
		_, err := bookclient.New(ts.URL, hc).ListBooks(ctx, bookclient.ListParams{})
		if k := fault.KindOf(err); k != fault.Unavailable {
			t.Errorf("got error %v (kind %d), want kind Unavailable", err, k)
		}
	})
}
