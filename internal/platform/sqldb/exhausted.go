package sqldb

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"folio/internal/platform/fault"
)

// StorageFullRetryAfter is the Retry-After of an answer refused because the
// database's disk is full. Space comes back when an operator (or a clean-up job)
// frees it: seconds to minutes, not the next instant, so clients are told to wait
// longer than after a peer's hiccup.
const StorageFullRetryAfter = 10 * time.Second

// Client-safe messages of the errors classifyExhausted recognises. Each says the
// request was not carried out, so that a client knows it may send it again.
const (
	msgStorageFull     = "the service's storage is full, so the request was not carried out; try again later"
	msgOutOfMemory     = "the service's database is out of memory, so the request was not carried out; try again later"
	msgOutOfConnection = "the service's database accepts no more connections now, so the request was not carried out; try again later"
)

// PostgreSQL error codes (class 53, insufficient resources) that pass by themselves.
// 53400 configuration_limit_exceeded is left out: it stays until the
// configuration changes, so a client waiting for it would wait for ever.
const (
	pgDiskFull           = "53100"
	pgOutOfMemory        = "53200"
	pgTooManyConnections = "53300"
)

func init() { fault.RegisterClassifier(classifyExhausted) }

// classifyExhausted recognises a database's temporary lack of a resource and
// makes it a StorageUnavailable fault (503 with Retry-After), whichever package
// the error surfaces in. The database did nothing for the failed statement, and
// on SQLite it rolled the whole transaction back (see commitGroup), so the caller
// may retry.
//
// SQLite: SQLITE_FULL, which its unix VFS reports for ENOSPC (and EDQUOT) on any
// write, the WAL's included. SQLITE_IOERR codes are not classified: the driver
// carries no errno, and an I/O error can be EIO, a disk losing data, which must
// stay a 500 rather than be retried.
//
// PostgreSQL: disk_full, out_of_memory and too_many_connections (53100, 53200,
// 53300), whether from a statement or a new connection of the pool.
func classifyExhausted(err error) *fault.Error {
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		if sqErr.Code()&0xff == sqlite3.SQLITE_FULL {
			return &fault.Error{Kind: fault.StorageUnavailable, Message: msgStorageFull, RetryAfter: StorageFullRetryAfter, Err: err}
		}
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgDiskFull:
			return &fault.Error{Kind: fault.StorageUnavailable, Message: msgStorageFull, RetryAfter: StorageFullRetryAfter, Err: err}
		case pgOutOfMemory:
			return &fault.Error{Kind: fault.StorageUnavailable, Message: msgOutOfMemory, Err: err}
		case pgTooManyConnections:
			return &fault.Error{Kind: fault.StorageUnavailable, Message: msgOutOfConnection, Err: err}
		}
	}
	return nil
}
