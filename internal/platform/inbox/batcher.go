package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"folio/internal/platform/sqldb"
)

// Batcher is Apply with group commit: events handed to it while a transaction is
// committing wait for the next one, which takes them all (up to a limit). Each
// event runs in a savepoint of its own, so one event's failure undoes only its own
// work. A commit with synchronous durability costs a disk sync; sharing that sync
// among the events that arrived meanwhile is what lets a consumer with several
// deliveries in flight apply them faster than the disk syncs, and on SQLite it
// spares them waiting for each other's write lock.
type Batcher struct {
	db       *sqldb.DB
	consumer string
	max      int

	mu    sync.Mutex
	queue []*pending
	busy  bool // a caller is committing batches
}

type pending struct {
	eventID string
	fn      func(tx *sql.Tx) error
	done    chan outcome
}

// outcome is a pending event's result, or (lead) the turn to commit the next batch.
type outcome struct {
	applied bool
	err     error
	lead    bool
}

// batchTimeout bounds one batch's transaction, which callers do not cancel: a
// caller that gives up leaves its event in a batch that others share.
const batchTimeout = 30 * time.Second

// NewBatcher returns a Batcher recording events as applied by consumer, with at
// most max events per transaction.
func NewBatcher(db *sqldb.DB, consumer string, max int) *Batcher {
	return &Batcher{db: db, consumer: consumer, max: max}
}

// Apply has the meaning of the package's Apply: fn runs, and the event is recorded
// as applied, in one transaction, unless the event was applied before (applied is
// then false and fn does not run). fn's error is returned and nothing of it is
// kept. No goroutine of its own: the caller that finds nobody committing commits
// the queue, then passes the turn to the first caller still waiting.
func (b *Batcher) Apply(eventID string, fn func(tx *sql.Tx) error) (applied bool, err error) {
	if b.consumer == "" || eventID == "" {
		return false, errors.New("inbox apply: consumer and event id are required")
	}
	p := &pending{eventID: eventID, fn: fn, done: make(chan outcome, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	lead := !b.busy
	b.busy = true
	b.mu.Unlock()
	for {
		if lead {
			b.mu.Lock()
			n := min(len(b.queue), b.max)
			batch := b.queue[:n:n]
			b.queue = append([]*pending(nil), b.queue[n:]...)
			b.mu.Unlock()

			b.commit(batch) // p is in batch: a leader is always first in the queue

			b.mu.Lock()
			if len(b.queue) == 0 {
				b.busy = false
			} else {
				b.queue[0].done <- outcome{lead: true}
			}
			b.mu.Unlock()
		}
		o := <-p.done
		if !o.lead {
			return o.applied, o.err
		}
		lead = true
	}
}

// commit applies batch in one transaction and tells each caller its outcome.
func (b *Batcher) commit(batch []*pending) {
	results := make([]outcome, len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	err := b.db.InTx(ctx, func(tx *sql.Tx) error {
		for i, p := range batch {
			results[i] = b.applyOne(ctx, tx, p)
			if errors.Is(results[i].err, errSavepoint) {
				return results[i].err
			}
		}
		return nil
	})
	for i, p := range batch {
		if err != nil && (results[i].applied || results[i].err == nil) {
			results[i] = outcome{err: fmt.Errorf("inbox apply: %w", err)}
		}
		p.done <- results[i]
	}
}

// errSavepoint marks a failure of the savepoint machinery itself, after which the
// transaction cannot go on.
var errSavepoint = errors.New("savepoint failed")

// applyOne runs one event inside a savepoint of tx.
func (b *Batcher) applyOne(ctx context.Context, tx *sql.Tx, p *pending) outcome {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT inbox_event`); err != nil {
		return outcome{err: fmt.Errorf("%w: %v", errSavepoint, err)}
	}
	undo := func(o outcome) outcome {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT inbox_event`); err != nil {
			return outcome{err: fmt.Errorf("%w: %v", errSavepoint, err)}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT inbox_event`); err != nil {
			return outcome{err: fmt.Errorf("%w: %v", errSavepoint, err)}
		}
		return o
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO inbox (consumer, event_id, applied_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, b.consumer, p.eventID, time.Now().UnixNano())
	if sqldb.IsUniqueViolation(err) {
		return undo(outcome{})
	}
	if err != nil {
		return undo(outcome{err: fmt.Errorf("inbox apply: record %s: %w", p.eventID, err)})
	}
	if n, err := res.RowsAffected(); err != nil {
		return undo(outcome{err: fmt.Errorf("inbox apply: record %s: %w", p.eventID, err)})
	} else if n == 0 {
		return undo(outcome{}) // applied before, or earlier in this batch
	}
	if err := p.fn(tx); err != nil {
		return undo(outcome{err: err})
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT inbox_event`); err != nil {
		return outcome{err: fmt.Errorf("%w: %v", errSavepoint, err)}
	}
	return outcome{applied: true}
}
