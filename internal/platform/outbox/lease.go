package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"folio/internal/platform/sqldb"
)

// errLeaseLost is returned when another relay took the lease while this one
// believed it held it: what it published meanwhile is not marked, and the new
// holder publishes those events again (their ids de-duplicate them).
var errLeaseLost = errors.New("another relay took the outbox lease")

// errLeaseExpired is returned when this relay's lease ran out in the middle of a
// batch: it sends nothing more until it has renewed the lease.
var errLeaseExpired = errors.New("the outbox lease expired before the batch was sent")

// lease is a relay's hold on the publishing of a SQLite outbox. Instances of a
// service that share the file each run a relay; the one whose lease row has not
// expired publishes, the others wait to take it over. A lease row rather than a
// lock: a process that is stopped (SIGSTOP, a debugger, a VM paused) keeps its
// file locks and its database transaction for as long as it is stopped, while a
// lease simply runs out.
//
// A holder renews every third of the lease; it sends nothing once its own clock
// says the lease ran out (so a holder that was stopped for longer does not
// publish after it resumes), and it marks events sent only in a transaction that
// finds its epoch still in the row (the fencing token), so it never marks what
// another holder is responsible for.
type lease struct {
	db       *sqldb.DB
	holder   string
	duration time.Duration

	epoch     int64     // of the current hold; 0 while not holding
	renewedAt time.Time // when the last successful take or renewal started (monotonic)
}

func newLease(db *sqldb.DB, duration time.Duration) *lease {
	host, _ := os.Hostname()
	// Readable by an operator looking at the row; the random part tells apart two
	// relays in one process and a process id reused after a restart.
	return &lease{db: db, duration: duration, holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8])}
}

// hold takes the lease if it is free or expired, or renews it if a third of it
// has passed, and reports whether this relay holds it and until when (by the
// monotonic clock) it may send.
func (l *lease) hold(ctx context.Context) (until time.Time, held bool, err error) {
	now := time.Now()
	if l.epoch != 0 && now.Sub(l.renewedAt) < l.duration/3 {
		return l.renewedAt.Add(l.duration), true, nil
	}
	if l.epoch == 0 {
		// Reading first takes no lock: a follower finding the lease held leaves
		// the service's writers alone.
		var expires int64
		if err := l.db.QueryRowContext(ctx, `SELECT expires_at FROM outbox_relay_lease WHERE id = 1`).Scan(&expires); err != nil {
			return time.Time{}, false, fmt.Errorf("read the outbox lease: %w", err)
		}
		if expires > now.UnixNano() {
			return time.Time{}, false, nil
		}
	}
	// Renewed while the row still names this hold (even if it expired: nobody
	// took it, so nobody published meanwhile); taken when it expired. The epoch
	// goes up whenever the holder changes.
	var epoch int64
	err = l.db.QueryRowContext(ctx, `UPDATE outbox_relay_lease SET
			epoch = CASE WHEN holder = $1 AND epoch = $2 THEN epoch ELSE epoch + 1 END,
			holder = $1, expires_at = $3
		WHERE id = 1 AND ((holder = $1 AND epoch = $2) OR expires_at <= $4)
		RETURNING epoch`, l.holder, l.epoch, now.Add(l.duration).UnixNano(), now.UnixNano()).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		l.epoch = 0
		return time.Time{}, false, nil
	}
	if err != nil {
		// Perhaps still held: the caller may not send until it knows.
		return time.Time{}, false, fmt.Errorf("take the outbox lease: %w", err)
	}
	l.epoch, l.renewedAt = epoch, now
	return now.Add(l.duration), true, nil
}

// check fails with errLeaseLost unless the row, read inside tx, still names this
// hold.
func (l *lease) check(ctx context.Context, tx *sql.Tx, epoch int64) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox_relay_lease WHERE id = 1 AND holder = $1 AND epoch = $2`,
		l.holder, epoch).Scan(&n); err != nil {
		return fmt.Errorf("check the outbox lease: %w", err)
	}
	if n == 0 {
		return errLeaseLost
	}
	return nil
}

// release lets another relay take the lease at once, when this one stops.
func (l *lease) release(ctx context.Context) error {
	if l.epoch == 0 {
		return nil
	}
	_, err := l.db.ExecContext(ctx, `UPDATE outbox_relay_lease SET expires_at = 0 WHERE id = 1 AND holder = $1 AND epoch = $2`, l.holder, l.epoch)
	l.epoch = 0
	return err
}
