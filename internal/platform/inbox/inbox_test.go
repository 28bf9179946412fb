package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"folio/internal/platform/inbox"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// service stands for a consuming service's own migrations, which the inbox's are
// applied beside; effects records what the handler did.
var service = fstest.MapFS{
	"migrations/sqlite/00001_effects.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE effects (event_id TEXT NOT NULL);\n")},
	"migrations/postgres/00001_effects.sql": {Data: []byte("-- +goose Up\nCREATE TABLE effects (event_id TEXT NOT NULL);\n")},
}

func open(t *testing.T, suite func(t *testing.T, db *sqldb.DB)) {
	sqldbtest.ForEach(t, service, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := inbox.Migrate(ctx, db); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if err := inbox.Migrate(ctx, db); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
		var version int64
		if err := db.QueryRow(`SELECT MAX(version_id) FROM folio_inbox_version`).Scan(&version); err != nil || version != 1 {
			t.Fatalf("folio_inbox_version: version %d, %v; want 1", version, err)
		}
		suite(t, db)
	})
}

func effect(id string) func(tx *sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO effects (event_id) VALUES ($1)`, id)
		return err
	}
}

func effects(t *testing.T, db *sqldb.DB, id string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM effects WHERE event_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestApplyOnce(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		applied, err := inbox.Apply(ctx, db, "search", "e1", effect("e1"))
		if err != nil || !applied {
			t.Fatalf("first Apply = %v, %v; want true, nil", applied, err)
		}
		called := false
		applied, err = inbox.Apply(ctx, db, "search", "e1", func(*sql.Tx) error { called = true; return nil })
		if err != nil || applied || called {
			t.Fatalf("second Apply = %v, %v (fn called: %v); want false, nil, not called", applied, err, called)
		}
		if n := effects(t, db, "e1"); n != 1 {
			t.Fatalf("effects = %d, want 1", n)
		}
		// Another consumer keeps its own record of the same event.
		if applied, err := inbox.Apply(ctx, db, "audit", "e1", effect("e1")); err != nil || !applied {
			t.Fatalf("Apply by another consumer = %v, %v; want true, nil", applied, err)
		}
		if _, err := inbox.Apply(ctx, db, "search", "", effect("")); err == nil {
			t.Fatal("Apply with no event id succeeded")
		}
	})
}

func TestApplyFailureRecordsNothing(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		boom := errors.New("boom")
		applied, err := inbox.Apply(ctx, db, "search", "e1", func(tx *sql.Tx) error {
			if err := effect("e1")(tx); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) || applied {
			t.Fatalf("failing Apply = %v, %v; want false, boom", applied, err)
		}
		if n := effects(t, db, "e1"); n != 0 {
			t.Fatalf("effects after a failure = %d, want 0 (rolled back)", n)
		}
		applied, err = inbox.Apply(ctx, db, "search", "e1", effect("e1"))
		if err != nil || !applied {
			t.Fatalf("Apply after a failure = %v, %v; want true, nil", applied, err)
		}
		if n := effects(t, db, "e1"); n != 1 {
			t.Fatalf("effects = %d, want 1", n)
		}
	})
}

func TestConcurrentApplyAppliesOnce(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for round := range 5 {
			id := fmt.Sprintf("e%d", round)
			const deliveries = 8
			var wg sync.WaitGroup
			results := make(chan error, deliveries)
			appliedCount := make(chan bool, deliveries)
			start := make(chan struct{})
			for range deliveries {
				wg.Go(func() {
					<-start
					applied, err := inbox.Apply(ctx, db, "search", id, effect(id))
					results <- err
					appliedCount <- applied
				})
			}
			close(start)
			wg.Wait()
			close(results)
			close(appliedCount)
			for err := range results {
				if err != nil {
					t.Fatalf("concurrent Apply: %v", err)
				}
			}
			n := 0
			for a := range appliedCount {
				if a {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d deliveries reported applied, want 1", n)
			}
			if got := effects(t, db, id); got != 1 {
				t.Fatalf("effects = %d, want 1", got)
			}
		}
	})
}

// A delivery that fails while a second one of the same event is under way must not
// stop the second from applying it.
func TestConcurrentApplyAfterFailure(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		inside, release := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			_, err := inbox.Apply(ctx, db, "search", "e1", func(*sql.Tx) error {
				close(inside)
				<-release
				return errors.New("handler failed")
			})
			first <- err
		}()
		<-inside
		second := make(chan bool, 1)
		secondErr := make(chan error, 1)
		go func() {
			applied, err := inbox.Apply(ctx, db, "search", "e1", effect("e1"))
			second <- applied
			secondErr <- err
		}()
		close(release)
		if err := <-first; err == nil {
			t.Fatal("first Apply did not report its handler's error")
		}
		if applied, err := <-second, <-secondErr; err != nil || !applied {
			t.Fatalf("second Apply = %v, %v; want true, nil", applied, err)
		}
		if n := effects(t, db, "e1"); n != 1 {
			t.Fatalf("effects = %d, want 1", n)
		}
	})
}

func TestPurge(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for _, id := range []string{"e1", "e2"} {
			if _, err := inbox.Apply(ctx, db, "search", id, effect(id)); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := inbox.Purge(ctx, db, 7*24*time.Hour); err != nil || n != 0 {
			t.Fatalf("Purge(7 days) = %d, %v; want 0, nil", n, err)
		}
		if n, err := inbox.Purge(ctx, db, -time.Second); err != nil || n != 2 {
			t.Fatalf("Purge(everything) = %d, %v; want 2, nil", n, err)
		}
		// Once purged, an event counts as new again.
		if applied, err := inbox.Apply(ctx, db, "search", "e1", effect("e1")); err != nil || !applied {
			t.Fatalf("Apply after Purge = %v, %v; want true, nil", applied, err)
		}
	})
}
