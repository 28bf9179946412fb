package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestGenreListingETag: a listing narrowed to a genre carries an ETag that answers
// 304 while nothing in the genre changed, and changes with every write that touches
// the genre (a create, an edit, a move in or out, a delete), on every page, and not
// with writes to other genres. The author service's genre call relies on this.
func TestGenreListingETag(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		first := s.create(t, fields("etag-x"))
		s.create(t, fields("etag-x"))
		other := s.create(t, fields("etag-y"))

		const page1, page2 = "/books?genre=etag-x&limit=1", "/books?genre=etag-x&limit=1&cursor="
		tagOf := func(target string) string {
			t.Helper()
			resp := s.do(t, http.MethodGet, target, "")
			tag := resp.Header.Get("ETag")
			if resp.Status != http.StatusOK || tag == "" {
				t.Fatalf("GET %s: got %d with ETag %q, want 200 with one", target, resp.Status, tag)
			}
			return tag
		}
		notModified := func(target, tag string) bool {
			t.Helper()
			resp := s.do(t, http.MethodGet, target, "", "If-None-Match", tag)
			switch resp.Status {
			case http.StatusNotModified:
				if len(resp.Body) != 0 || resp.Header.Get("ETag") != tag {
					t.Fatalf("304 with body %q and ETag %q, want no body and %q", resp.Body, resp.Header.Get("ETag"), tag)
				}
				return true
			case http.StatusOK:
				return false
			}
			t.Fatalf("GET %s: got %d %s", target, resp.Status, resp.Body)
			return false
		}

		tag := tagOf(page1)
		if !notModified(page1, tag) {
			t.Fatal("the listing's own ETag did not answer 304")
		}
		if got := tagOf("/books?genre=etag-x&limit=2"); got == tag {
			t.Errorf("another limit gave the same ETag %s", got)
		}
		if tagOf("/books?genre=etag-y") == "" || !notModified(page1, tag) {
			t.Fatal("reading another genre changed the tag")
		}
		if got := s.do(t, http.MethodGet, "/books", "").Header.Get("ETag"); got != "" {
			t.Errorf("a listing of every genre has ETag %q, want none", got)
		}

		// Each write below must change the tag of genre etag-x, page 1 and page 2 alike.
		cursor := s.do(t, http.MethodGet, page1, "").page(t).NextCursor
		if cursor == nil {
			t.Fatal("page 1 of two books has no next cursor")
		}
		tag2 := tagOf(page2 + *cursor)
		writes := []struct {
			name  string
			write func()
		}{
			{"create in the genre", func() { s.create(t, fields("etag-x")) }},
			{"edit in the genre", func() {
				doc := fields("etag-x", "title", "Edited")
				if r := s.do(t, http.MethodPut, "/books/"+first.ID, mustJSON(t, doc)); r.Status != http.StatusOK {
					t.Fatalf("PUT: %d %s", r.Status, r.Body)
				}
			}},
			{"move into the genre", func() {
				if r := s.do(t, http.MethodPut, "/books/"+other.ID, mustJSON(t, fields("etag-x"))); r.Status != http.StatusOK {
					t.Fatalf("PUT: %d %s", r.Status, r.Body)
				}
			}},
			{"move out of the genre", func() {
				if r := s.do(t, http.MethodPut, "/books/"+other.ID, mustJSON(t, fields("etag-y"))); r.Status != http.StatusOK {
					t.Fatalf("PUT: %d %s", r.Status, r.Body)
				}
			}},
			{"delete in the genre", func() {
				if r := s.do(t, http.MethodDelete, "/books/"+first.ID, ""); r.Status != http.StatusNoContent {
					t.Fatalf("DELETE: %d %s", r.Status, r.Body)
				}
			}},
		}
		for _, w := range writes {
			w.write()
			if notModified(page1, tag) || notModified(page2+*cursor, tag2) {
				t.Fatalf("%s: the genre's listing still answers 304 to its old ETag", w.name)
			}
			tag, tag2 = tagOf(page1), tagOf(page2+*cursor)
		}

		before := tagOf(page1)
		s.create(t, fields("etag-z"))
		if !notModified(page1, before) {
			t.Error("a create in another genre changed the tag")
		}
	})
}

// TestKeptListingsShowEveryWrite: the book service keeps encoded listings of a
// genre, and the next listing after any write to the genre shows it.
func TestKeptListingsShowEveryWrite(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		const target = "/books?genre=kept&limit=100"
		list := func() string {
			t.Helper()
			resp := s.do(t, http.MethodGet, target, "")
			if resp.Status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", target, resp.Status, resp.Body)
			}
			return string(resp.Body)
		}
		a := s.create(t, fields("kept"))
		if body := list(); !strings.Contains(body, a.ID) || list() != body {
			t.Fatalf("listing %s does not hold the book, or changed when nothing did", body)
		}
		b := s.create(t, fields("kept"))
		if !strings.Contains(list(), b.ID) {
			t.Fatal("a created book is missing from the next listing")
		}
		if r := s.do(t, http.MethodPut, "/books/"+a.ID, mustJSON(t, fields("kept", "title", "Retitled"))); r.Status != http.StatusOK {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		if !strings.Contains(list(), `"title":"Retitled"`) {
			t.Fatal("an edit is missing from the next listing")
		}
		if r := s.do(t, http.MethodPut, "/books/"+a.ID, mustJSON(t, fields("elsewhere"))); r.Status != http.StatusOK {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		if strings.Contains(list(), a.ID) {
			t.Fatal("a book moved out of the genre is still in the next listing")
		}
		if r := s.do(t, http.MethodDelete, "/books/"+b.ID, ""); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		if strings.Contains(list(), b.ID) {
			t.Fatal("a deleted book is still in the next listing")
		}
	})
}

// TestKeptListingsAreKeptPerQuery: a listing kept for one query of a genre is never
// the answer to another (a smaller limit, another author, another page), whatever
// the client sends, If-None-Match included.
func TestKeptListingsAreKeptPerQuery(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		a := s.create(t, fields("per-query"))
		b := s.create(t, fields("per-query", "author_id", authorB))
		full := s.do(t, http.MethodGet, "/books?genre=per-query&limit=100", "")
		if got := ids(full.page(t).Items); len(got) != 2 {
			t.Fatalf("the genre's listing holds %v, want both books", got)
		}
		for _, c := range []struct {
			target string
			want   []string
		}{
			{"/books?genre=per-query&limit=1", []string{a.ID}},
			{"/books?genre=per-query&author_id=" + authorB, []string{b.ID}},
			{"/books?genre=per-query&limit=1&cursor=" + *s.do(t, http.MethodGet, "/books?genre=per-query&limit=1", "").page(t).NextCursor, []string{b.ID}},
		} {
			resp := s.do(t, http.MethodGet, c.target, "", "If-None-Match", full.Header.Get("ETag"))
			if resp.Status != http.StatusOK {
				t.Fatalf("GET %s with the full listing's ETag: got %d, want 200", c.target, resp.Status)
			}
			if got := ids(resp.page(t).Items); len(got) != len(c.want) || got[0] != c.want[0] {
				t.Errorf("GET %s: got %v, want %v", c.target, got, c.want)
			}
		}
	})
}
