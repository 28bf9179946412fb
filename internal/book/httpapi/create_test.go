package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
)

// TestBookCreateAnswers201WithLocation checks the answer to a create: the book normalised, its Location, ETag and timestamps, null for the optional fields left out.
func TestBookCreateAnswers201WithLocation(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		before := time.Now().UTC().Add(-time.Second)
		resp := s.do(t, http.MethodPost, "/books", `{"title":"  Dune \n","author_id":"`+authorA+
			`","genre":"science-fiction","isbn":"0-306-40615-2","published_year":1965}`)
		if resp.Status != http.StatusCreated {
			t.Fatalf("got %d %s, want 201", resp.Status, resp.Body)
		}
		b := resp.book(t)
		if !id.Valid(b.ID) {
			t.Errorf("got id %q, want a canonical UUID", b.ID)
		}
		if got, want := resp.Header.Get("Location"), "/books/"+b.ID; got != want {
			t.Errorf("Location: got %q, want %q", got, want)
		}
		if got := resp.Header.Get("ETag"); got != `"1"` {
			t.Errorf(`ETag: got %q, want "1"`, got)
		}
		want := book.Book{ID: b.ID, Title: "Dune", AuthorID: authorA, Genre: "science-fiction",
			ISBN: ptr("9780306406157"), PublishedYear: ptr(1965), Version: 1, CreatedAt: b.CreatedAt, UpdatedAt: b.CreatedAt}
		if diff := sameBook(b, want); diff != "" {
			t.Error(diff)
		}
		if b.CreatedAt.Before(before) || b.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("created_at: got %v, want about now", b.CreatedAt)
		}
		var raw map[string]any
		if err := json.Unmarshal(resp.Body, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"created_at", "updated_at"} {
			v, _ := raw[k].(string)
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil || !strings.HasSuffix(v, "Z") {
				t.Errorf("%s: got %q, want an RFC 3339 UTC timestamp", k, v)
			}
		}
		if diff := sameBook(s.get(t, b.ID), b); diff != "" {
			t.Errorf("get after create: %s", diff)
		}

		// Optional fields left out are null, not missing.
		resp = s.do(t, http.MethodPost, "/books", mustJSON(t, fields("science-fiction")))
		if resp.Status != http.StatusCreated {
			t.Fatalf("got %d %s, want 201", resp.Status, resp.Body)
		}
		for _, k := range []string{`"isbn":null`, `"published_year":null`} {
			if !bytes.Contains(resp.Body, []byte(k)) {
				t.Errorf("got %s, want it to hold %s", resp.Body, k)
			}
		}
	})
}

func TestBookGetAnswersETagAndHonoursIfNoneMatch(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		b := s.create(t, fields("get-test"))
		resp := s.do(t, http.MethodGet, "/books/"+b.ID, "")
		if diff := sameBook(resp.book(t), b); resp.Status != http.StatusOK || diff != "" {
			t.Fatalf("got %d %s, want 200 and the book", resp.Status, diff)
		}
		if got := resp.Header.Get("ETag"); got != `"1"` {
			t.Errorf(`ETag: got %q, want "1"`, got)
		}

		tests := []struct {
			ifNoneMatch string
			want        int
		}{
			{`"1"`, http.StatusNotModified},
			{`W/"1"`, http.StatusNotModified},
			{`"7", "1"`, http.StatusNotModified},
			{`*`, http.StatusNotModified},
			{`"2"`, http.StatusOK},
			{`1`, http.StatusOK},
		}
		for _, tt := range tests {
			t.Run(tt.ifNoneMatch, func(t *testing.T) {
				resp := s.do(t, http.MethodGet, "/books/"+b.ID, "", "If-None-Match", tt.ifNoneMatch)
				if resp.Status != tt.want {
					t.Fatalf("got %d, want %d", resp.Status, tt.want)
				}
				if got := resp.Header.Get("ETag"); got != `"1"` {
					t.Errorf(`ETag: got %q, want "1"`, got)
				}
				if tt.want == http.StatusNotModified && len(resp.Body) != 0 {
					t.Errorf("got body %q with 304, want none", resp.Body)
				}
			})
		}
	})
}

func TestBookCreateWithAnIdempotencyKey(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		key := "create-" + id.New()
		body := mustJSON(t, fields("idem-same"))
		first := s.do(t, http.MethodPost, "/books", body, idempotency.Header, key)
		if first.Status != http.StatusCreated {
			t.Fatalf("first: got %d %s, want 201", first.Status, first.Body)
		}
		b := first.book(t)
		for i := range 2 {
			again := s.do(t, http.MethodPost, "/books", body, idempotency.Header, key)
			if again.Status != http.StatusCreated {
				t.Fatalf("repeat %d: got %d %s, want 201", i+1, again.Status, again.Body)
			}
			if diff := sameBook(again.book(t), b); diff != "" {
				t.Errorf("repeat %d: %s", i+1, diff)
			}
			for _, h := range []string{"Location", "ETag"} {
				if again.Header.Get(h) != first.Header.Get(h) {
					t.Errorf("repeat %d: %s: got %q, want %q", i+1, h, again.Header.Get(h), first.Header.Get(h))
				}
			}
		}
		if got := s.do(t, http.MethodGet, "/books?genre=idem-same", "").page(t); !slices.Equal(ids(got.Items), []string{b.ID}) {
			t.Errorf("got books %v, want only %s", ids(got.Items), b.ID)
		}

		p := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-same", "title", "Other")), idempotency.Header, key).
			problem(t, http.StatusUnprocessableEntity)
		if !slices.Equal(p.fields(), []string{idempotency.Header}) {
			t.Errorf("same key, other body: got errors naming %v, want [%s]", p.fields(), idempotency.Header)
		}

		// Without a key, or with another key, the same body creates another book.
		s.create(t, fields("idem-same"))
		s.create(t, fields("idem-same"), idempotency.Header, key+"-other")
		if got := s.do(t, http.MethodGet, "/books?genre=idem-same", "").page(t); len(got.Items) != 3 {
			t.Errorf("got %d books, want 3", len(got.Items))
		}

		t.Run("key length", func(t *testing.T) {
			p := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-long")), idempotency.Header, strings.Repeat("k", 201)).
				problem(t, http.StatusBadRequest)
			if !slices.Equal(p.fields(), []string{idempotency.Header}) {
				t.Errorf("got errors naming %v, want [%s]", p.fields(), idempotency.Header)
			}
			s.create(t, fields("idem-long"), idempotency.Header, strings.Repeat("k", 200))
		})

		t.Run("key reusable after a failure", func(t *testing.T) {
			key := "retry-" + id.New()
			s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-retry", "title", nil)), idempotency.Header, key).
				problem(t, http.StatusUnprocessableEntity)
			b := s.create(t, fields("idem-retry"), idempotency.Header, key)
			again := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-retry")), idempotency.Header, key)
			if again.Status != http.StatusCreated || again.book(t).ID != b.ID {
				t.Errorf("repeat of the fixed request: got %d %s, want 201 with id %s", again.Status, again.Body, b.ID)
			}
			if got := s.do(t, http.MethodGet, "/books?genre=idem-retry", "").page(t); len(got.Items) != 1 {
				t.Errorf("got %d books, want 1", len(got.Items))
			}
		})

		t.Run("key that is not text", func(t *testing.T) {
			resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-binary")), idempotency.Header, "\xff\xfe")
			resp.problem(t, http.StatusBadRequest)
		})
	})
}

func TestBookDuplicateISBNAnswers409(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		isbn10 := "0-8044-2957-X"
		first := s.create(t, fields("dup-isbn", "isbn", isbn10))
		if first.ISBN == nil || *first.ISBN != "9780804429573" {
			t.Fatalf("got isbn %s, want 9780804429573", show(first.ISBN))
		}
		p := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("dup-isbn", "isbn", "978-0-8044-2957-3"))).problem(t, http.StatusConflict)
		p.wantType(t, "/conflict")
		if !slices.Equal(p.fields(), []string{"isbn"}) {
			t.Errorf("got errors naming %v, want [isbn]", p.fields())
		}
		other := s.create(t, fields("dup-isbn"))
		s.do(t, http.MethodPut, "/books/"+other.ID, mustJSON(t, fields("dup-isbn", "isbn", isbn10))).problem(t, http.StatusConflict)
		s.do(t, http.MethodPatch, "/books/"+other.ID, `{"isbn":"9780804429573"}`).problem(t, http.StatusConflict)
		// A book may keep its own ISBN.
		if resp := s.do(t, http.MethodPut, "/books/"+first.ID, mustJSON(t, fields("dup-isbn", "isbn", isbn10, "title", "Kept"))); resp.Status != http.StatusOK {
			t.Errorf("put keeping its own isbn: got %d %s, want 200", resp.Status, resp.Body)
		}
	})
}

// TestBookWritesWhileTheAuthorServiceIsDown checks that a write needing the author service answers 503 while it is down, and that books of an author confirmed before can still be written.
func TestBookWritesWhileTheAuthorServiceIsDown(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		newAuthor := id.New()
		s.authors.Add(newAuthor)
		confirmed := s.create(t, fields("authors-down")) // authorA is confirmed now
		s.authors.SetDown(true)
		defer s.authors.SetDown(false)

		resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("authors-down", "author_id", newAuthor)))
		p := resp.problem(t, http.StatusServiceUnavailable)
		p.wantType(t, "/upstream-unavailable")
		if resp.Header.Get("Retry-After") == "" {
			t.Error("got no Retry-After with 503")
		}
		s.do(t, http.MethodPatch, "/books/"+confirmed.ID, `{"author_id":"`+newAuthor+`"}`).
			problem(t, http.StatusServiceUnavailable).wantType(t, "/upstream-unavailable")

		// An author confirmed before needs no call: books of it can still be written.
		s.create(t, fields("authors-down"))
		if resp := s.do(t, http.MethodPatch, "/books/"+confirmed.ID, `{"title":"Still writable"}`); resp.Status != http.StatusOK {
			t.Errorf("patch keeping a confirmed author: got %d %s, want 200", resp.Status, resp.Body)
		}

		s.authors.SetDown(false)
		s.create(t, fields("authors-down", "author_id", newAuthor))
	})
}
