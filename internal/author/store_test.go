package author_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/platform/fault"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

func newAuthor(name string, now time.Time) author.Author {
	return author.Author{ID: rest.NewID(), Name: name, Version: 1, CreatedAt: now, UpdatedAt: now}
}

func sameAuthor(a, b author.Author) bool {
	return a.ID == b.ID && a.Name == b.Name && equalPtr(a.Bio, b.Bio) && equalPtr(a.BirthYear, b.BirthYear) &&
		a.Version == b.Version && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.CreatedAt.Location() == time.UTC && a.UpdatedAt.Location() == time.UTC
}

func equalPtr[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func ptr[T any](v T) *T { return &v }

func TestSQLStore(t *testing.T) {
	sqldbtest.ForEach(t, author.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		s := author.NewSQLStore(db)
		now := time.Now().UTC().Truncate(time.Microsecond)

		full := newAuthor("Ursula K. Le Guin 🐉", now)
		full.Bio, full.BirthYear = ptr(strings.Repeat("é", author.MaxBio)), ptr(-3000)
		bare := newAuthor("Anonymous", now.Add(time.Second))
		for _, a := range []author.Author{full, bare} {
			if _, err := s.Create(ctx, a); err != nil {
				t.Fatalf("Create: %v", err)
			}
		}

		t.Run("get", func(t *testing.T) {
			for _, want := range []author.Author{full, bare} {
				got, err := s.Get(ctx, want.ID)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if !sameAuthor(got, want) {
					t.Errorf("got %+v, want %+v", got, want)
				}
			}
			_, err := s.Get(ctx, rest.NewID())
			if fault.KindOf(err) != fault.NotFound {
				t.Errorf("Get of a missing author: got %v, want NotFound", err)
			}
		})

		t.Run("get many", func(t *testing.T) {
			got, err := s.GetMany(ctx, nil)
			if err != nil || len(got) != 0 {
				t.Errorf("GetMany(nil): got %v, %v, want an empty map", got, err)
			}
			// More ids than one batch holds, with the authors at both ends.
			ids := []string{full.ID}
			for range 1200 {
				ids = append(ids, rest.NewID())
			}
			ids = append(ids, bare.ID)
			got, err = s.GetMany(ctx, ids)
			if err != nil {
				t.Fatalf("GetMany: %v", err)
			}
			if len(got) != 2 || !sameAuthor(got[full.ID], full) || !sameAuthor(got[bare.ID], bare) {
				t.Errorf("got %v, want the two authors", got)
			}
		})

		t.Run("update", func(t *testing.T) {
			a := bare
			a.Name, a.Bio, a.BirthYear, a.Version, a.UpdatedAt = "Named", ptr("bio"), ptr(1950), 2, now.Add(time.Hour)
			if _, err := s.Update(ctx, a); err != nil {
				t.Fatalf("Update: %v", err)
			}
			if got, _ := s.Get(ctx, a.ID); !sameAuthor(got, a) {
				t.Errorf("after Update got %+v, want %+v", got, a)
			}
			if _, err := s.Update(ctx, a); !errors.Is(err, author.ErrStale) {
				t.Errorf("Update at an old version: got %v, want ErrStale", err)
			}
			missing := newAuthor("x", now)
			missing.Version = 2
			if _, err := s.Update(ctx, missing); fault.KindOf(err) != fault.NotFound {
				t.Errorf("Update of a missing author: got %v, want NotFound", err)
			}
			a.Bio, a.BirthYear, a.Version = nil, nil, 3
			if _, err := s.Update(ctx, a); err != nil {
				t.Fatalf("Update clearing fields: %v", err)
			}
			if got, _ := s.Get(ctx, a.ID); !sameAuthor(got, a) {
				t.Errorf("after clearing got %+v, want %+v", got, a)
			}
		})

		t.Run("list", func(t *testing.T) {
			want := []string{full.ID, bare.ID}
			for i := range 5 {
				a := newAuthor("List "+string(rune('a'+i)), now)
				if _, err := s.Create(ctx, a); err != nil {
					t.Fatalf("Create: %v", err)
				}
				want = append(want, a.ID)
			}
			slices.Sort(want)
			all, err := s.List(ctx, "", 100)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if got := idsOf(all); !slices.Equal(got, want) {
				t.Errorf("List got %v, want %v", got, want)
			}
			page, err := s.List(ctx, want[2], 3)
			if err != nil {
				t.Fatalf("List after: %v", err)
			}
			if got := idsOf(page); !slices.Equal(got, want[3:6]) {
				t.Errorf("List after %s got %v, want %v", want[2], got, want[3:6])
			}
			if end, _ := s.List(ctx, want[len(want)-1], 3); len(end) != 0 {
				t.Errorf("List after the last got %v, want none", idsOf(end))
			}
		})

		t.Run("delete", func(t *testing.T) {
			if err := s.Delete(ctx, full.ID, 7); !errors.Is(err, author.ErrStale) {
				t.Errorf("Delete at a wrong version: got %v, want ErrStale", err)
			}
			if err := s.Delete(ctx, full.ID, 1); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := s.Delete(ctx, full.ID, 1); fault.KindOf(err) != fault.NotFound {
				t.Errorf("Delete again: got %v, want NotFound", err)
			}
			if _, err := s.Get(ctx, full.ID); fault.KindOf(err) != fault.NotFound {
				t.Errorf("Get after Delete: got %v, want NotFound", err)
			}
		})
	})
}

func idsOf(authors []author.Author) []string {
	out := make([]string, len(authors))
	for i, a := range authors {
		out[i] = a.ID
	}
	return out
}
