package sqlstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var (
	newAuthor  = authortest.NewAuthor
	sameAuthor = authortest.SameAuthor
	ptr        = authortest.Ptr[int]
	idsOf      = authortest.IDs
)

// fixture is a store on one engine with two authors in it: one with every field
// (the longest bio, the earliest year), one with only a name.
type fixture struct {
	s          *sqlstore.Store
	now        time.Time
	full, bare author.Author
}

// eachEngine runs test on a new fixture per engine.
func eachEngine(t *testing.T, test func(t *testing.T, f fixture)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		f := fixture{s: sqlstore.New(outbox.NewWriter(db, nil)), now: time.Now().UTC().Truncate(time.Microsecond)}
		f.full = newAuthor("Ursula K. Le Guin 🐉", f.now)
		bio := strings.Repeat("é", author.MaxBio)
		f.full.Bio, f.full.BirthYear = &bio, ptr(-3000)
		f.bare = newAuthor("Anonymous", f.now.Add(time.Second))
		for _, a := range []author.Author{f.full, f.bare} {
			if _, err := f.s.Create(context.Background(), a); err != nil {
				t.Fatalf("Create: %v", err)
			}
		}
		test(t, f)
	})
}

func TestStoreGetReturnsWhatWasCreated(t *testing.T) {
	eachEngine(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		for _, want := range []author.Author{f.full, f.bare} {
			got, err := f.s.Get(ctx, want.ID)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if !sameAuthor(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		}
		if _, err := f.s.Get(ctx, id.New()); fault.KindOf(err) != fault.NotFound {
			t.Errorf("Get of a missing author: got %v, want NotFound", err)
		}
	})
}

func TestStoreGetManyReadsInBatchesAndLeavesOutTheMissing(t *testing.T) {
	eachEngine(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		got, err := f.s.GetMany(ctx, nil)
		if err != nil || len(got) != 0 {
			t.Errorf("GetMany(nil): got %v, %v, want an empty map", got, err)
		}
		// More ids than one batch holds, with the authors at both ends.
		ids := []string{f.full.ID}
		for range 1200 {
			ids = append(ids, id.New())
		}
		ids = append(ids, f.bare.ID)
		got, err = f.s.GetMany(ctx, ids)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		if len(got) != 2 || !sameAuthor(got[f.full.ID], f.full) || !sameAuthor(got[f.bare.ID], f.bare) {
			t.Errorf("got %v, want the two authors", got)
		}
	})
}

func TestStoreUpdateWritesOnlyOverTheVersionBefore(t *testing.T) {
	eachEngine(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		a := f.bare
		bio := "bio"
		a.Name, a.Bio, a.BirthYear, a.Version, a.UpdatedAt = "Named", &bio, ptr(1950), 2, f.now.Add(time.Hour)
		if _, err := f.s.Update(ctx, a); err != nil {
			t.Fatalf("Update: %v", err)
		}
		if got, _ := f.s.Get(ctx, a.ID); !sameAuthor(got, a) {
			t.Errorf("after Update got %+v, want %+v", got, a)
		}
		if _, err := f.s.Update(ctx, a); !errors.Is(err, author.ErrStale) {
			t.Errorf("Update at an old version: got %v, want ErrStale", err)
		}
		missing := newAuthor("x", f.now)
		missing.Version = 2
		if _, err := f.s.Update(ctx, missing); fault.KindOf(err) != fault.NotFound {
			t.Errorf("Update of a missing author: got %v, want NotFound", err)
		}
		a.Bio, a.BirthYear, a.Version = nil, nil, 3
		if _, err := f.s.Update(ctx, a); err != nil {
			t.Fatalf("Update clearing fields: %v", err)
		}
		if got, _ := f.s.Get(ctx, a.ID); !sameAuthor(got, a) {
			t.Errorf("after clearing got %+v, want %+v", got, a)
		}
	})
}

func TestStoreListPagesInIDOrder(t *testing.T) {
	eachEngine(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		want := []string{f.full.ID, f.bare.ID}
		for i := range 5 {
			a := newAuthor("List "+string(rune('a'+i)), f.now)
			if _, err := f.s.Create(ctx, a); err != nil {
				t.Fatalf("Create: %v", err)
			}
			want = append(want, a.ID)
		}
		slices.Sort(want)
		all, err := f.s.List(ctx, paging.Request{Limit: 99})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if got := idsOf(all); !slices.Equal(got, want) {
			t.Errorf("List got %v, want %v", got, want)
		}
		// A page reads one more than its limit, to tell whether another follows.
		page, err := f.s.List(ctx, paging.Request{Limit: 2, After: want[2]})
		if err != nil {
			t.Fatalf("List after: %v", err)
		}
		if got := idsOf(page); !slices.Equal(got, want[3:6]) {
			t.Errorf("List after %s got %v, want %v", want[2], got, want[3:6])
		}
		if end, _ := f.s.List(ctx, paging.Request{Limit: 2, After: want[len(want)-1]}); len(end) != 0 {
			t.Errorf("List after the last got %v, want none", idsOf(end))
		}
	})
}

func TestStoreDeleteTellsAStaleVersionFromAMissingAuthor(t *testing.T) {
	eachEngine(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		if err := f.s.Delete(ctx, f.full.ID, 7); !errors.Is(err, author.ErrStale) {
			t.Errorf("Delete at a wrong version: got %v, want ErrStale", err)
		}
		if err := f.s.Delete(ctx, f.full.ID, 1); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := f.s.Delete(ctx, f.full.ID, 1); fault.KindOf(err) != fault.NotFound {
			t.Errorf("Delete again: got %v, want NotFound", err)
		}
		if _, err := f.s.Get(ctx, f.full.ID); fault.KindOf(err) != fault.NotFound {
			t.Errorf("Get after Delete: got %v, want NotFound", err)
		}
	})
}
