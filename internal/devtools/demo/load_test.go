package demo

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
)

// countItems walks every page of a list and returns how many items it holds.
func countItems(t *testing.T, listURL string) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		u := listURL + "?limit=100"
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor *string           `json:"next_cursor"`
		}
		getJSON(t, u, &page)
		n += len(page.Items)
		if page.NextCursor == nil {
			return n
		}
		cursor = *page.NextCursor
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %s, want 200 OK", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// catalogueSize returns the number of authors and books, and the books of genre.
func catalogueSize(t *testing.T, genre string) (authors, books, ofGenre int) {
	t.Helper()
	all, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		books += len(a.Books)
		for _, b := range a.Books {
			if b.Genre == genre {
				ofGenre++
			}
		}
	}
	return len(all), books, ofGenre
}

func TestLoadIntoRealServices(t *testing.T) {
	svc := startServices(t)
	bookURL, authorURL := svc.bookURL, svc.authorURL
	wantAuthors, wantBooks, wantPoetry := catalogueSize(t, "poetry")
	ctx := context.Background()

	stats, err := Load(ctx, bookURL, authorURL, svc.editor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Authors != wantAuthors || stats.Books != wantBooks || stats.AuthorsReplayed != 0 || stats.BooksReplayed != 0 {
		t.Errorf("first load: got %+v, want %d authors and %d books created, none replayed", stats, wantAuthors, wantBooks)
	}
	t.Logf("loaded %d authors and %d books in %s", stats.Authors, stats.Books, stats.Elapsed)

	check := func(when string) {
		t.Helper()
		if got := countItems(t, authorURL+"/authors"); got != wantAuthors {
			t.Errorf("%s: the author service holds %d authors, want %d", when, got, wantAuthors)
		}
		if got := countItems(t, bookURL+"/books"); got != wantBooks {
			t.Errorf("%s: the book service holds %d books, want %d", when, got, wantBooks)
		}
	}
	check("after the first load")

	// The author service's grouping of a genre sees every poetry book.
	var grouped struct {
		Genre   string `json:"genre"`
		Authors []struct {
			Name  string            `json:"name"`
			Books []json.RawMessage `json:"books"`
		} `json:"authors"`
	}
	getJSON(t, authorURL+"/authors/books?genre=poetry", &grouped)
	n := 0
	for _, a := range grouped.Authors {
		n += len(a.Books)
	}
	if grouped.Genre != "poetry" || n != wantPoetry {
		t.Errorf("GET /authors/books?genre=poetry: got genre %q with %d books, want poetry with %d", grouped.Genre, n, wantPoetry)
	}

	// A second load is answered from the idempotency keys and creates nothing.
	stats, err = Load(ctx, bookURL, authorURL, svc.editor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Authors != 0 || stats.Books != 0 || stats.AuthorsReplayed != wantAuthors || stats.BooksReplayed != wantBooks {
		t.Errorf("second load: got %+v, want nothing created and everything replayed", stats)
	}
	check("after the second load")
}

// cancelAfter is a transport that cancels a context once n books were created.
type cancelAfter struct {
	n      int64
	cancel context.CancelFunc
	books  atomic.Int64
}

func (c *cancelAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.URL.Path == "/books" && resp.StatusCode == http.StatusCreated && c.books.Add(1) == c.n {
		c.cancel()
	}
	return resp, err
}

// TestLoadResumesAfterInterruption cancels a load while requests are in flight and
// loads again: every author and book must then exist exactly once. (Were Load to cut
// off a request the book service had already committed, the service would free its
// idempotency key without recording the answer, and the second load would create
// that book twice.)
func TestLoadResumesAfterInterruption(t *testing.T) {
	svc := startServices(t)
	bookURL, authorURL := svc.bookURL, svc.authorURL
	wantAuthors, wantBooks, _ := catalogueSize(t, "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt := &cancelAfter{n: 100, cancel: cancel}
	if _, err := Load(ctx, bookURL, authorURL, svc.editor, &http.Client{Transport: rt}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted load: got error %v, want context.Canceled", err)
	}

	stats, err := Load(context.Background(), bookURL, authorURL, svc.editor, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Authors+stats.AuthorsReplayed != wantAuthors || stats.Books+stats.BooksReplayed != wantBooks || stats.BooksReplayed < 100 {
		t.Errorf("resumed load: got %+v, want %d authors and %d books in all, at least 100 books replayed", stats, wantAuthors, wantBooks)
	}
	if got := countItems(t, authorURL+"/authors"); got != wantAuthors {
		t.Errorf("the author service holds %d authors, want %d", got, wantAuthors)
	}
	if got := countItems(t, bookURL+"/books"); got != wantBooks {
		t.Errorf("the book service holds %d books, want %d", got, wantBooks)
	}
}

// fakeToken is the token Load is given for the fake services.
const fakeToken = "a-token"

// fakeService answers POSTs with a fixed status and body, counting them and checking
// that each carries an Idempotency-Key and the token.
func fakeService(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if k := r.Header.Get("Idempotency-Key"); !strings.HasPrefix(k, "demo-") {
			once.Do(func() { t.Errorf("%s %s without a demo Idempotency-Key (got %q)", r.Method, r.URL.Path, k) })
		}
		if a := r.Header.Get("Authorization"); a != "Bearer "+fakeToken {
			once.Do(func() { t.Errorf("%s %s: got Authorization %q, want Bearer %s", r.Method, r.URL.Path, a, fakeToken) })
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestLoadFailsOnAnErrorAnswer(t *testing.T) {
	authorOK := func(t *testing.T) *httptest.Server {
		srv, _ := fakeService(t, http.StatusCreated, `{"id":"01890a5d-ac96-774b-bcce-b302099a8057","name":"x"}`)
		return srv
	}
	tests := []struct {
		name       string
		authors    func(t *testing.T) (*httptest.Server, *atomic.Int64)
		books      func(t *testing.T) (*httptest.Server, *atomic.Int64)
		wantErr    string
		maxAuthors int64 // requests the author service may see before Load gives up
	}{
		{
			name: "author service fails",
			authors: func(t *testing.T) (*httptest.Server, *atomic.Int64) {
				return fakeService(t, http.StatusInternalServerError, `{"type":"/problems/internal","title":"Internal Server Error","status":500,"detail":"it broke"}`)
			},
			books:      func(t *testing.T) (*httptest.Server, *atomic.Int64) { return fakeService(t, http.StatusCreated, `{}`) },
			wantErr:    "POST /authors answered 500 Internal Server Error: it broke",
			maxAuthors: Workers,
		},
		{
			name:    "book rejected",
			authors: func(t *testing.T) (*httptest.Server, *atomic.Int64) { return authorOK(t), nil },
			books: func(t *testing.T) (*httptest.Server, *atomic.Int64) {
				return fakeService(t, http.StatusUnprocessableEntity, `{"type":"/problems/validation","status":422,"detail":"the request breaks one or more rules","errors":[{"field":"genre","message":"is not a slug"}]}`)
			},
			wantErr: "POST /books answered 422 Unprocessable Entity: the request breaks one or more rules (genre: is not a slug)",
		},
		{
			name: "author created without an id",
			authors: func(t *testing.T) (*httptest.Server, *atomic.Int64) {
				return fakeService(t, http.StatusCreated, `{"name":"x"}`)
			},
			books:   func(t *testing.T) (*httptest.Server, *atomic.Int64) { return fakeService(t, http.StatusCreated, `{}`) },
			wantErr: "POST /authors answered without an id",
		},
		{
			name:    "book answer not JSON",
			authors: func(t *testing.T) (*httptest.Server, *atomic.Int64) { return authorOK(t), nil },
			books: func(t *testing.T) (*httptest.Server, *atomic.Int64) {
				return fakeService(t, http.StatusBadRequest, "<html>proxy error</html>")
			},
			wantErr: "POST /books answered 400 Bad Request: <html>proxy error</html>",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authors, authorCalls := tt.authors(t)
			books, _ := tt.books(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := Load(ctx, books.URL, authors.URL, fakeToken, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.maxAuthors > 0 && authorCalls.Load() > tt.maxAuthors {
				t.Errorf("the author service got %d requests; Load should stop at the first failure (at most %d in flight)", authorCalls.Load(), tt.maxAuthors)
			}
		})
	}
}

// TestLoadNeedsAnEditorsToken loads into the real services with tokens they must
// refuse: Load fails at once, naming the refusal, and nothing is created.
func TestLoadNeedsAnEditorsToken(t *testing.T) {
	svc := startServices(t)
	for _, tt := range []struct{ name, token, wantErr string }{
		{"no token", "", "POST /authors answered 401 Unauthorized"},
		{"a token from a foreign key", authntest.New(t).Token("demo-editor", authn.RoleEditor), "POST /authors answered 401 Unauthorized"},
		{"a reader's token", svc.iss.Token("demo-reader", authn.RoleReader), "POST /authors answered 403 Forbidden"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stats, err := Load(ctx, svc.bookURL, svc.authorURL, tt.token, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if stats.Authors+stats.AuthorsReplayed+stats.Books+stats.BooksReplayed != 0 {
				t.Errorf("got %+v, want nothing loaded", stats)
			}
		})
	}
	if got := countItems(t, svc.authorURL+"/authors"); got != 0 {
		t.Errorf("the author service holds %d authors, want none", got)
	}
}
