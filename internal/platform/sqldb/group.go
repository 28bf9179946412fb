package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/fault"
)

// groupCommit queues the InTx calls of a SQLite database. The caller that finds
// nobody committing commits the queue (up to maxGroup calls per transaction), then
// hands the turn to the first caller still waiting, so no goroutine of its own runs.
type groupCommit struct {
	mu    sync.Mutex
	queue []*member
	busy  bool
	// size observes the calls of each group that ran: the writes that shared one
	// commit, and so one sync of the disk.
	size prometheus.Histogram
}

func newGroupSize() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "folio_db_commit_group_writes",
		Help:    "Writes (InTx calls) per transaction of SQLite's group commit, each of which syncs the disk once: the mean is the writes per sync.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, maxGroup},
	})
}

type member struct {
	ctx  context.Context
	fn   func(*sql.Tx) error
	done chan result
}

// result is a member's outcome, or (lead) its turn to commit the next group.
type result struct {
	err      error
	panicked any
	lead     bool
}

const (
	maxGroup = 128
	// groupTimeout bounds one group's transaction, which no single caller's context
	// may cancel: the others' work is in it too.
	groupTimeout = 30 * time.Second
)

// errGroupAborted is returned to members that had not run when a savepoint
// statement itself failed, which ends the transaction.
var errGroupAborted = errors.New("the transaction of this write failed before it ran; nothing was written")

func (g *groupCommit) run(db *DB, ctx context.Context, fn func(*sql.Tx) error) error {
	m := &member{ctx: ctx, fn: fn, done: make(chan result, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, m)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	for {
		if lead {
			g.mu.Lock()
			n := min(len(g.queue), maxGroup)
			batch := g.queue[:n:n]
			g.queue = append([]*member(nil), g.queue[n:]...)
			g.mu.Unlock()

			db.commitGroup(batch) // m is in it: the leader is always first in the queue

			g.mu.Lock()
			if len(g.queue) == 0 {
				g.busy = false
			} else {
				g.queue[0].done <- result{lead: true}
			}
			g.mu.Unlock()
		}
		r := <-m.done
		switch {
		case r.lead:
			lead = true
		case r.panicked != nil:
			panic(r.panicked)
		default:
			return r.err
		}
	}
}

// commitGroup runs each member's fn in a savepoint of one transaction, commits,
// and tells each member its outcome.
func (db *DB) commitGroup(batch []*member) {
	results := make([]result, len(batch))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), groupTimeout)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		for _, m := range batch {
			m.done <- result{err: fmt.Errorf("begin: %w", err)}
		}
		return
	}
	db.group.size.Observe(float64(len(batch)))
	ran := 0
	for i, m := range batch {
		if err := m.ctx.Err(); err != nil {
			results[i] = result{err: err} // the caller has gone: do not write for it
			ran++
			continue
		}
		r, ok := runInSavepoint(ctx, tx, m.fn)
		results[i] = r
		if !ok {
			break
		}
		ran++
	}
	if ran < len(batch) {
		_ = tx.Rollback()
		aborted := abortError(results[ran].err)
		for i := range batch {
			if i >= ran || results[i].err == nil && results[i].panicked == nil {
				results[i] = result{err: aborted}
			}
		}
	} else if err := tx.Commit(); err != nil {
		for i := range results {
			if results[i].err == nil && results[i].panicked == nil {
				results[i].err = fmt.Errorf("commit: %w", err)
			}
		}
	}
	for i, m := range batch {
		m.done <- results[i]
	}
}

// abortError is the error of the members of a group whose transaction ended
// because of cause, the error of the member that ended it. When cause is the
// database's lack of a resource (SQLite rolls the whole transaction back on
// SQLITE_FULL), theirs is classified the same way: they may retry as well.
// Any other cause stays out of their chain: another member's Conflict, say, is
// not theirs.
func abortError(cause error) error {
	fe := classifyExhausted(cause)
	if fe == nil {
		return errGroupAborted
	}
	return &fault.Error{Kind: fe.Kind, Message: fe.Message, RetryAfter: fe.RetryAfter,
		Err: fmt.Errorf("%w: another write in it failed: %v", errGroupAborted, cause)}
}

// runInSavepoint runs fn in a savepoint, rolled back if fn fails or panics. ok is
// false when a savepoint statement failed, which leaves the transaction unusable.
func runInSavepoint(ctx context.Context, tx *sql.Tx, fn func(*sql.Tx) error) (r result, ok bool) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT folio_write`); err != nil {
		return result{err: fmt.Errorf("savepoint: %w", err)}, false
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				r = result{panicked: v}
			}
		}()
		r = result{err: fn(tx)}
	}()
	if r.err != nil || r.panicked != nil {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT folio_write`); err != nil {
			return r, false
		}
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT folio_write`); err != nil {
		return r, false
	}
	return r, true
}
