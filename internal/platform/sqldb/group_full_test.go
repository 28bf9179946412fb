package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/platform/fault"
	"folio/internal/platform/polltest"
)

// TestGroupAbortedByAFullDiskMayRetry: when one write of a shared commit hits a
// full disk, SQLite rolls the whole transaction back, and the other writes in it
// are told StorageUnavailable (they may retry) rather than an internal error;
// once there is room the same connection, with no transaction left open, takes
// them.
func TestGroupAbortedByAFullDiskMayRetry(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "group.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // max_page_count is a connection's: let there be one
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	setMaxPages := func(n int) {
		t.Helper()
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, n)); err != nil {
			t.Fatal(err)
		}
	}
	var pages int
	if err := db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	setMaxPages(pages) // the disk is full: a row that needs a new page fails
	insert := func(id int, n string) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, id, n)
			return err
		}
	}
	queued := func(n int) func() error {
		return func() error {
			db.group.mu.Lock()
			defer db.group.mu.Unlock()
			if len(db.group.queue) != n {
				return fmt.Errorf("%d writes queued, want %d", len(db.group.queue), n)
			}
			return nil
		}
	}

	// A leader holds the turn while a small write and a big one queue behind it:
	// they then share the next transaction, the small one first.
	started, release := make(chan struct{}), make(chan struct{})
	leader := make(chan error, 1)
	go func() {
		leader <- db.InTx(ctx, func(*sql.Tx) error { close(started); <-release; return nil })
	}()
	<-started
	small, big := make(chan error, 1), make(chan error, 1)
	go func() { small <- db.InTx(ctx, insert(1, "small")) }()
	polltest.Until(t, "the small write queues", queued(1))
	go func() { big <- db.InTx(ctx, insert(2, strings.Repeat("b", 64<<10))) }()
	polltest.Until(t, "the big write queues", queued(2))
	close(release)

	if err := <-leader; err != nil {
		t.Fatalf("leader: %v", err)
	}
	errBig, errSmall := <-big, <-small
	if fault.KindOf(errBig) != fault.StorageUnavailable {
		t.Errorf("the write that hit the full disk: %v, want StorageUnavailable", errBig)
	}
	if fault.KindOf(errSmall) != fault.StorageUnavailable || !errors.Is(errSmall, errGroupAborted) {
		t.Errorf("the write rolled back with it: %v, want StorageUnavailable and errGroupAborted", errSmall)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("rows after the rollback: %d, %v; want none", rows, err)
	}

	setMaxPages(1 << 30) // space is back
	for i, fn := range []func(*sql.Tx) error{insert(1, "small"), insert(2, strings.Repeat("b", 64<<10))} {
		if err := db.InTx(ctx, fn); err != nil {
			t.Fatalf("retry %d once there is room: %v", i+1, err)
		}
	}
}
