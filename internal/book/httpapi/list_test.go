package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"folio/internal/platform/id"
)

// TestBookListLimits checks ?limit=: 20 by default, from 1 to 100, anything else refused.
func TestBookListLimits(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		t.Run("default limit", func(t *testing.T) {
			for range 25 {
				s.create(t, fields("limit-default"))
			}
			first := s.do(t, http.MethodGet, "/books?genre=limit-default", "").page(t)
			if len(first.Items) != 20 || first.NextCursor == nil {
				t.Fatalf("got %d items, next_cursor %v; want 20 and a cursor", len(first.Items), first.NextCursor)
			}
			second := s.do(t, http.MethodGet, "/books?genre=limit-default&cursor="+url.QueryEscape(*first.NextCursor), "").page(t)
			if len(second.Items) != 5 || second.NextCursor != nil {
				t.Errorf("got %d items, next_cursor %v; want 5 and null", len(second.Items), second.NextCursor)
			}
		})

		t.Run("limits", func(t *testing.T) {
			for _, tt := range []struct {
				limit string
				want  int // items wanted, or -1 for 400
			}{
				{"1", 1}, {"25", 25}, {"100", 25},
				{"0", -1}, {"101", -1}, {"-1", -1}, {"abc", -1}, {"", -1}, {"1.5", -1}, {"1e2", -1}, {" 5", -1},
			} {
				t.Run(tt.limit, func(t *testing.T) {
					resp := s.do(t, http.MethodGet, "/books?genre=limit-default&limit="+url.QueryEscape(tt.limit), "")
					if tt.want < 0 {
						p := resp.problem(t, http.StatusBadRequest)
						if !slices.Equal(p.fields(), []string{"limit"}) {
							t.Errorf("got errors naming %v, want [limit]", p.fields())
						}
						return
					}
					if got := len(resp.page(t).Items); got != tt.want {
						t.Errorf("got %d items, want %d", got, tt.want)
					}
				})
			}
		})
	})
}

func TestBookListRejectsInvalidCursors(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		for _, c := range []string{"", "abc", "!!!", base64.RawURLEncoding.EncodeToString([]byte("c1:not-an-id")),
			base64.RawURLEncoding.EncodeToString([]byte(id.New())), base64.RawURLEncoding.EncodeToString([]byte("c2:" + id.New())),
			base64.URLEncoding.EncodeToString([]byte("c1:" + id.New() + "0"))} {
			t.Run(c, func(t *testing.T) {
				p := s.do(t, http.MethodGet, "/books?cursor="+url.QueryEscape(c), "").problem(t, http.StatusBadRequest)
				if !slices.Equal(p.fields(), []string{"cursor"}) {
					t.Errorf("got errors naming %v, want [cursor]", p.fields())
				}
			})
		}
	})
}

func TestBookListRejectsInvalidFilters(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		for _, tt := range []struct{ query, field string }{
			{"genre=Fantasy", "genre"}, {"genre=1984", "genre"}, {"author_id=abc", "author_id"},
			{"author_id=" + strings.ToUpper(authorA), "author_id"},
		} {
			p := s.do(t, http.MethodGet, "/books?"+tt.query, "").problem(t, http.StatusBadRequest)
			if !slices.Equal(p.fields(), []string{tt.field}) {
				t.Errorf("%s: got errors naming %v, want [%s]", tt.query, p.fields(), tt.field)
			}
		}
	})
}

func TestBookListOfNothingIsAnEmptyArray(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		resp := s.do(t, http.MethodGet, "/books?genre=nobody-writes-this", "")
		if p := resp.page(t); len(p.Items) != 0 || p.NextCursor != nil {
			t.Errorf("got %s, want no items and a null cursor", resp.Body)
		}
		if !bytes.Contains(resp.Body, []byte(`"items":[]`)) {
			t.Errorf("got %s, want items as an empty array", resp.Body)
		}
	})
}

func TestBookListPagesWalkEveryBookOnce(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		var want []string
		for i := range 55 {
			author := authorA
			if i%2 == 1 {
				author = authorB
			}
			want = append(want, s.create(t, fields("paging-walk", "author_id", author)).ID)
		}
		slices.Sort(want)
		var got []string
		pages := 0
		next := "/books?genre=paging-walk&limit=7"
		for next != "" {
			if pages++; pages > 20 {
				t.Fatal("paging does not end")
			}
			p := s.do(t, http.MethodGet, next, "").page(t)
			if len(p.Items) > 7 {
				t.Fatalf("got %d items, want at most 7", len(p.Items))
			}
			got = append(got, ids(p.Items)...)
			next = ""
			if p.NextCursor != nil {
				next = "/books?genre=paging-walk&limit=7&cursor=" + url.QueryEscape(*p.NextCursor)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("walked %d ids %v,\nwant the %d created, each once, in id order: %v", len(got), got, len(want), want)
		}
		if pages != 8 {
			t.Errorf("got %d pages, want 8", pages)
		}
	})
}

func TestBookListFilters(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		want := map[string][]string{}
		for i := range 12 {
			genre, author := "filter-a", authorA
			if i%2 == 1 {
				genre = "filter-b"
			}
			if i%3 == 0 {
				author = authorB
			}
			id := s.create(t, fields(genre, "author_id", author)).ID
			for _, k := range []string{"genre=" + genre, "genre=" + genre + "&author_id=" + author} {
				want[k] = append(want[k], id)
			}
		}
		want["genre=filter-b&author_id="+absentAuthor] = nil
		for query, w := range want {
			t.Run(query, func(t *testing.T) {
				got := s.do(t, http.MethodGet, "/books?limit=100&"+query, "").page(t)
				if !slices.Equal(ids(got.Items), w) {
					t.Errorf("got %v, want %v", ids(got.Items), w)
				}
			})
		}
		got := s.do(t, http.MethodGet, "/books?limit=100&author_id="+authorB, "").page(t)
		if len(got.Items) == 0 {
			t.Error("author filter alone: got no books")
		}
		for _, b := range got.Items {
			if b.AuthorID != authorB {
				t.Errorf("author filter alone: got a book of %s, want only %s", b.AuthorID, authorB)
			}
		}
	})
}
