package sqlstore_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestEveryCommittedChangeRaisesTheGeneration: the author service's kept genre
// answers are current only if every change they show raises the generation, and a
// write that fails (rolled back) leaves it alone.
func TestEveryCommittedChangeRaisesTheGeneration(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		s := sqlstore.New(outbox.NewWriter(db, nil))
		now := time.Now().UTC().Truncate(time.Microsecond)
		a := newAuthor("Generation", now)
		renamed := a
		renamed.Name, renamed.Version, renamed.UpdatedAt = "Renamed", 2, now.Add(time.Second)
		bookID := id.New()
		apply := func(c author.BookChange) error {
			return db.InTx(ctx, func(tx *sql.Tx) error { return s.ApplyBookChange(ctx, tx, c) })
		}

		steps := []struct {
			name    string
			write   func() error
			raises  bool
			wantErr bool
		}{
			{"create", func() error { _, err := s.Create(ctx, a); return err }, true, false},
			{"update", func() error { _, err := s.Update(ctx, renamed); return err }, true, false},
			{"stale update", func() error { _, err := s.Update(ctx, renamed); return err }, false, true},
			{"book created", func() error { return apply(author.BookChange{BookID: bookID, AuthorID: a.ID, Version: 1}) }, true, false},
			{"delete refused: the author has a book", func() error { return s.Delete(ctx, a.ID, 2) }, false, true},
			{"book deleted", func() error { return apply(author.BookChange{BookID: bookID, Deleted: true}) }, true, false},
			{"delete", func() error { return s.Delete(ctx, a.ID, 2) }, true, false},
		}
		last, err := s.Generation(ctx)
		if err != nil {
			t.Fatalf("Generation: %v", err)
		}
		if last < now.Add(-time.Hour).UnixMicro() {
			t.Errorf("a new database starts at generation %d, want at least the migration's time in microseconds", last)
		}
		for _, st := range steps {
			if err := st.write(); (err != nil) != st.wantErr {
				t.Fatalf("%s: got error %v, want error: %v", st.name, err, st.wantErr)
			}
			g, err := s.Generation(ctx)
			if err != nil {
				t.Fatalf("Generation: %v", err)
			}
			if raised := g > last; raised != st.raises {
				t.Errorf("%s: generation %d → %d, want raised: %v", st.name, last, g, st.raises)
			}
			last = g
		}
	})
}
