package inbox_test

import (
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"folio/internal/platform/inbox"
	"folio/internal/platform/sqldb"
)

// TestApplyConcurrently applies many events from many goroutines at once, as a
// consumer with several deliveries in flight does (on SQLite they share commits):
// each event is applied exactly once, a failing event keeps nothing and can be
// applied later, and the events committed with it are kept.
func TestApplyConcurrently(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		const events, copies = 120, 3 // each event delivered three times at once
		errBoom := errors.New("boom")
		type result struct {
			id      string
			applied bool
			err     error
		}
		results := make(chan result, events*copies)
		var wg sync.WaitGroup
		for i := range events {
			id := fmt.Sprintf("e%03d", i)
			for range copies {
				wg.Go(func() {
					fn := effect(id)
					if i%10 == 0 {
						// Every tenth event fails after writing: its write must not stay.
						fn = func(tx *sql.Tx) error {
							if err := effect(id)(tx); err != nil {
								return err
							}
							return errBoom
						}
					}
					applied, err := inbox.Apply(t.Context(), db, "batcher", id, fn)
					results <- result{id, applied, err}
				})
			}
		}
		wg.Wait()
		close(results)

		appliedBy := map[string]int{}
		for r := range results {
			switch {
			case r.err != nil && !errors.Is(r.err, errBoom):
				t.Errorf("%s: unexpected error %v", r.id, r.err)
			case r.applied:
				appliedBy[r.id]++
			}
		}
		for i := range events {
			id := fmt.Sprintf("e%03d", i)
			want := 1
			if i%10 == 0 {
				want = 0
			}
			if appliedBy[id] != want || effects(t, db, id) != want {
				t.Errorf("%s: applied by %d callers, %d effects; want %d", id, appliedBy[id], effects(t, db, id), want)
			}
		}

		// A failed event is applied by a later delivery.
		applied, err := inbox.Apply(t.Context(), db, "batcher", "e000", effect("e000"))
		if err != nil || !applied || effects(t, db, "e000") != 1 {
			t.Fatalf("redelivery of a failed event: applied %v, err %v, %d effects; want it applied once", applied, err, effects(t, db, "e000"))
		}
		if applied, err := inbox.Apply(t.Context(), db, "batcher", "e001", effect("e001")); err != nil || applied {
			t.Fatalf("Apply of an event applied before: applied %v, err %v; want false, nil", applied, err)
		}
	})
}
